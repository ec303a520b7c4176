"""Batching: pad images to a common size and gather targets and metas into a :class:`Batch`
(normalised, or uint8 to be normalised on the device)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace

import torch
from torch import Tensor
from torch.utils.data import get_worker_info

from locdistill.data.dataset import Sample
from locdistill.structures import Batch

PixelNorm = tuple[tuple[float, ...], tuple[float, ...]]
"""``(mean, std)`` per channel in 0-255 units (:attr:`locdistill.data.transforms.Normalize.pixel_norm`)."""


def collate(samples: Sequence[Sample], size_divisor: int = 32, pixel_norm: PixelNorm | None = None) -> Batch:
    """Stack ``(image [3,h,w], targets, meta)`` samples into a :class:`~locdistill.structures.Batch`.

    Images are zero-padded at the bottom and right (zero is the mean colour after normalisation, as
    mmdetection's ``Pad``) to the largest height and width of the batch, each rounded up to
    ``size_divisor``. Each meta's own ``pad_shape`` becomes its ``img_shape`` rounded up to
    ``size_divisor`` (anchors beyond it are invalid for that image), whatever the batch size is.
    The batch is written once: each image copied into its corner and only the padding zeroed (in
    shared memory in a DataLoader worker, see :func:`empty_batch`).

    With ``pixel_norm`` (uint8 images, the pipeline without its ``Normalize``) the batch stays uint8 and
    carries ``pixel_norm``: :meth:`Batch.to` normalises it on the device (like mmdetection's
    ``DetDataPreprocessor``), to the same float32 values.
    """
    if not samples:
        raise ValueError("collate: empty list of samples")
    images = [s[0] for s in samples]
    channels = images[0].shape[0]
    if any(im.ndim != 3 or im.shape[0] != channels for im in images):
        raise ValueError(
            f"collate: images must be [C, H, W] with equal C, got {[tuple(im.shape) for im in images]}"
        )
    if pixel_norm is not None and any(im.dtype != torch.uint8 for im in images):
        raise ValueError(
            "collate: normalising on the device needs uint8 images (a pipeline without Normalize), got "
            f"{sorted({str(im.dtype) for im in images})}"
        )
    height = round_up(max(im.shape[1] for im in images), size_divisor)
    width = round_up(max(im.shape[2] for im in images), size_divisor)
    # uint8 batches are laid out channels-last, the decoder's and resize's layout: copying an image in
    # is then row by row, not a byte-wise transpose (normalize_padded on the device reads any layout)
    batch = empty_batch(
        (len(images), channels, height, width), images[0], channels_last=pixel_norm is not None
    )
    for out, im in zip(batch, images):
        h, w = im.shape[1], im.shape[2]
        out[:, :h, :w].copy_(im)
        out[:, :h, w:].zero_()
        out[:, h:, :].zero_()
    metas = [
        replace(m, pad_shape=(round_up(m.img_shape[0], size_divisor), round_up(m.img_shape[1], size_divisor)))
        for _, _, m in samples
    ]
    return Batch(images=batch, targets=[s[1] for s in samples], metas=metas, pixel_norm=pixel_norm)


class Collate:
    """Picklable ``collate`` with a fixed ``size_divisor`` and ``pixel_norm`` (for DataLoader workers)."""

    def __init__(self, size_divisor: int = 32, pixel_norm: PixelNorm | None = None) -> None:
        self.size_divisor = size_divisor
        self.pixel_norm = pixel_norm

    def __call__(self, samples: Sequence[Sample]) -> Batch:
        return collate(samples, self.size_divisor, self.pixel_norm)

    def __repr__(self) -> str:
        return f"Collate(size_divisor={self.size_divisor}, pixel_norm={self.pixel_norm})"


def empty_batch(shape: tuple[int, int, int, int], like: Tensor, channels_last: bool = False) -> Tensor:
    """An uninitialised ``shape`` (``[B, C, H, W]``) tensor of ``like``'s dtype and device, channels-last
    in memory if asked; in a DataLoader worker process in shared memory (as
    ``torch.utils.data.default_collate`` does), so that handing the batch over moves no pixels."""
    b, c, h, w = shape
    stored = (b, h, w, c) if channels_last else shape
    if get_worker_info() is None or like.device.type != "cpu":
        out = torch.empty(stored, dtype=like.dtype, device=like.device)
    else:
        storage = torch.UntypedStorage._new_shared(b * c * h * w * like.element_size())
        out = torch.empty(0, dtype=like.dtype).set_(storage).view(stored)
    return out.permute(0, 3, 1, 2) if channels_last else out


def round_up(value: int, divisor: int) -> int:
    """``value`` rounded up to a multiple of ``divisor``."""
    return int(math.ceil(value / divisor) * divisor) if divisor > 0 else value
