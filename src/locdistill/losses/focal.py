"""Sigmoid focal loss (Lin et al. 2017), as mmdetection's ``FocalLoss(use_sigmoid=True)``."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def sigmoid_focal_loss(pred: Tensor, labels: Tensor, gamma: float = 2.0, alpha: float = 0.25) -> Tensor:
    """Per-sample focal loss, summed over classes.

    Args:
        pred: ``[N, C]`` class logits (sigmoid, no background channel).
        labels: ``[N]`` int, the class, or ``C`` (any value outside ``[0, C)``) for background.

    Returns:
        ``[N]``: ``sum_c BCE(pred, y) * (alpha y + (1 - alpha)(1 - y)) * |y - sigmoid(pred)|^gamma``
        with ``y`` the one-hot target.
    """
    num_classes = pred.shape[1]
    classes = torch.arange(num_classes, device=labels.device)
    target = (labels.long()[:, None] == classes).to(pred.dtype)
    prob = pred.sigmoid()
    pt = (1 - prob) * target + prob * (1 - target)
    weight = (alpha * target + (1 - alpha) * (1 - target)) * pt.pow(gamma)
    return (F.binary_cross_entropy_with_logits(pred, target, reduction="none") * weight).sum(dim=1)
