"""Helpers shared by the RetinaGFL, ATSS-GFL and FCOS-GFL objectives."""

from __future__ import annotations

from torch import Tensor

from locdistill.models.assigners.assignment import Assignment
from locdistill.models.assigners.centerness import centerness_target, point_box_distances
from locdistill.models.heads.outputs import flatten_levels
from locdistill.models.losses.gfl import PositiveSamples
from locdistill.ops.box_ops import box_centers


def flatten_priors(maps: list[Tensor], k: int) -> Tensor:
    """Per-level ``[B, A*k, H_l, W_l]`` (anchor-major channels) -> ``[B, sum_l H_l*W_l*A, k]``, priors in
    the order of :mod:`locdistill.models.priors.multi_anchors` (location-major, anchors of a location
    consecutive), levels concatenated: :func:`~locdistill.models.heads.outputs.flatten_levels` with
    ``A = channels / k``."""
    return flatten_levels(maps, maps[0].shape[1] // k)


def level_sum(values: Tensor, level: Tensor, num_levels: int) -> Tensor:
    """Sum ``values`` ``[N]`` into ``[num_levels]`` bins by ``level`` ``[N]``."""
    return values.new_zeros(num_levels).index_add(0, level, values)


def positive_centerness(assignment: Assignment, pos: PositiveSamples) -> Tensor:
    """``[P]`` centerness targets at the positives: from the prior's centre (the anchor centre for
    ATSS, the point for FCOS) to its GT's sides, in pixels."""
    centres = box_centers(assignment.anchors[pos.anchor_index])
    gt = assignment.gt_boxes[pos.batch_index, pos.anchor_index]
    return centerness_target(point_box_distances(centres, gt))
