"""ATSS-GFL: ATSS (one square anchor per location, ATSS assignment, centerness on the box tower) whose
box branch is a GFL-style distribution, trained by centerness-weighted GIoU on its Integral only (the LD
code's ``ATSSGFLHead``; docs/families.md)."""

from __future__ import annotations

import torch
from torch import Tensor

from locdistill.models.assigners.assignment import Assignment, build_assignment
from locdistill.models.detectors.base import LDSpec
from locdistill.models.detectors.family import FamilyDetector
from locdistill.models.heads.family_outputs import FamilyOutputs
from locdistill.models.losses.centerness_gfl import centerness_gfl_loss
from locdistill.models.losses.gfl import PositiveSamples
from locdistill.models.priors.anchors import AnchorGrid
from locdistill.ops.box_ops import box_centers
from locdistill.structures import ImageMeta, Targets


class CenternessDetector(FamilyDetector):
    """ATSS-GFL and FCOS-GFL: losses ``loss_cls`` (focal), ``loss_bbox`` (GIoU x centerness),
    ``loss_centerness`` (:func:`~locdistill.models.losses.centerness_gfl.centerness_gfl_loss`)."""

    loss_keys = ("loss_cls", "loss_bbox", "loss_centerness")
    plain_count = False  # N = sum_images max(#pos, 1) (FCOS: the plain positive count)

    def loss_per_level(
        self, outputs: FamilyOutputs, assignment: Assignment, positives: PositiveSamples | None = None
    ) -> dict[str, Tensor]:
        s = self.settings
        if positives is None:
            positives = self.positive_samples(outputs, assignment)
        return centerness_gfl_loss(
            outputs,
            assignment,
            self.integral,
            self.num_classes,
            self.plain_count,
            s.focal_gamma,
            s.focal_alpha,
            s.focal_weight,
            s.giou_weight,
            s.centerness_weight,
            positives,
        )


class ATSSGFL(CenternessDetector):
    """ATSS assignment over one square anchor per location (side ``octave_base_scale`` strides)."""

    family = "ATSS-GFL"
    ld_spec = LDSpec()

    def build_priors(self, sizes: list[tuple[int, int]], device: torch.device) -> AnchorGrid:
        return AnchorGrid(sizes, self.strides, self.settings.octave_base_scale, device)

    def prior_centres(self, grid: AnchorGrid) -> list[Tensor]:
        return [box_centers(a) for a in grid.per_level]

    def assign_checked(self, grid: AnchorGrid, targets: list[Targets], metas: list[ImageMeta]) -> Assignment:
        return build_assignment(
            grid.per_level,
            grid.featmap_sizes,
            self.strides,
            targets,
            metas,
            self.num_classes,
            self.settings.atss_topk,
            grid=grid,
        )
