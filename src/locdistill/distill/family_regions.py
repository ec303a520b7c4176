"""Second distillation regions of the RetinaGFL and FCOS-GFL LD heads (LD code's ``LDRetinaHead`` and
``LDFCOSHead``; ATSS-GFL uses GFL's VLR, :func:`locdistill.distill.regions.vlr_region`).

* RetinaGFL: the VLR computed as for ATSS, but with the ATSS-style threshold ``alpha`` of each GT
  computed here (the positives come from MaxIoU): per level the ``topk`` anchors whose centres are nearest
  the GT centre, ``alpha = mean + std`` of their IoUs; an anchor is in the GT's VLR when
  ``alpha_low * alpha <= DIoU < alpha``; weight = IoU with the best such GT; **positives excluded**.
* FCOS-GFL: the points strictly inside some GT box that are not positive, weighted by the student's
  own max class score (detached).

Images without GT have no second region (the original crashes on them).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from locdistill.models.assigners.assignment import Assignment
from locdistill.models.assigners.batch import PointAssignment
from locdistill.ops.diou import anchor_gt_diou
from locdistill.structures import Targets


def retina_vlr_region(
    assignment: Assignment,
    targets: list[Targets],
    alpha_low: float = 0.25,
    mode: Literal["official", "true"] = "official",
) -> Tensor:
    """``[B, A]`` VLR weights of a RetinaGFL batch (IoU with the chosen GT, 0 outside the VLR, at
    positives and at anchors outside the image's padded area)."""
    anchors = assignment.anchors
    out = anchors.new_zeros(assignment.valid.shape)
    for i, (tgt, assign) in enumerate(zip(targets, assignment.per_image)):
        if len(tgt) == 0:
            continue
        valid_idx = assignment.valid[i].nonzero().squeeze(1)
        a = anchors[valid_idx]
        gts = tgt.boxes.to(a)
        iou = assign.overlaps
        alpha = assign.iou_thr_per_gt[None, :]  # ATSS-style, computed by the MaxIoU batch assignment
        diou = anchor_gt_diou(a, gts, mode)
        member = (diou >= alpha_low * alpha) & (diou < alpha)
        best = torch.where(member, iou, iou.new_full((), -1.0)).max(dim=1).values
        out[i, valid_idx] = torch.where(member.any(dim=1), best, a.new_zeros(()))
    return torch.where(assignment.pos_mask, out.new_zeros(()), out)


def inside_gt_region(assignment: PointAssignment, student_cls: Tensor) -> Tensor:
    """``[B, A]`` FCOS-LD second-region weights: the student's max class sigmoid (detached) at points
    strictly inside some GT that are not positive, 0 elsewhere.

    Args:
        student_cls: ``[B, A, C]`` class logits.
    """
    region = assignment.inside_gt & ~assignment.pos_mask
    score = student_cls.detach().sigmoid().max(dim=-1).values
    return torch.where(region, score, score.new_zeros(()))
