"""FCOS-GFL: FCOS (points at cell centres, center sampling, regress ranges, centerness on the box tower)
whose box branch is a GFL-style distribution (the LD code's ``FCOSGFLHead``; docs/families.md)."""

from __future__ import annotations

import torch
from torch import Tensor

from locdistill.models.assigners.assignment import Assignment
from locdistill.models.assigners.batch import build_point_assignment
from locdistill.models.detectors.atss_gfl import CenternessDetector
from locdistill.models.detectors.base import LDSpec
from locdistill.models.priors.points import multi_level_points
from locdistill.structures import ImageMeta, Targets


class FCOSGFL(CenternessDetector):
    """Losses as :class:`~locdistill.models.detectors.atss_gfl.CenternessDetector` (GIoU weight 1 in
    the configs),
    normalised by the plain positive count; every point is used (no padding validity)."""

    family = "FCOS-GFL"
    ld_spec = LDSpec(second_region="inside_gt_negatives", second_weight="student_score")
    plain_count = True

    def build_priors(self, sizes: list[tuple[int, int]], device: torch.device) -> list[Tensor]:
        return multi_level_points(sizes, self.strides, device)

    def prior_centres(self, grid: list[Tensor]) -> list[Tensor]:
        return grid

    def assign_checked(
        self, grid: list[Tensor], targets: list[Targets], metas: list[ImageMeta]
    ) -> Assignment:
        s = self.settings
        return build_point_assignment(
            grid,
            self.strides,
            targets,
            self.num_classes,
            s.regress_ranges,
            s.center_sampling,
            s.center_sample_radius,
        )
