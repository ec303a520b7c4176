"""Batching pads to 32 and keeps each image's own pad shape."""

from __future__ import annotations

import torch

from locdistill.data import (
    collate,
)
from locdistill.structures import Batch
from tests.data.helpers import make_sample


def test_collate_pads_to_32_and_keeps_own_pad_shape() -> None:
    samples = []
    for h, w in ((100, 70), (64, 130)):
        image, targets, meta = make_sample(h, w, [[1, 2, 3, 4]])
        samples.append((image.float() + 1, targets, meta))
    batch = collate(samples, size_divisor=32)
    assert isinstance(batch, Batch) and tuple(batch.images.shape) == (2, 3, 128, 160)
    assert [m.pad_shape for m in batch.metas] == [(128, 96), (64, 160)]
    assert [m.img_shape for m in batch.metas] == [(100, 70), (64, 130)]
    assert torch.equal(batch.images[0, :, :100, :70], samples[0][0])
    assert (
        float(batch.images[0, :, 100:].abs().sum()) == 0
        and float(batch.images[0, :, :, 70:].abs().sum()) == 0
    )
    assert float(batch.images[1, :, 64:].abs().sum()) == 0
