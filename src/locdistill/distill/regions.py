"""Where LD distils: the main region (the assignment's positives) and the second region, of the kind
the student's family names (:class:`~locdistill.models.detectors.base.LDSpec`):

* ``vlr``: the Valuable Localization Region (Zheng et al., TPAMI 2023): for each GT with ATSS threshold
  ``alpha``, every anchor whose DIoU with the GT lies in ``[alpha_low * alpha, alpha)`` belongs to the
  GT's VLR; an anchor in several VLRs goes to the GT of highest IoU and is weighted by that plain IoU.
  Positives are not excluded (GFL, ATSS-GFL).
* ``vlr_negatives``: the same without the positives (RetinaGFL).
* ``inside_gt_negatives``: valid priors that are not positive and whose point lies strictly inside at
  least one GT box (FCOS-GFL), weight 1 (the Distiller weights them as the family says).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from locdistill.models.assigners.assignment import Assignment
from locdistill.models.detectors.base import SecondRegion
from locdistill.ops.box_ops import box_centers
from locdistill.ops.diou import anchor_gt_diou
from locdistill.structures import Targets


def vlr_region(
    assignment: Assignment,
    targets: list[Targets],
    alpha_low: float = 0.25,
    mode: Literal["official", "true"] = "official",
) -> Tensor:
    """VLR weights for a batch.

    Args:
        assignment: the student's assignment (anchors, validity; per image the prior-to-GT IoUs and
            each GT's ATSS-style threshold).
        targets: the batch's GTs (pixels).
        alpha_low: lower end of the band as a fraction of the GT's threshold.
        mode: which DIoU (see :func:`locdistill.ops.diou.anchor_gt_diou`).

    Returns:
        ``[B, A]`` float: the IoU with the chosen GT for VLR anchors, 0 elsewhere (also 0 at anchors
        outside the image's padded area).
    """
    anchors = assignment.anchors
    out = anchors.new_zeros(assignment.valid.shape)
    for i, (tgt, assign) in enumerate(zip(targets, assignment.per_image)):
        if len(tgt) == 0:
            continue
        valid_idx = assignment.valid[i].nonzero().squeeze(1)
        a = anchors[valid_idx]
        gts = tgt.boxes.to(a)
        alpha = assign.iou_thr_per_gt[None, :]
        diou = anchor_gt_diou(a, gts, mode)
        member = (diou >= alpha_low * alpha) & (diou < alpha)
        iou = assign.overlaps
        best = torch.where(member, iou, iou.new_full((), -1.0)).max(dim=1)
        in_vlr = member.any(dim=1)
        out[i, valid_idx] = torch.where(in_vlr, best.values, a.new_zeros(()))
    return out


def inside_gt_negatives(assignment: Assignment, targets: list[Targets]) -> Tensor:
    """``[B, A]`` float, 1 at valid non-positive priors whose point (the anchor's centre; a point prior's
    own point) lies strictly inside at least one of the image's GT boxes, 0 elsewhere."""
    points = box_centers(assignment.anchors)
    out = points.new_zeros(assignment.valid.shape)
    for i, tgt in enumerate(targets):
        if len(tgt) == 0:
            continue
        gts = tgt.boxes.to(points)
        x, y = points[:, 0:1], points[:, 1:2]
        inside = torch.stack([x - gts[:, 0], y - gts[:, 1], gts[:, 2] - x, gts[:, 3] - y], dim=-1)
        member = (inside.min(dim=-1).values > 0).any(dim=1) & assignment.valid[i] & ~assignment.pos_mask[i]
        out[i] = member.to(out.dtype)
    return out


def second_region(
    kind: SecondRegion,
    assignment: Assignment,
    targets: list[Targets],
    alpha_low: float = 0.25,
    mode: Literal["official", "true"] = "official",
) -> Tensor:
    """``[B, A]`` float weights of the second LD region of ``kind`` (0 outside it): the VLR's IoU
    (``vlr``; ``vlr_negatives`` with the positives set to 0) or 1 (``inside_gt_negatives``).
    ``alpha_low`` and ``mode`` are the VLR's (:func:`vlr_region`)."""
    if kind == "inside_gt_negatives":
        return inside_gt_negatives(assignment, targets)
    region = vlr_region(assignment, targets, alpha_low, mode)
    if kind == "vlr_negatives":
        region = torch.where(assignment.pos_mask, region.new_zeros(()), region)
    return region


def main_region(assignment: Assignment) -> Tensor:
    """``[B, A]`` bool: the assignment's positives (where Main LD and Main KD act)."""
    return assignment.pos_mask
