"""Per-level anchors ("priors") of GFL / ATSS: one square anchor per feature-map cell.

The anchor of cell ``(y, x)`` on a level of stride ``s`` is centred at ``(x*s, y*s)`` (no half-stride
offset: mmdetection's ``center_offset=0``, needed to reuse its weights) with side
``octave_base_scale * s``. Anchors are ordered row-major per level, levels from stride 8 upward.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor


def level_anchors(
    featmap_size: tuple[int, int],
    stride: int,
    octave_base_scale: float = 8.0,
    device: torch.device | None = None,
) -> Tensor:
    """Anchors of one level.

    Args:
        featmap_size: ``(H, W)`` of the level.
        stride: pixels per cell.
        octave_base_scale: anchor side in strides.

    Returns:
        ``[H*W, 4]`` float32 xyxy in input pixels, row-major (``index = y*W + x``).
    """
    h, w = featmap_size
    half = octave_base_scale * stride / 2
    xs = torch.arange(w, device=device, dtype=torch.float32) * stride
    ys = torch.arange(h, device=device, dtype=torch.float32) * stride
    yy, xx = torch.meshgrid(ys, xs, indexing="ij")
    xx, yy = xx.reshape(-1), yy.reshape(-1)
    return torch.stack([xx - half, yy - half, xx + half, yy + half], dim=-1)


def multi_level_anchors(
    featmap_sizes: list[tuple[int, int]],
    strides: list[int],
    octave_base_scale: float = 8.0,
    device: torch.device | None = None,
) -> list[Tensor]:
    """:func:`level_anchors` for every level: a list of ``[H_l*W_l, 4]``."""
    return [level_anchors(size, s, octave_base_scale, device) for size, s in zip(featmap_sizes, strides)]


def valid_flags(
    featmap_sizes: list[tuple[int, int]],
    strides: list[int],
    pad_shape: tuple[int, int],
    device: torch.device | None = None,
) -> Tensor:
    """Which anchors lie inside one image's own padded area (the batch tensor may be larger).

    A level's valid region is ``min(ceil(pad_h / s), H)`` rows by ``min(ceil(pad_w / s), W)`` columns.

    Returns:
        ``[sum_l H_l*W_l]`` bool, levels concatenated.
    """
    flags = []
    pad_h, pad_w = pad_shape
    for (h, w), s in zip(featmap_sizes, strides):
        valid_h = min(int(math.ceil(pad_h / s)), h)
        valid_w = min(int(math.ceil(pad_w / s)), w)
        valid_y = torch.zeros(h, dtype=torch.bool, device=device)
        valid_x = torch.zeros(w, dtype=torch.bool, device=device)
        valid_y[:valid_h] = True
        valid_x[:valid_w] = True
        flags.append((valid_y[:, None] & valid_x[None, :]).reshape(-1))
    return torch.cat(flags)


def valid_counts(
    featmap_sizes: list[tuple[int, int]], strides: list[int], pad_shape: tuple[int, int]
) -> list[int]:
    """Per level, how many anchors :func:`valid_flags` marks valid (computed on the host, no tensors)."""
    pad_h, pad_w = pad_shape
    return [
        min(int(math.ceil(pad_h / s)), h) * min(int(math.ceil(pad_w / s)), w)
        for (h, w), s in zip(featmap_sizes, strides)
    ]


class ValidAnchors(NamedTuple):
    """The anchors of a grid that lie inside one pad shape (see :func:`valid_flags`).

    Attributes:
        flags: ``[A]`` bool over all anchors of the grid.
        positions: ``[V]`` int64 where the valid anchors are in the grid.
        anchors: ``[V, 4]`` the valid anchors, levels concatenated.
        num_level_anchors: valid anchors per level (sums to V).
    """

    flags: Tensor
    positions: Tensor
    anchors: Tensor
    num_level_anchors: list[int]


class AnchorGrid:
    """The anchors of one set of feature-map sizes and everything about them that does not change
    from step to step: built once per feature-map size (and per pad shape for the valid anchors) and
    reused, instead of being rebuilt for every batch.

    Attributes:
        featmap_sizes: ``(H_l, W_l)`` per level; strides: one per level.
        per_level: ``[H_l*W_l, 4]`` anchors per level (:func:`multi_level_anchors`).
        anchors: ``[A, 4]`` all levels concatenated.
        num_level_anchors: ``H_l*W_l`` per level.
        level_index: ``[A]`` int64 level of each anchor; anchor_strides: ``[A]`` float32 its stride.
    """

    max_pad_shapes = 64  # cached valid-anchor sets per grid (multi-scale training sees a few dozen)

    def __init__(
        self,
        featmap_sizes: list[tuple[int, int]],
        strides: list[int],
        octave_base_scale: float = 8.0,
        device: torch.device | None = None,
        per_level: list[Tensor] | None = None,
    ) -> None:
        self.featmap_sizes = [(int(h), int(w)) for h, w in featmap_sizes]
        self.strides = list(strides)
        if per_level is None:
            per_level = multi_level_anchors(self.featmap_sizes, self.strides, octave_base_scale, device)
        self.per_level = per_level
        device = per_level[0].device
        self.anchors = torch.cat(per_level)
        self.num_level_anchors = [a.shape[0] for a in per_level]
        self.level_index = torch.cat(
            [
                torch.full((n,), i, dtype=torch.long, device=device)
                for i, n in enumerate(self.num_level_anchors)
            ]
        )
        self.anchor_strides = torch.tensor(self.strides, dtype=torch.float32, device=device)[self.level_index]
        self._valid: dict[tuple[int, int], ValidAnchors] = {}

    def valid(self, pad_shape: tuple[int, int]) -> ValidAnchors:
        """The anchors inside an image of padded size ``pad_shape`` ``(h, w)`` (cached per pad shape)."""
        key = (int(pad_shape[0]), int(pad_shape[1]))
        found = self._valid.get(key)
        if found is None:
            if len(self._valid) >= self.max_pad_shapes:
                self._valid.clear()
            flags = valid_flags(self.featmap_sizes, self.strides, key, self.anchors.device)
            index = flags.nonzero().squeeze(1)
            counts = valid_counts(self.featmap_sizes, self.strides, key)
            found = self._valid[key] = ValidAnchors(flags, index, self.anchors[index], counts)
        return found
