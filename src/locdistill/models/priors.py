"""Per-level anchors ("priors") of GFL / ATSS: one square anchor per feature-map cell.

The anchor of cell ``(y, x)`` on a level of stride ``s`` is centred at ``(x*s, y*s)`` (no half-stride
offset: mmdetection's ``center_offset=0``, needed to reuse its weights) with side
``octave_base_scale * s``. Anchors are ordered row-major per level, levels from stride 8 upward.
"""

from __future__ import annotations

import math

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
