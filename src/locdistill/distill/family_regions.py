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
from locdistill.ops.box_ops import box_centers
from locdistill.ops.diou import anchor_gt_diou
from locdistill.structures import Targets


def atss_alpha(
    anchors: Tensor, num_level_anchors: list[int], gt_boxes: Tensor, overlaps: Tensor, topk: int
) -> Tensor:
    """``[G]`` ATSS threshold (mean + unbiased std of the candidates' IoUs) of each GT.

    Args:
        anchors: ``[V, 4]`` levels concatenated (``num_level_anchors`` per level); gt_boxes: ``[G, 4]``;
        overlaps: ``[V, G]`` IoU.
    """
    diff = box_centers(anchors)[:, None, :] - box_centers(gt_boxes)[None, :, :]
    distances = diff.pow(2).sum(-1).sqrt()  # as the ATSS assigner (no cdist: its matmul path reorders ties)
    candidates, start = [], 0
    for n in num_level_anchors:
        k = min(topk, n)
        if k > 0:
            candidates.append(distances[start : start + n].topk(k, dim=0, largest=False).indices + start)
        start += n
    idx = torch.cat(candidates)  # [K, G]
    cand = overlaps.gather(0, idx)
    return cand.mean(0) + cand.std(0)


def retina_vlr_region(
    assignment: Assignment,
    targets: list[Targets],
    alpha_low: float = 0.25,
    mode: Literal["official", "true"] = "official",
    topk: int = 9,
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
        counts = [int(m.sum()) for m in assignment.valid[i].split(assignment.num_level_anchors)]
        iou = assign.overlaps
        alpha = atss_alpha(a, counts, gts, iou, topk)[None, :]
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
