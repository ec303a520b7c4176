"""Exact resume with data-loading worker processes: a 2-worker run killed with SIGKILL inside an epoch
(right after an iteration checkpoint), resumed and killed again at an epoch boundary, then resumed to the
end, ends with a final checkpoint whose every tensor equals that of an uninterrupted 2-worker run. The
kills come from the test-only kill point (tests/engine/killed_run.py), at the same place on any machine."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from locdistill.config import load_config
from locdistill.engine.checkpoint import load_checkpoint
from locdistill.engine.train import train
from tests.engine.killed_run import train_killed_after

CONFIG = """\
model:
  backbone: {name: resnet18, base_width: 8, pretrained: false}
  neck: {out_channels: 16}
  head: {num_classes: 5, feat_channels: 16, stacked_convs: 1, norm_groups: 4}
data:
  train: {format: synthetic, root: DATA/train, num_images: 8, image_size: 64}
  val: {format: synthetic, root: DATA/val, num_images: 2, image_size: 64}
  img_scale: [64, 64]
  multiscale: [[64, 32], [64, 64]]
  flip_prob: 0.5
  images_per_gpu: 2
  workers_per_gpu: 2
train:
  epochs: 3
  optim: {lr: 0.01, warmup_iters: 3, steps: [2]}
  ema: true
  eval_interval: 0
  keep_last: 0
  log_interval: 4
metric: coco
"""
# 8 images / 2 per batch = 4 iterations per epoch, 12 in all; multi-scale and flips draw randomness in
# the workers, EMA and the lr step are covered by the checkpoint comparison.


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """``(config file, final checkpoint of an uninterrupted run)``."""
    base = tmp_path_factory.mktemp("resume_workers")
    config = base / "tiny.yaml"
    config.write_text(CONFIG.replace("DATA", str(base / "data")))
    final = train(load_config(config), base / "uninterrupted")
    return config, final


def assert_same_tensors(a: Any, b: Any, where: str = "checkpoint") -> None:
    """Every tensor (and every number, string, list) equal, recursively; ``meta`` (times) and ``config``
    (the first part of the killed run had train.checkpoint_iters set) aside."""
    if isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for k in a:
            if k not in ("meta", "config"):
                assert_same_tensors(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same_tensors(x, y, f"{where}[{i}]")
    elif isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b), f"{where} differs"
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def killed_after(checkpoint: str, config: Path, work: Path, args: list[str], log: Path) -> None:
    """``locdistill train CONFIG --work-dir WORK ARGS`` killed right after ``checkpoint`` is written
    (``ARGS`` with ``=`` go after ``--set``)."""
    overrides = [a for a in args if "=" in a]
    cmd = [str(config), "--work-dir", str(work), *[a for a in args if "=" not in a]]
    train_killed_after(checkpoint, cmd + (["--set", *overrides] if overrides else []), log)


def test_sigkilled_two_worker_run_resumes_bit_exactly(setup: tuple[Path, Path], tmp_path: Path) -> None:
    config, reference = setup
    work = tmp_path / "killed"
    # 1. a checkpoint every iteration; killed right after iter_1.pth: inside epoch 1, 1 of 4 iterations done
    killed_after("iter_1.pth", config, work, ["train.checkpoint_iters=1"], tmp_path / "stderr1.txt")
    latest = load_checkpoint(work / "latest.pth")
    assert latest["config"]["data"]["workers_per_gpu"] == 2
    assert (latest["epoch"], latest["iter"], latest["global_iter"]) == (0, 1, 1)
    assert not (work / "iter_2.pth").exists()
    # 2. resumed inside epoch 1 (epoch checkpoints only), killed right after epoch_2.pth: stopped at the
    #    boundary between epochs 2 and 3
    killed_after("epoch_2.pth", config, work, ["--resume"], tmp_path / "stderr2.txt")
    latest = load_checkpoint(work / "latest.pth")
    assert (latest["epoch"], latest["iter"], latest["global_iter"]) == (2, 0, 8)
    assert not (work / "epoch_3.pth").exists()
    # 3. resumed at the boundary to the end
    resumed = train(load_config(config), work, resume=True)
    assert resumed.name == "epoch_3.pth"
    assert_same_tensors(load_checkpoint(reference), load_checkpoint(resumed))
