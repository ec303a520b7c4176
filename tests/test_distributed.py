"""Two CPU processes under ``torchrun`` (gloo): the ranks agree on the logged (all-reduced) losses, the
lr is scaled for the total batch of both ranks, and rank 0 writes the checkpoint."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from locdistill.engine.distributed import (
    all_gather_object,
    get_rank,
    get_world_size,
    init_distributed,
    reduce_mean,
)

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_engine import tiny_overrides  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_helpers_are_identities_without_a_process_group(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert init_distributed() == (0, 0, 1)
    assert get_world_size() == 1 and get_rank() == 0
    t = torch.tensor([1.0, 2.0])
    assert reduce_mean(t) is t
    assert all_gather_object({"a": 1}) == [{"a": 1}]


def torchrun() -> list[str] | None:
    exe = shutil.which("torchrun") or str(Path(sys.executable).with_name("torchrun"))
    return [exe] if Path(exe).exists() else None


@pytest.mark.slow
@pytest.mark.skipif(torchrun() is None, reason="torchrun is not installed")
def test_two_process_training_agrees_across_ranks(tmp_path: Path) -> None:
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(f"_base_: {ROOT / 'src/locdistill/configs/_base_/models/gfl_r50_fpn.yaml'}\n")
    work = tmp_path / "work"
    cmd = [
        *torchrun(),  # type: ignore[misc]
        "--nproc_per_node=2",
        "--master_addr=127.0.0.1",
        f"--master_port={free_port()}",
        "-m",
        "locdistill",
        "train",
        str(cfg),
        "--work-dir",
        str(work),
        "--set",
        *tiny_overrides(tmp_path / "data"),
        "train.max_iters=3",
        "train.log_interval=1",
        "train.optim.warmup_iters=0",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]

    rank0 = [json.loads(line) for line in (work / "metrics.jsonl").read_text().splitlines()]
    rank1 = [json.loads(line) for line in (work / "metrics.rank1.jsonl").read_text().splitlines()]
    assert [r["global_iter"] for r in rank0] == [1, 2, 3]
    for a, b in zip(rank0, rank1, strict=True):
        for key in ("loss", "loss_cls", "loss_bbox", "loss_dfl", "lr"):
            assert a[key] == b[key], (key, a, b)  # all-reduced values: identical on every rank
    # total batch = 2 ranks x 2 images = 4 -> lr = 0.01 * 4 / 16 (no warm-up in this run)
    assert rank0[0]["lr"] == pytest.approx(0.0025)
    log = (work / "train.log").read_text()
    assert "lr scaled to 0.0025 for total batch 4" in log
    assert "world size 2" in log
    assert (work / "iter_3.pth").is_file() and (work / "latest.pth").is_file()
    ckpt = torch.load(work / "latest.pth", weights_only=True, map_location="cpu")
    assert ckpt["global_iter"] == 3 and ckpt["meta"]["world_size"] == 2
    assert len(ckpt["rng_ranks"]) == 2  # every rank's RNG state, for an exact resume
