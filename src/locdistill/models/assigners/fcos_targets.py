"""FCOS point assignment (Tian et al. 2019) with center sampling, as mmdetection's
``FCOSHead._get_targets_single`` (the LD code's FCOS-GFL head uses the same algorithm line for line).

For each point ``p`` of stride ``s`` and GT ``g`` with distances ``(l, t, r, b)`` from ``p`` to the GT's
sides (pixels):

1. inside: with center sampling, ``p`` must lie strictly inside the GT clipped to the square of
   half-side ``radius * s`` around the GT centre; without, strictly inside the GT;
2. regress range: ``lo_l <= max(l, t, r, b) <= hi_l`` for the point's level (both ends inclusive);
3. among the GTs passing both, the one of smallest area wins (first on ties); no GT -> background.

Distances stay in pixels (``norm_on_bbox=False``: the GFL-ized head divides by the stride itself).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

INF = 100000000.0
DEFAULT_REGRESS_RANGES: tuple[tuple[float, float], ...] = (
    (-1.0, 64.0),
    (64.0, 128.0),
    (128.0, 256.0),
    (256.0, 512.0),
    (512.0, INF),
)


class PointTargets(NamedTuple):
    """FCOS targets of one image.

    Attributes:
        labels: ``[N]`` int64 GT label at positives, ``num_classes`` elsewhere.
        gt_index: ``[N]`` int64 0-based index of the assigned GT, -1 elsewhere.
        distances: ``[N, 4]`` ``(l, t, r, b)`` pixels to the assigned GT (meaningful at positives).
        inside_gt: ``[N]`` bool, strictly inside at least one GT box (no center sampling, no range):
            where ``LDFCOSHead`` distils its second region (the non-positive ones).
    """

    labels: Tensor
    gt_index: Tensor
    distances: Tensor
    inside_gt: Tensor


def level_ranges_and_radii(
    num_points_per_level: list[int],
    strides: list[int],
    regress_ranges: tuple[tuple[float, float], ...] | list[list[float]],
    radius: float,
    device: torch.device | None = None,
) -> tuple[Tensor, Tensor]:
    """Per point: its level's ``[lo, hi]`` regress range ``[N, 2]`` and ``radius * stride`` ``[N]``."""
    if len(regress_ranges) != len(num_points_per_level):
        raise ValueError(
            f"FCOS needs one regress range per level: got {len(regress_ranges)} for "
            f"{len(num_points_per_level)} levels"
        )
    ranges = torch.cat(
        [
            torch.tensor([float(r[0]), float(r[1])], device=device).expand(n, 2)
            for r, n in zip(regress_ranges, num_points_per_level)
        ]
    )
    radii = torch.cat(
        [torch.full((n,), float(s * radius), device=device) for s, n in zip(strides, num_points_per_level)]
    )
    return ranges, radii


def fcos_targets(
    points: Tensor,
    ranges: Tensor,
    radii: Tensor,
    gt_boxes: Tensor,
    gt_labels: Tensor,
    num_classes: int,
    center_sampling: bool = True,
) -> PointTargets:
    """Assign the points of one image.

    Args:
        points: ``[N, 2]`` pixels, levels concatenated.
        ranges, radii: from :func:`level_ranges_and_radii`.
        gt_boxes: ``[G, 4]``; gt_labels: ``[G]``.
        center_sampling: restrict positives to the central square (radius ``radii``).
    """
    num_points, num_gt = points.shape[0], gt_boxes.shape[0]
    device = points.device
    if num_gt == 0:
        return PointTargets(
            labels=torch.full((num_points,), num_classes, dtype=torch.long, device=device),
            gt_index=torch.full((num_points,), -1, dtype=torch.long, device=device),
            distances=points.new_zeros((num_points, 4)),
            inside_gt=torch.zeros(num_points, dtype=torch.bool, device=device),
        )
    boxes = gt_boxes[None].expand(num_points, num_gt, 4)
    areas = ((gt_boxes[:, 2] - gt_boxes[:, 0]) * (gt_boxes[:, 3] - gt_boxes[:, 1]))[None].repeat(
        num_points, 1
    )
    xs = points[:, 0, None].expand(num_points, num_gt)
    ys = points[:, 1, None].expand(num_points, num_gt)
    left, top = xs - boxes[..., 0], ys - boxes[..., 1]
    right, bottom = boxes[..., 2] - xs, boxes[..., 3] - ys
    distances = torch.stack((left, top, right, bottom), dim=-1)  # [N, G, 4]
    inside_box = distances.min(dim=-1).values > 0
    if center_sampling:
        cx = (boxes[..., 0] + boxes[..., 2]) / 2
        cy = (boxes[..., 1] + boxes[..., 3]) / 2
        r = radii[:, None].expand(num_points, num_gt)
        x_min, y_min, x_max, y_max = cx - r, cy - r, cx + r, cy + r
        c_x1 = torch.where(x_min > boxes[..., 0], x_min, boxes[..., 0])
        c_y1 = torch.where(y_min > boxes[..., 1], y_min, boxes[..., 1])
        c_x2 = torch.where(x_max > boxes[..., 2], boxes[..., 2], x_max)
        c_y2 = torch.where(y_max > boxes[..., 3], boxes[..., 3], y_max)
        center = torch.stack((xs - c_x1, ys - c_y1, c_x2 - xs, c_y2 - ys), dim=-1)
        inside = center.min(dim=-1).values > 0
    else:
        inside = inside_box
    max_dist = distances.max(dim=-1).values
    in_range = (max_dist >= ranges[:, None, 0]) & (max_dist <= ranges[:, None, 1])
    areas = torch.where(inside & in_range, areas, torch.full_like(areas, INF))
    min_area, min_idx = areas.min(dim=1)
    pos = min_area != INF
    labels = torch.where(pos, gt_labels[min_idx].long(), num_classes)
    gt_index = torch.where(pos, min_idx, -1)
    chosen = distances[torch.arange(num_points, device=device), min_idx]
    return PointTargets(labels, gt_index, chosen, inside_box.any(dim=1))
