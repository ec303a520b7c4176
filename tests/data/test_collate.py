"""Batching pads to 32 and keeps each image's own pad shape."""

from __future__ import annotations

import importlib
from typing import Any

import pytest
import torch
from torch.utils.data._utils.pin_memory import pin_memory

from locdistill.data import (
    collate,
)
from locdistill.structures import Batch
from tests.data.helpers import make_sample

collate_module = importlib.import_module("locdistill.data.collate")  # the package exports the function


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


def test_collate_zeroes_the_padding_of_uninitialised_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    """The batch buffer is not zero-filled up front: only the padding is; here fresh memory is NaN."""
    real_empty = torch.empty

    def nan_empty(*args: Any, **kwargs: Any) -> torch.Tensor:
        return real_empty(*args, **kwargs).fill_(float("nan"))

    monkeypatch.setattr(torch, "empty", nan_empty)
    samples = []
    for h, w in ((100, 70), (64, 130), (128, 160)):
        image, targets, meta = make_sample(h, w, [[1, 2, 3, 4]])
        samples.append((image.float() - 100, targets, meta))
    batch = collate(samples, size_divisor=32)
    assert not bool(batch.images.isnan().any())
    for k, (image, _, _) in enumerate(samples):
        h, w = image.shape[1:]
        assert torch.equal(batch.images[k, :, :h, :w], image)
        assert (
            float(batch.images[k, :, h:].abs().sum()) == 0
            and float(batch.images[k, :, :, w:].abs().sum()) == 0
        )


def test_collate_in_a_worker_writes_shared_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    """In a DataLoader worker the batch is allocated in shared memory (no copy when it is sent)."""
    image, targets, meta = make_sample(40, 50, [[1, 2, 3, 4]])
    assert not collate([(image.float(), targets, meta)]).images.is_shared()
    monkeypatch.setattr(collate_module, "get_worker_info", lambda: object())
    batch = collate([(image.float(), targets, meta)] * 2)
    assert batch.images.is_shared() and batch.images.shape == (2, 3, 64, 64)
    assert torch.equal(batch.images[1, :, :40, :50], image.float())


def test_dataloader_pin_memory_pins_the_batch_images(monkeypatch: pytest.MonkeyPatch) -> None:
    """``DataLoader(pin_memory=True)`` pins only what it knows: :meth:`Batch.pin_memory` makes it pin
    the images (stand-in pinning here, which needs no accelerator)."""
    pinned: list[tuple[int, ...]] = []

    def fake_pin(self: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        pinned.append(tuple(self.shape))
        return self.clone()

    monkeypatch.setattr(torch.Tensor, "pin_memory", fake_pin)
    image, targets, meta = make_sample(40, 50, [[1, 2, 3, 4]])
    batch = collate([(image.float(), targets, meta)])
    out = pin_memory(batch)
    assert isinstance(out, Batch) and pinned == [(1, 3, 64, 64)]
    assert torch.equal(out.images, batch.images) and out.metas == batch.metas
    norm = ((100.0, 110.0, 120.0), (50.0, 55.0, 60.0))
    raw = collate([(image, targets, meta)], pixel_norm=norm)  # uint8, normalised later on the device
    assert raw.images.dtype == torch.uint8 and raw.images.is_contiguous(memory_format=torch.channels_last)
    assert pin_memory(raw).pixel_norm == norm
