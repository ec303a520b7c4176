"""``benchmarks/bench_loader.py`` runs and writes its JSON: ours on a few coco128 photos, and
mmdetection's pipeline beside it where an mmdet 3.3.0 environment is at hand (``LOCDISTILL_MMDET_PYTHON``
or ``/work/mmdet_venv``; skipped otherwise)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import ROOT, SHARED

SCRIPT = ROOT / "benchmarks" / "bench_loader.py"
COCO128 = SHARED / "data" / "coco128"
TINY = ["--images", "4", "--rounds", "1", "--check", "2", "--loader-rounds", "1"]


def run_bench(args: list[str], out: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "LOCDISTILL_MMDET_PYTHON"}
    env["PYTHONPATH"] = str(ROOT / "src")
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--data", str(COCO128), *TINY, *args, "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=900,
        env=env,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(out.read_text())


def mmdet_python() -> str | None:
    python = os.environ.get("LOCDISTILL_MMDET_PYTHON", "/work/mmdet_venv/bin/python")
    if not Path(python).exists():
        return None
    probe = subprocess.run([python, "-c", "import mmdet, mmengine, cv2"], capture_output=True)
    return python if probe.returncode == 0 else None


@pytest.mark.skipif(not COCO128.is_dir(), reason="needs ../shared/data/coco128")
def test_bench_loader_ours_alone(tmp_path: Path) -> None:
    payload = run_bench(["--modes", "ms", "--loader-workers", "1"], tmp_path / "loader.json")
    assert payload["protocol"]["mmdet_skipped"] == "no --mmdet PYTHON given"
    result = payload["results"]["ms"]
    assert result["images"] == 4 and set(result["where"]) == {"ours", "ours_worker_norm"}
    single = result["single_process"]
    assert single["ours"]["median"] > 0 and len(single["ours"]["rounds"]) == 1
    assert single["ours_over_ours_worker_norm"]["median"] > 0
    assert result["dataloader"]["1"]["ours"]["median"] > 0


@pytest.mark.slow
@pytest.mark.skipif(not COCO128.is_dir(), reason="needs ../shared/data/coco128")
def test_bench_loader_beside_mmdet(tmp_path: Path) -> None:
    python = mmdet_python()
    if python is None:
        pytest.skip("no mmdet 3.3.0 environment (LOCDISTILL_MMDET_PYTHON or /work/mmdet_venv)")
    payload = run_bench(["--modes", "fixed", "--no-worker-norm", "--mmdet", python], tmp_path / "loader.json")
    result = payload["results"]["fixed"]
    assert payload["protocol"]["mmdet_skipped"] is None and result["mmdet_versions"]["mmdet"] == "3.3.0"
    assert result["single_process"]["mmdet"]["median"] > 0
    assert result["single_process"]["ours_over_mmdet"]["median"] > 0
    assert result["pixels_vs_mmdet"]["max_abs"] <= 2  # bilinear kernels: rounding only
