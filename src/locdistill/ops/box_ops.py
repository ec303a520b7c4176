"""Box geometry: overlaps (IoU, GIoU, IoF), distance <-> box coding.

All boxes are ``(x1, y1, x2, y2)``; units are whatever the caller uses (pixels or stride units).
Formulas follow mmdetection's ``bbox_overlaps`` exactly (``union`` and ``enclose`` clamped to ``eps``),
so that results match it bit for bit.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor


def box_area(boxes: Tensor) -> Tensor:
    """``[..., 4] -> [...]`` area, no clamping (a degenerate box may give a negative area)."""
    return (boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1])


def box_centers(boxes: Tensor) -> Tensor:
    """``[..., 4] -> [..., 2]`` centre ``(cx, cy)``."""
    return torch.stack(((boxes[..., 0] + boxes[..., 2]) / 2, (boxes[..., 1] + boxes[..., 3]) / 2), dim=-1)


def bbox_overlaps(
    boxes1: Tensor,
    boxes2: Tensor,
    mode: Literal["iou", "giou", "iof"] = "iou",
    is_aligned: bool = False,
    eps: float = 1e-6,
) -> Tensor:
    """IoU / GIoU / IoF between boxes.

    Args:
        boxes1: ``[N, 4]``.
        boxes2: ``[M, 4]`` (``[N, 4]`` when ``is_aligned``).
        mode: ``iof`` divides the overlap by the area of ``boxes1``.
        is_aligned: compare row i with row i instead of all pairs.
        eps: lower bound of the union and of the enclosing area.

    Returns:
        ``[N]`` when aligned, else ``[N, M]``.
    """
    area1 = box_area(boxes1)
    area2 = box_area(boxes2)
    if is_aligned:
        lt = torch.max(boxes1[..., :2], boxes2[..., :2])
        rb = torch.min(boxes1[..., 2:], boxes2[..., 2:])
        wh = (rb - lt).clamp(min=0)
        overlap = wh[..., 0] * wh[..., 1]
        union = area1 + area2 - overlap if mode in ("iou", "giou") else area1
        if mode == "giou":
            enclosed_lt = torch.min(boxes1[..., :2], boxes2[..., :2])
            enclosed_rb = torch.max(boxes1[..., 2:], boxes2[..., 2:])
    else:
        lt = torch.max(boxes1[..., :, None, :2], boxes2[..., None, :, :2])
        rb = torch.min(boxes1[..., :, None, 2:], boxes2[..., None, :, 2:])
        wh = (rb - lt).clamp(min=0)
        overlap = wh[..., 0] * wh[..., 1]
        union = (
            area1[..., None] + area2[..., None, :] - overlap if mode in ("iou", "giou") else area1[..., None]
        )
        if mode == "giou":
            enclosed_lt = torch.min(boxes1[..., :, None, :2], boxes2[..., None, :, :2])
            enclosed_rb = torch.max(boxes1[..., :, None, 2:], boxes2[..., None, :, 2:])
    eps_t = union.new_tensor([eps])
    union = torch.max(union, eps_t)
    ious = overlap / union
    if mode != "giou":
        return ious
    enclose_wh = (enclosed_rb - enclosed_lt).clamp(min=0)
    enclose_area = torch.max(enclose_wh[..., 0] * enclose_wh[..., 1], eps_t)
    return ious - (enclose_area - union) / enclose_area


def distance2bbox(points: Tensor, distance: Tensor, max_shape: tuple[int, int] | None = None) -> Tensor:
    """Decode ``(left, top, right, bottom)`` distances from ``points``.

    Args:
        points: ``[N, 2]`` ``(x, y)``.
        distance: ``[N, 4]`` non-negative distances, same units as ``points``.
        max_shape: ``(h, w)``; when given, x is clamped to ``[0, w]`` and y to ``[0, h]``.

    Returns:
        ``[N, 4]`` boxes.
    """
    x1 = points[..., 0] - distance[..., 0]
    y1 = points[..., 1] - distance[..., 1]
    x2 = points[..., 0] + distance[..., 2]
    y2 = points[..., 1] + distance[..., 3]
    boxes = torch.stack([x1, y1, x2, y2], dim=-1)
    if max_shape is not None:
        h, w = max_shape
        boxes = torch.stack(
            [
                boxes[..., 0].clamp(0, w),
                boxes[..., 1].clamp(0, h),
                boxes[..., 2].clamp(0, w),
                boxes[..., 3].clamp(0, h),
            ],
            dim=-1,
        )
    return boxes


def bbox2distance(points: Tensor, boxes: Tensor, max_dis: float | None = None, eps: float = 0.1) -> Tensor:
    """Encode ``boxes`` as ``(left, top, right, bottom)`` distances from ``points``.

    Args:
        points: ``[N, 2]``; boxes: ``[N, 4]``.
        max_dis: when given, distances are clamped to ``[0, max_dis - eps]`` (so that the right bin
            of the distribution focal loss always exists).

    Returns:
        ``[N, 4]``.
    """
    left = points[:, 0] - boxes[:, 0]
    top = points[:, 1] - boxes[:, 1]
    right = boxes[:, 2] - points[:, 0]
    bottom = boxes[:, 3] - points[:, 1]
    dist = torch.stack([left, top, right, bottom], dim=-1)
    if max_dis is not None:
        dist = dist.clamp(min=0, max=max_dis - eps)
    return dist
