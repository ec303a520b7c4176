"""``locdistill benchmark`` (the seed's FPS protocol) and the ``benchmarks/`` scripts each run with one
command and write JSON with the figures docs/benchmarks.md reports."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from locdistill.cli import main
from tests.helpers import ROOT, TINY  # the tiny network over the shipped CPU configs


def _check_timing(result: dict, iterations: int) -> None:
    assert result["iterations"] == iterations
    for part in ("network", "postprocess", "end_to_end"):
        assert result[part]["median_ms"] > 0 and result[part]["mean_ms"] > 0
    total = result["end_to_end"]["mean_ms"]
    assert total == pytest.approx(result["network"]["mean_ms"] + result["postprocess"]["mean_ms"], rel=1e-6)
    assert result["fps"] == pytest.approx(1000 / total)
    assert 0 < result["postprocess_fraction"] < 1


def test_benchmark_times_the_configs_test_images(bccd_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "fps.json"
    roots = [f"data.val.root={bccd_dir}", f"data.train.root={bccd_dir}"]
    argv = ["benchmark", "gfl/gfl_r18_fpn_bccd", "--num-images", "3", "--warmup", "1", "--out", str(out)]
    assert main([*argv, "--set", *TINY, *roots]) == 0
    result = json.loads(out.read_text())
    _check_timing(result, 3)
    assert result["inputs"].startswith("voc images from") and result["input_size"] == [128, 160]
    assert result["environment"]["threads"] >= 1 and "cpu_model" in result["environment"]


def test_benchmark_random_inputs_fused_channels_last(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "fps.json"
    argv = ["benchmark", "demo/demo_base", "--num-images", "2", "--warmup", "1", "--img-size", "96", "128"]
    assert main([*argv, "--fuse-conv-bn", "--channels-last", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    _check_timing(result, 2)
    assert result["inputs"] == "random 96x128 inputs" and result["input_size"] == [96, 128]
    assert result["fused_conv_bn"] > 0 and result["channels_last"] is True
    assert "FPS at batch 1" in capsys.readouterr().out


def test_benchmark_without_data_times_random_inputs(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "fps.json"
    missing = tmp_path / "nowhere"
    argv = ["benchmark", "gfl/gfl_r18_fpn_bccd", "--num-images", "1", "--warmup", "0", "--out", str(out)]
    assert main([*argv, "--set", *TINY, f"data.val.root={missing}"]) == 0
    assert "timing random inputs of 160x160" in capsys.readouterr().out
    assert json.loads(out.read_text())["inputs"] == "random 160x160 inputs"


@pytest.mark.parametrize(
    "script,args",
    [
        ("bench_nms.py", ["--sizes", "300", "--repeats", "1", "--seeds", "1"]),
        ("bench_coco_eval.py", ["--dets-per-image", "5", "--repeats", "1", "--synthetic-images", "20"]),
    ],
)
def test_benchmark_scripts_write_json(script: str, args: list[str], tmp_path: Path) -> None:
    out = tmp_path / "result.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / script), *args, "--threads", "1", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    payload = json.loads(out.read_text())
    assert payload["machine"]["torch"] and payload["results"]
    if script == "bench_nms.py":
        row = payload["results"][0]
        assert row["target_candidates"] == 300
        assert {"nms_ms", "voting_cluster_diou_ms", "naive_score_voting_ms", "within_2x_nms"} <= set(row)
    else:
        assert all(r["evaluate_ms"] > 0 and 0 <= r["AP"] <= 1 for r in payload["results"])
        for r in payload["results"]:
            assert r["evaluate_by_backend_ms"]["pycocotools"]["median_ms"] == r["evaluate_ms"]
            if "faster_coco_eval" in r["evaluate_by_backend_ms"]:  # the same numbers on the same detections
                assert r["max_abs_stat_diff"] <= 1e-6 and r["faster_over_pycocotools"] > 0
