"""Training batches depend only on (seed, epoch): the same with 0 or 2 workers, with persistent workers
in a later epoch, and in a partial epoch read again by fresh workers (what a resumed run does)."""

from __future__ import annotations

import random

import numpy as np
import torch

from locdistill.config import DataConfig, DatasetConfig
from locdistill.data import build_dataset, build_train_loader
from locdistill.data.seeding import sample_seed
from locdistill.engine.loader import set_epoch, skip_batches

DATA = DataConfig(
    img_scale=[64, 64],
    multiscale=[[64, 32], [64, 64]],  # a random size per image
    flip_prob=0.5,
    mean=[0.5, 0.5, 0.5],
    std=[0.25, 0.25, 0.25],
)


def epoch_batches(workers: int, epoch: int, skip: int = 0) -> list[torch.Tensor]:
    dataset = build_dataset(
        DatasetConfig(format="synthetic", root="unused", num_images=12, image_size=64, seed=3), DATA, True
    )
    loader = build_train_loader(dataset, images_per_gpu=3, workers=workers, seed=5)
    out = []
    for e in range(epoch + 1):  # persistent workers go through the earlier epochs first
        set_epoch(loader, e)
        out = [b.images.clone() for b in skip_batches(loader, skip if e == epoch else 0)]
    return out


def test_batches_do_not_depend_on_workers_or_on_what_they_loaded_before() -> None:
    ref = epoch_batches(workers=0, epoch=1)
    assert len(ref) == 4
    with_workers = epoch_batches(workers=2, epoch=1)
    assert all(torch.equal(a, b) for a, b in zip(ref, with_workers, strict=True))
    resumed = epoch_batches(workers=2, epoch=1, skip=2)
    assert all(torch.equal(a, b) for a, b in zip(ref[2:], resumed, strict=True))
    other_epoch = epoch_batches(workers=0, epoch=0)
    assert not all(a.shape == b.shape and torch.equal(a, b) for a, b in zip(ref, other_epoch))


def test_loading_in_the_main_process_leaves_the_global_rngs_alone() -> None:
    torch.manual_seed(0)
    random.seed(0)
    np.random.seed(0)
    epoch_batches(workers=0, epoch=0)
    after = (torch.rand(()).item(), random.random(), np.random.rand())
    torch.manual_seed(0)
    random.seed(0)
    np.random.seed(0)
    assert after == (torch.rand(()).item(), random.random(), np.random.rand())


def test_sample_seeds_differ_by_seed_epoch_and_index() -> None:
    seeds = {sample_seed(s, e, i) for s in (0, 1, 2**40) for e in range(3) for i in range(50)}
    assert len(seeds) == 3 * 3 * 50
    assert all(0 <= s < 2**32 for s in seeds)
    assert sample_seed(-1, 0, 0) == sample_seed(2**64 - 1, 0, 0)  # negative seeds are folded, not errors
