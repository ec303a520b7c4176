"""The ATSS-GFL and FCOS-GFL objectives (LD code's ``ATSSGFLHead.loss`` / ``FCOSGFLHead.loss``), per level.

With ``c_i`` the centerness target of positive ``i`` and ``A_c = mean over processes of sum_i c_i``
(replaced by 1 when below 1e-12, as the original; mmdetection 3 clamps ATSS's to >= 1 and FCOS's to
>= 1e-6):

* ``loss_cls_l = sum_{priors of l} label_weight * Focal / N``,
* ``loss_bbox_l = giou_weight * sum_{pos of l} c_i (1 - GIoU_i) / A_c`` (stride units, Integral decode),
* ``loss_centerness_l = sum_{pos of l} BCE(ctr_i, c_i) / N``,

where ``N`` is, for ATSS, ``max(mean over processes of sum_images max(#pos, 1), 1)`` and, for FCOS,
``max(mean over processes of #pos, 1)`` (``plain_count=True``).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from locdistill.losses.focal import sigmoid_focal_loss
from locdistill.losses.giou import giou_loss
from locdistill.losses.reduce import EPS32
from locdistill.models.assigners.assignment import Assignment
from locdistill.models.heads.family_outputs import FamilyOutputs
from locdistill.models.integral import Integral
from locdistill.models.losses.common import flatten_priors, level_sum, positive_centerness
from locdistill.models.losses.gfl import PositiveSamples, positive_samples
from locdistill.utils.dist import reduce_mean


def centerness_gfl_loss(
    outputs: FamilyOutputs,
    assignment: Assignment,
    integral: Integral,
    num_classes: int,
    plain_count: bool,
    gamma: float = 2.0,
    alpha: float = 0.25,
    cls_weight: float = 1.0,
    giou_weight: float = 2.0,
    centerness_weight: float = 1.0,
    positives: PositiveSamples | None = None,
) -> dict[str, Tensor]:
    """Per-level ``loss_cls``, ``loss_bbox``, ``loss_centerness`` ``[L]``; also ``num_total_pos`` (N),
    ``bbox_numerator`` ``[L]`` (before the division by ``bbox_divisor`` = ``A_c``)."""
    num_levels = len(outputs.cls_scores)
    cls = flatten_priors(outputs.cls_scores, num_classes)
    pos = positives
    if pos is None:
        pos = positive_samples(
            cls, flatten_priors(outputs.bbox_preds, 4 * (integral.reg_max + 1)), assignment, integral
        )
    if plain_count:
        n = reduce_mean(assignment.pos_mask.sum().to(cls.dtype)).clamp(min=1)
    else:
        n = reduce_mean(assignment.num_total_pos.to(cls.dtype)).clamp(min=1)
    focal = sigmoid_focal_loss(cls.reshape(-1, num_classes), assignment.labels.reshape(-1), gamma, alpha)
    focal = focal * assignment.label_weights.reshape(-1)
    level_of_all = assignment.level_index.repeat(cls.shape[0])
    loss_cls = cls_weight * level_sum(focal, level_of_all, num_levels) / (n + EPS32)

    ctr_target = positive_centerness(assignment, pos)
    giou = giou_loss(pos.pred_boxes, pos.target_boxes) * ctr_target
    numerator = giou_weight * level_sum(giou, pos.level, num_levels)
    divisor = reduce_mean(ctr_target.sum().detach())
    divisor = divisor.where(divisor >= 1e-12, divisor.new_ones(()))
    ctr_logits = flatten_priors(outputs.centernesses, 1)[pos.batch_index, pos.anchor_index, 0]
    bce = F.binary_cross_entropy_with_logits(ctr_logits, ctr_target, reduction="none")
    loss_ctr = centerness_weight * level_sum(bce, pos.level, num_levels) / (n + EPS32)
    zero = sum(r.sum() for r in outputs.bbox_preds) * 0 + sum(c.sum() for c in outputs.centernesses) * 0
    return {
        "loss_cls": loss_cls,
        "loss_bbox": numerator / divisor + zero,
        "loss_centerness": loss_ctr + zero,
        "num_total_pos": n,
        "bbox_numerator": numerator,
        "bbox_divisor": divisor,
    }
