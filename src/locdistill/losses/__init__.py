"""Loss functions (one concept per file). Each takes raw predictions and returns per-element losses;
reduction with weights and an average factor is :func:`weight_reduce`."""

from locdistill.losses.distribution_focal import distribution_focal_loss
from locdistill.losses.giou import giou_loss
from locdistill.losses.kd import kd_kl_div
from locdistill.losses.quality_focal import quality_focal_loss
from locdistill.losses.reduce import weight_reduce

__all__ = ["distribution_focal_loss", "giou_loss", "kd_kl_div", "quality_focal_loss", "weight_reduce"]
