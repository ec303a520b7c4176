"""Batching: pad images to a common size and gather targets and metas into a :class:`Batch`."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace

from locdistill.data.dataset import Sample
from locdistill.structures import Batch


def collate(samples: Sequence[Sample], size_divisor: int = 32) -> Batch:
    """Stack ``(image [3,h,w], targets, meta)`` samples into a :class:`~locdistill.structures.Batch`.

    Images are zero-padded at the bottom and right (zero is the mean colour after normalisation, as
    mmdetection's ``Pad``) to the largest height and width of the batch, each rounded up to
    ``size_divisor``. Each meta's own ``pad_shape`` becomes its ``img_shape`` rounded up to
    ``size_divisor`` (anchors beyond it are invalid for that image), whatever the batch size is.
    """
    if not samples:
        raise ValueError("collate: empty list of samples")
    images = [s[0] for s in samples]
    channels = images[0].shape[0]
    if any(im.ndim != 3 or im.shape[0] != channels for im in images):
        raise ValueError(
            f"collate: images must be [C, H, W] with equal C, got {[tuple(im.shape) for im in images]}"
        )
    height = round_up(max(im.shape[1] for im in images), size_divisor)
    width = round_up(max(im.shape[2] for im in images), size_divisor)
    batch = images[0].new_zeros((len(images), channels, height, width))
    for out, im in zip(batch, images):
        out[:, : im.shape[1], : im.shape[2]].copy_(im)
    metas = [
        replace(m, pad_shape=(round_up(m.img_shape[0], size_divisor), round_up(m.img_shape[1], size_divisor)))
        for _, _, m in samples
    ]
    return Batch(images=batch, targets=[s[1] for s in samples], metas=metas)


class Collate:
    """Picklable ``collate`` with a fixed ``size_divisor`` (for DataLoader worker processes)."""

    def __init__(self, size_divisor: int = 32) -> None:
        self.size_divisor = size_divisor

    def __call__(self, samples: Sequence[Sample]) -> Batch:
        return collate(samples, self.size_divisor)

    def __repr__(self) -> str:
        return f"Collate(size_divisor={self.size_divisor})"


def round_up(value: int, divisor: int) -> int:
    """``value`` rounded up to a multiple of ``divisor``."""
    return int(math.ceil(value / divisor) * divisor) if divisor > 0 else value
