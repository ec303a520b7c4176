"""Distribution Focal Loss (GFL): cross-entropy split between the two bins around a real target."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor


def distribution_focal_loss(pred: Tensor, target: Tensor) -> Tensor:
    """Per-sample DFL.

    Args:
        pred: ``[N, R+1]`` logits over the bins ``0..R`` of one box side.
        target: ``[N]`` float distance in bin units, ``0 <= target < R`` (GFL clamps to ``R - 0.1``).

    Returns:
        ``[N]``: ``CE(pred, floor(t)) * (floor(t) + 1 - t) + CE(pred, floor(t) + 1) * (t - floor(t))``.
    """
    left = target.long()
    right = left + 1
    weight_left = right.float() - target
    weight_right = target - left.float()
    return (
        F.cross_entropy(pred, left, reduction="none") * weight_left
        + F.cross_entropy(pred, right, reduction="none") * weight_right
    )
