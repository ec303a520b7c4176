"""Generalized IoU loss."""

from __future__ import annotations

from torch import Tensor

from locdistill.ops.box_ops import bbox_overlaps


def giou_loss(pred: Tensor, target: Tensor, eps: float = 1e-6) -> Tensor:
    """Per-box ``1 - GIoU``.

    Args:
        pred, target: ``[N, 4]`` xyxy boxes in the same units (GFL uses stride units).
        eps: lower bound of the union and enclosing areas (mmdetection's ``GIoULoss`` default 1e-6).

    Returns:
        ``[N]`` in ``[0, 2]``.
    """
    return 1 - bbox_overlaps(pred, target, mode="giou", is_aligned=True, eps=eps)
