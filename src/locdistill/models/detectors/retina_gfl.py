"""RetinaGFL: RetinaNet (9 anchors per location, MaxIoU assignment, focal loss) whose box branch is a
GFL-style distribution, trained by GIoU on its Integral only (the LD code's ``RetinaGFLHead``;
docs/families.md)."""

from __future__ import annotations

import torch
from torch import Tensor

from locdistill.models.assigners.assignment import Assignment
from locdistill.models.assigners.batch import build_max_iou_assignment
from locdistill.models.detectors.base import LDSpec
from locdistill.models.detectors.family import FamilyDetector
from locdistill.models.heads.family_outputs import FamilyOutputs
from locdistill.models.losses.gfl import PositiveSamples
from locdistill.models.losses.retina_gfl import retina_gfl_loss
from locdistill.models.priors.multi_anchors import MultiAnchorGrid
from locdistill.ops.box_ops import box_centers
from locdistill.structures import ImageMeta, Targets


class RetinaGFL(FamilyDetector):
    """See :class:`~locdistill.models.detectors.family.FamilyDetector`; losses ``loss_cls`` (focal) and
    ``loss_bbox`` (GIoU, weight 2), both divided by ``sum_images max(#pos, 1)``."""

    family = "RetinaGFL"
    ld_spec = LDSpec(row="prior", second_region="vlr_negatives")

    def build_priors(self, sizes: list[tuple[int, int]], device: torch.device) -> MultiAnchorGrid:
        s = self.settings
        return MultiAnchorGrid(
            sizes, self.strides, s.octave_base_scale, s.scales_per_octave, s.anchor_ratios, device
        )

    def prior_centres(self, grid: MultiAnchorGrid) -> list[Tensor]:
        return [box_centers(a) for a in grid.per_level]

    def assign_checked(
        self, grid: MultiAnchorGrid, targets: list[Targets], metas: list[ImageMeta]
    ) -> Assignment:
        s = self.settings
        return build_max_iou_assignment(
            grid, targets, metas, self.num_classes, s.pos_iou_thr, s.neg_iou_thr, s.min_pos_iou
        )

    def loss_per_level(
        self, outputs: FamilyOutputs, assignment: Assignment, positives: PositiveSamples | None = None
    ) -> dict[str, Tensor]:
        s = self.settings
        if positives is None:
            positives = self.positive_samples(outputs, assignment)
        return retina_gfl_loss(
            outputs,
            assignment,
            self.integral,
            self.num_classes,
            s.focal_gamma,
            s.focal_alpha,
            s.focal_weight,
            s.giou_weight,
            positives,
        )
