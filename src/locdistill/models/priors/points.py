"""FCOS points: one prior per feature-map cell, at the cell's centre.

The point of cell ``(row y, col x)`` on a level of stride ``s`` is ``(x*s + s//2, y*s + s//2)`` (the LD
code's ``_get_points_single``; mmdetection 3's ``MlvlPointGenerator(offset=0.5)`` gives the same values
for even strides). Anchor heads measure from the cell *corner* ``(x*s, y*s)`` instead
(:mod:`locdistill.models.priors.multi_anchors`): the two must not share a "prior centre" helper.
Points are ordered row-major per level, levels from stride 8 upward.
"""

from __future__ import annotations

import torch
from torch import Tensor


def level_points(featmap_size: tuple[int, int], stride: int, device: torch.device | None = None) -> Tensor:
    """Points of one level.

    Returns:
        ``[H*W, 2]`` float32 ``(x, y)`` in input pixels, index ``y*W + x``.
    """
    h, w = featmap_size
    xs = torch.arange(w, device=device, dtype=torch.float32) * stride + stride // 2
    ys = torch.arange(h, device=device, dtype=torch.float32) * stride + stride // 2
    yy, xx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([xx.reshape(-1), yy.reshape(-1)], dim=-1)


def multi_level_points(
    featmap_sizes: list[tuple[int, int]], strides: list[int], device: torch.device | None = None
) -> list[Tensor]:
    """:func:`level_points` of every level: a list of ``[H_l*W_l, 2]``."""
    return [level_points(size, s, device) for size, s in zip(featmap_sizes, strides)]
