"""The RetinaGFL objective (LD code's ``RetinaGFLHead.loss``), per level.

With ``N = sum_images max(#pos, 1)`` on this process (not averaged over processes, as the original):

* ``loss_cls_l  = sum_{anchors of l} label_weight * Focal / N`` (ignored and invalid anchors weigh 0);
* ``loss_bbox_l = giou_weight * sum_{pos of l} (1 - GIoU(pred, gt)) / N``, boxes in stride units, the
  prediction decoded by the Integral from the anchor centre. No DFL, no quality target, no clamp.
"""

from __future__ import annotations

from torch import Tensor

from locdistill.losses.focal import sigmoid_focal_loss
from locdistill.losses.giou import giou_loss
from locdistill.losses.reduce import EPS32
from locdistill.models.assigners.assignment import Assignment
from locdistill.models.heads.family_outputs import FamilyOutputs
from locdistill.models.integral import Integral
from locdistill.models.losses.common import flatten_priors, level_sum
from locdistill.models.losses.gfl import PositiveSamples, positive_samples


def retina_gfl_loss(
    outputs: FamilyOutputs,
    assignment: Assignment,
    integral: Integral,
    num_classes: int,
    gamma: float = 2.0,
    alpha: float = 0.25,
    cls_weight: float = 1.0,
    giou_weight: float = 2.0,
    positives: PositiveSamples | None = None,
) -> dict[str, Tensor]:
    """Per-level losses ``loss_cls``, ``loss_bbox`` ``[L]`` and the normaliser ``num_total_pos``."""
    num_levels = len(outputs.cls_scores)
    cls = flatten_priors(outputs.cls_scores, num_classes)
    pos = positives
    if pos is None:
        pos = positive_samples(
            cls, flatten_priors(outputs.bbox_preds, 4 * (integral.reg_max + 1)), assignment, integral
        )
    n = assignment.num_total_pos.to(cls.dtype)
    focal = sigmoid_focal_loss(cls.reshape(-1, num_classes), assignment.labels.reshape(-1), gamma, alpha)
    focal = focal * assignment.label_weights.reshape(-1)
    level_of_all = assignment.level_index.repeat(cls.shape[0])
    loss_cls = cls_weight * level_sum(focal, level_of_all, num_levels) / (n + EPS32)
    giou = giou_loss(pos.pred_boxes, pos.target_boxes)
    loss_bbox = giou_weight * level_sum(giou, pos.level, num_levels) / (n + EPS32)
    zero = sum(r.sum() for r in outputs.bbox_preds) * 0
    return {"loss_cls": loss_cls, "loss_bbox": loss_bbox + zero, "num_total_pos": n}
