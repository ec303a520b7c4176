"""Loaders and samplers: each image once per shard; worker processes."""

from __future__ import annotations

from locdistill.data import (
    ShardSampler,
    SyntheticDataset,
    build_train_loader,
)
from locdistill.data.transforms import Normalize
from tests.data.helpers import MEAN, STD


def test_shard_sampler_covers_each_image_once() -> None:
    seen = [i for r in range(3) for i in ShardSampler(range(10), r, 3)]  # type: ignore[arg-type]
    assert sorted(seen) == list(range(10))
    assert list(ShardSampler(range(10), 1, 3)) == [1, 4, 7]  # type: ignore[arg-type]


def test_train_loader_with_workers() -> None:
    ds = SyntheticDataset(6, 96, seed=0)
    ds.transform = Normalize(MEAN, STD)
    loader = build_train_loader(ds, images_per_gpu=3, workers=2, seed=0)
    assert loader.persistent_workers
    batches = list(loader)
    assert sum(len(b) for b in batches) == 6
