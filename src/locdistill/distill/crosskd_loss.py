"""The prediction-mimicking terms of CrossKD on GFL (Wang et al., CVPR 2024), as the authors' code.

The student's cross-head predictions (its tower features run through the frozen teacher head, see
:mod:`locdistill.distill.crosskd`) are distilled to the teacher's own predictions at every anchor:

* classification: KD quality focal loss, ``BCE(x, sigmoid(t)) * |sigmoid(x) - sigmoid(t)|^beta`` summed
  over classes and over the anchors of label weight 1 (valid and not ignored; positives and
  negatives), divided by QFL's number of positives;
* regression: ``KL(softmax(t/T) || softmax(x/T)) * T^2`` summed over the bins of each side, each side
  weighted by the teacher's max class score at its anchor (0 where the label weight is 0), summed,
  divided by 4 and by the sum of those weights over the batch;
* (optional) boxes: ``1 - GIoU`` between the boxes decoded from the cross-head and the teacher
  distributions, with the same weights, divided by their sum.

Shapes: ``B`` images, ``A`` anchors of all levels (flattened as :func:`~locdistill.models.losses.gfl.
flatten_levels`), ``C`` classes, ``R + 1`` bins.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from locdistill.losses import giou_loss
from locdistill.losses.reduce import EPS32
from locdistill.models.integral import Integral
from locdistill.ops.box_ops import distance2bbox


def kd_quality_focal_loss(pred: Tensor, teacher_logits: Tensor, beta: float = 1.0) -> Tensor:
    """``[N, C]`` cross-head and teacher class logits -> ``[N]``: per-class
    ``BCE-with-logits(pred, sigmoid(teacher)) * |sigmoid(pred) - sigmoid(teacher)|^beta``, summed over
    classes. The teacher side is detached."""
    target = teacher_logits.detach().sigmoid()
    focal = (pred.sigmoid() - target).abs().pow(beta)
    return (F.binary_cross_entropy_with_logits(pred, target, reduction="none") * focal).sum(dim=1)


def crosskd_cls_loss(
    cross_cls: Tensor,
    teacher_cls: Tensor,
    label_weights: Tensor,
    avg_factor: Tensor | float,
    beta: float = 1.0,
    loss_weight: float = 1.0,
) -> Tensor:
    """Classification KD.

    Args:
        cross_cls, teacher_cls: ``[B, A, C]`` logits.
        label_weights: ``[B, A]`` the student's ATSS label weights (1 at valid, not ignored anchors).
        avg_factor: QFL's normaliser (the number of positives averaged over ranks).

    Returns:
        scalar ``loss_weight * sum_{anchors, classes} lw * KDQFL / (avg_factor + eps)``.
    """
    num_classes = cross_cls.shape[-1]
    per_anchor = kd_quality_focal_loss(
        cross_cls.reshape(-1, num_classes), teacher_cls.reshape(-1, num_classes), beta
    )
    return loss_weight * (per_anchor * label_weights.reshape(-1)).sum() / (avg_factor + EPS32)


def teacher_box_weights(teacher_cls: Tensor, label_weights: Tensor) -> Tensor:
    """``[B, A]``: the teacher's max class sigmoid at each anchor, 0 where the label weight is 0."""
    weights = teacher_cls.detach().sigmoid().max(dim=-1).values
    return weights * (label_weights > 0).to(weights.dtype)


def crosskd_reg_loss(
    cross_reg: Tensor,
    teacher_reg: Tensor,
    weights: Tensor,
    temperature: float = 1.0,
    loss_weight: float = 4.0,
) -> Tensor:
    """Regression KD on the edge distributions.

    Args:
        cross_reg, teacher_reg: ``[B, A, 4*(R+1)]`` distribution logits (side-major).
        weights: ``[B, A]`` from :func:`teacher_box_weights`.

    Returns:
        scalar ``loss_weight * sum_{anchor, side} w * KLsum * T^2 / (4 + eps) / sum w``.
    """
    bins = cross_reg.shape[-1] // 4
    target = F.softmax(teacher_reg.detach().reshape(-1, bins) / temperature, dim=1)
    log_p = F.log_softmax(cross_reg.reshape(-1, bins) / temperature, dim=1)
    kl = F.kl_div(log_p, target, reduction="none").sum(dim=1) * (temperature * temperature)
    w = weights.reshape(-1).repeat_interleave(4)
    return loss_weight * (kl * w).sum() / (4.0 + EPS32) / weights.sum().clamp(min=EPS32)


def crosskd_bbox_loss(
    cross_reg: Tensor,
    teacher_reg: Tensor,
    weights: Tensor,
    centers: Tensor,
    integral: Integral,
    loss_weight: float = 2.0,
) -> Tensor:
    """GIoU between the decoded cross-head and teacher boxes.

    Args:
        cross_reg, teacher_reg: ``[B, A, 4*(R+1)]`` distribution logits.
        weights: ``[B, A]`` from :func:`teacher_box_weights`.
        centers: ``[A, 2]`` anchor centres in stride units (boxes are decoded in stride units).
        integral: the student's :class:`Integral`.

    Returns:
        scalar ``loss_weight * sum_anchors w * (1 - GIoU) / (1 + eps) / sum w``.
    """
    points = centers[None].expand(cross_reg.shape[0], -1, -1).reshape(-1, 2)
    bins = cross_reg.shape[-1]
    cross_box = distance2bbox(points, integral(cross_reg.reshape(-1, bins)))
    teacher_box = distance2bbox(points, integral(teacher_reg.detach().reshape(-1, bins)))
    loss = giou_loss(cross_box, teacher_box) * weights.reshape(-1)
    return loss_weight * loss.sum() / (1.0 + EPS32) / weights.sum().clamp(min=EPS32)
