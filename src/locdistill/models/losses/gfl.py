"""The GFL training objective: QFL + GIoU + DFL with mmdetection's exact normalisation.

Per level (all images together), with ``w_i`` the student's own max class sigmoid at positive ``i``
(detached) and everything in the box branch in stride units:

* ``loss_cls_l  = qfl_weight * sum_anchors label_weight * QFL / (num_total_pos + eps)``
* ``loss_bbox_l = giou_weight * sum_pos w_i (1 - GIoU_i) / (1 + eps) / W``
* ``loss_dfl_l  = dfl_weight * sum_{pos, side} w_i DFL / (4 + eps) / W``

where ``num_total_pos = sum_images max(#pos, 1)`` and ``W = max(sum_{levels, images} w_i, 1)``, both
averaged over ranks. The per-level values are returned so that they can be checked against
mmdetection level by level.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from locdistill.losses import distribution_focal_loss, giou_loss, quality_focal_loss
from locdistill.losses.reduce import EPS32
from locdistill.models.assigners.assignment import Assignment
from locdistill.models.heads.outputs import HeadOutputs, flatten_levels
from locdistill.models.integral import Integral
from locdistill.ops.box_ops import bbox2distance, bbox_overlaps, box_centers, distance2bbox
from locdistill.utils.dist import reduce_mean


@dataclass
class PositiveSamples:
    """Everything the box losses (and LD) need at the positives, flattened over the batch.

    Attributes:
        batch_index, anchor_index: ``[P]`` where the positives are.
        level: ``[P]`` level of each positive; strides: ``[P]``.
        centers: ``[P, 2]`` anchor centres in stride units.
        weights: ``[P]`` ``w_i``, max class sigmoid of the student (detached).
        pred_logits: ``[P, 4, R+1]`` distribution logits.
        pred_boxes: ``[P, 4]`` decoded boxes, stride units; target_boxes: ``[P, 4]`` likewise.
    """

    batch_index: Tensor
    anchor_index: Tensor
    level: Tensor
    strides: Tensor
    centers: Tensor
    weights: Tensor
    pred_logits: Tensor
    pred_boxes: Tensor
    target_boxes: Tensor


def positive_samples(cls: Tensor, reg: Tensor, assignment: Assignment, integral: Integral) -> PositiveSamples:
    """Gather the positives of a batch. ``cls``: ``[B, A, C]``, ``reg``: ``[B, A, 4*(R+1)]``."""
    b_idx, a_idx = assignment.pos_mask.nonzero(as_tuple=True)
    strides = assignment.anchor_strides[a_idx]
    centers = box_centers(assignment.anchors[a_idx]) / strides[:, None]
    pos_reg = reg[b_idx, a_idx]
    pred_boxes = distance2bbox(centers, integral(pos_reg))
    target_boxes = assignment.gt_boxes[b_idx, a_idx] / strides[:, None]
    weights = cls.detach()[b_idx, a_idx].sigmoid().max(dim=1).values
    return PositiveSamples(
        batch_index=b_idx,
        anchor_index=a_idx,
        level=assignment.level_index[a_idx],
        strides=strides,
        centers=centers,
        weights=weights,
        pred_logits=pos_reg.reshape(-1, 4, integral.reg_max + 1),
        pred_boxes=pred_boxes,
        target_boxes=target_boxes,
    )


def per_level_sum(values: Tensor, level: Tensor, num_levels: int) -> Tensor:
    """Sum ``values`` ``[N]`` into ``[num_levels]`` bins by ``level`` ``[N]``."""
    return values.new_zeros(num_levels).index_add(0, level, values)


def gfl_loss(
    outputs: HeadOutputs,
    assignment: Assignment,
    integral: Integral,
    qfl_beta: float = 2.0,
    qfl_weight: float = 1.0,
    giou_weight: float = 2.0,
    dfl_weight: float = 0.25,
    positives: PositiveSamples | None = None,
) -> dict[str, Tensor]:
    """GFL losses per level.

    Args:
        outputs: raw head outputs (float32).
        assignment: from :func:`locdistill.models.assigners.assignment.build_assignment` on the same batch.
        integral: the head's :class:`Integral`.
        positives: :func:`positive_samples` of these outputs, when the caller has them already (the
            Distiller shares them with LD), else computed here.

    Returns:
        ``loss_cls``, ``loss_bbox``, ``loss_dfl``: ``[L]`` per-level losses (sum them for training);
        ``weight_sum``: ``[L]`` per-level ``sum w_i``; ``bbox_divisor``: scalar ``W``;
        ``num_total_pos``: the averaged normaliser of QFL.
    """
    num_levels = len(outputs.cls_scores)
    cls = flatten_levels(outputs.cls_scores)
    num_classes = cls.shape[-1]
    pos = positives
    if pos is None:
        pos = positive_samples(cls, flatten_levels(outputs.bbox_preds), assignment, integral)

    # Quality target: IoU of the detached decoded box with its GT, at positives only.
    iou = bbox_overlaps(pos.pred_boxes.detach(), pos.target_boxes, is_aligned=True)
    score = cls.new_zeros(assignment.labels.shape)
    score[pos.batch_index, pos.anchor_index] = iou.to(score.dtype)

    num_total_pos = reduce_mean(assignment.num_total_pos.to(cls.dtype))
    qfl = quality_focal_loss(
        cls.reshape(-1, num_classes), assignment.labels.reshape(-1), score.reshape(-1), qfl_beta
    )
    qfl = qfl * assignment.label_weights.reshape(-1)
    level_of_all = assignment.level_index.repeat(cls.shape[0])
    loss_cls = qfl_weight * per_level_sum(qfl, level_of_all, num_levels) / (num_total_pos + EPS32)

    giou = giou_loss(pos.pred_boxes, pos.target_boxes) * pos.weights
    loss_bbox = giou_weight * per_level_sum(giou, pos.level, num_levels) / (1.0 + EPS32)

    dfl_target = bbox2distance(pos.centers, pos.target_boxes, integral.reg_max).reshape(-1)
    dfl = distribution_focal_loss(pos.pred_logits.reshape(-1, integral.reg_max + 1), dfl_target)
    dfl = (dfl * pos.weights[:, None].expand(-1, 4).reshape(-1)).reshape(-1, 4).sum(dim=1)
    loss_dfl = dfl_weight * per_level_sum(dfl, pos.level, num_levels) / (4.0 + EPS32)

    weight_sum = per_level_sum(pos.weights, pos.level, num_levels)
    divisor = reduce_mean(weight_sum.sum()).clamp(min=1)
    # Levels without positives still touch every distribution output (and its Scale) with a zero, as
    # mmdetection does, so that DDP sees every parameter used.
    zero = sum(r.sum() for r in outputs.bbox_preds) * 0
    return {
        "loss_cls": loss_cls,
        "loss_bbox": loss_bbox / divisor + zero,
        "loss_dfl": loss_dfl / divisor + zero,
        "weight_sum": weight_sum,
        "bbox_divisor": divisor,
        "num_total_pos": num_total_pos,
    }
