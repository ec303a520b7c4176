"""Quality Focal Loss (GFL, Li et al. 2020): focal BCE against a soft IoU target at the GT class."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def quality_focal_loss(pred: Tensor, labels: Tensor, scores: Tensor, beta: float = 2.0) -> Tensor:
    """Per-sample QFL, summed over classes.

    Args:
        pred: ``[N, C]`` class logits (sigmoid, no background channel).
        labels: ``[N]`` int, the target class, or ``C`` (or any value outside ``[0, C)``) for background.
        scores: ``[N]`` the quality target (IoU of the predicted box with its GT, in [0, 1]); read
            only at positives.
        beta: focusing exponent.

    Returns:
        ``[N]``: ``sum_c BCE(pred, 0) * sigmoid(pred)^beta`` with the positive's own class replaced by
        ``BCE(pred, score) * |score - sigmoid(pred)|^beta``.
    """
    num_classes = pred.shape[1]
    sigmoid = pred.sigmoid()
    pos = (labels >= 0) & (labels < num_classes)
    # == against arange rather than F.one_hot, which reads the labels' min and max back to the host
    classes = torch.arange(num_classes, device=labels.device)
    onehot = (labels.long()[:, None] == classes) & pos[:, None]
    target = torch.where(onehot, scores[:, None].to(pred.dtype), torch.zeros_like(pred))
    modulator = (target - sigmoid).abs().pow(beta)
    loss = F.binary_cross_entropy_with_logits(pred, target, reduction="none") * modulator
    return loss.sum(dim=1)
