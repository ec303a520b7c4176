"""Exact resume: a run interrupted (inside an epoch by ``max_iters``, or killed with SIGKILL right after
an epoch checkpoint, by the test-only kill point) and resumed ends with exactly the weights of an
uninterrupted run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from locdistill.engine.checkpoint import load_checkpoint
from locdistill.engine.train import train
from tests.engine.killed_run import train_killed_after
from tests.helpers import tiny_config, tiny_overrides

# 8 images / 2 per batch = 4 iterations per epoch, 2 epochs (lr step after the first); EMA on so that
# its state is covered too.
EXTRA = [
    "data.train.num_images=8",
    "train.epochs=2",
    "train.optim.steps=[1]",
    "train.ema=true",
    "train.keep_last=2",
]


def assert_same_weights(a: Path, b: Path) -> None:
    ca, cb = load_checkpoint(a), load_checkpoint(b)
    assert ca["global_iter"] == cb["global_iter"]
    for part in ("model",):
        for k, v in ca[part].items():
            assert torch.equal(v, cb[part][k]), f"{part}.{k} differs"
    for k, v in ca["ema"]["module"].items():
        assert torch.equal(v, cb["ema"]["module"][k]), f"ema.{k} differs"
    assert ca["ema"]["updates"] == cb["ema"]["updates"]


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """An uninterrupted run: ``(its final checkpoint, the folder with its config and data)``."""
    base = tmp_path_factory.mktemp("resume")
    final = train(tiny_config(base, EXTRA), base / "uninterrupted")
    return final, base


def test_resume_inside_an_epoch_is_exact(reference: tuple[Path, Path]) -> None:
    final, base = reference
    work = base / "stopped"
    stopped = train(tiny_config(base, [*EXTRA, "train.max_iters=6"]), work)  # epoch 2, 2 of 4 iterations done
    assert stopped.name == "iter_6.pth"
    ckpt = load_checkpoint(work / "latest.pth")
    assert (ckpt["epoch"], ckpt["iter"], ckpt["global_iter"]) == (1, 2, 6)
    resumed = train(tiny_config(base, EXTRA), work, resume=True)
    assert resumed.name == "epoch_2.pth"
    assert_same_weights(final, resumed)
    records = [json.loads(line) for line in (work / "metrics.jsonl").read_text().splitlines()]
    assert [r["global_iter"] for r in records if r["type"] == "train"] == [2, 4, 6, 8]


def test_resume_after_sigkill_is_exact(reference: tuple[Path, Path], tmp_path: Path) -> None:
    final, base = reference
    work = tmp_path / "killed"
    args = [str(base / "tiny.yaml"), "--work-dir", str(work), "--set", *tiny_overrides(base / "data"), *EXTRA]
    train_killed_after("epoch_1.pth", args, tmp_path / "stderr.txt")
    assert not (work / "epoch_2.pth").exists()
    latest = load_checkpoint(work / "latest.pth")  # intact despite the kill (atomic writes)
    assert (latest["epoch"], latest["iter"], latest["global_iter"]) == (1, 0, 4)
    # what a kill in the middle of writing the next checkpoint leaves (utils/atomic_write.py's temp name)
    (work / ".epoch_2.pth.x1y2z3.tmp").write_bytes(b"PK\x03\x04 cut short")
    resumed = train(tiny_config(base, EXTRA), work, resume=True)
    assert_same_weights(final, resumed)
    assert not list(work.glob(".*.tmp"))  # a write cut short by the kill is cleaned up on resume
