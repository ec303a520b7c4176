"""Where LD distils: the main region (ATSS positives) and the Valuable Localization Region (VLR).

VLR (Zheng et al., TPAMI 2023): for each GT with ATSS threshold ``alpha``, every anchor whose DIoU with
the GT lies in ``[alpha_low * alpha, alpha)`` belongs to the GT's VLR; an anchor in several VLRs goes
to the GT of highest IoU and is weighted by that plain IoU. Positives are not excluded.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from locdistill.models.assigners.assignment import Assignment
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
        assignment: the student's ATSS assignment (anchors, validity, per-GT thresholds).
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


def main_region(assignment: Assignment) -> Tensor:
    """``[B, A]`` bool: the ATSS positives (where Main LD and Main KD act)."""
    return assignment.pos_mask
