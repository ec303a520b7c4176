"""Centerness target (FCOS; ATSS uses the same with the anchor centre as the point)."""

from __future__ import annotations

import torch
from torch import Tensor


def centerness_target(distances: Tensor) -> Tensor:
    """``[P, 4]`` ``(l, t, r, b)`` from a point to its GT's sides -> ``[P]``
    ``sqrt(min(l, r) / max(l, r) * min(t, b) / max(t, b))`` (``[0]``-shaped for no positives)."""
    if distances.shape[0] == 0:
        return distances.new_zeros(0)
    lr = distances[:, [0, 2]]
    tb = distances[:, [1, 3]]
    ratio = (lr.min(dim=-1).values / lr.max(dim=-1).values) * (tb.min(dim=-1).values / tb.max(dim=-1).values)
    return torch.sqrt(ratio)


def point_box_distances(points: Tensor, boxes: Tensor) -> Tensor:
    """``[P, 2]`` points, ``[P, 4]`` boxes -> ``[P, 4]`` ``(x - x1, y - y1, x2 - x, y2 - y)``."""
    return torch.stack(
        (
            points[:, 0] - boxes[:, 0],
            points[:, 1] - boxes[:, 1],
            boxes[:, 2] - points[:, 0],
            boxes[:, 3] - points[:, 1],
        ),
        dim=-1,
    )
