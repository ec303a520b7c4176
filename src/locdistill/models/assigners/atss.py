"""ATSS: Adaptive Training Sample Selection (Zhang et al. 2020), as mmdetection's ``ATSSAssigner``.

For each GT: on every level take the ``topk`` anchors whose centres are nearest the GT centre
(L2); the GT's IoU threshold is the mean plus the unbiased std of those candidates' IoUs; a candidate
is positive when its IoU reaches the threshold and its centre lies inside the GT by more than 0.01.
An anchor positive for several GTs goes to the one of highest IoU (first on ties). Vectorised over GTs.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from locdistill.ops.box_ops import bbox_overlaps, box_centers

INF = 100000000.0


@dataclass
class AssignResult:
    """ATSS result for one image.

    Attributes:
        gt_inds: ``[A]`` int64: 0 negative, ``k >= 1`` the 1-based GT index, -1 ignored.
        max_overlaps: ``[A]`` IoU with the assigned GT at positives, ``-INF`` elsewhere (0 without GTs).
        labels: ``[A]`` int64 GT label at positives, -1 elsewhere.
        iou_thr_per_gt: ``[G]`` each GT's adaptive IoU threshold (used by VLR distillation).
        overlaps: ``[A, G]`` anchor-to-GT IoU.
    """

    gt_inds: Tensor
    max_overlaps: Tensor
    labels: Tensor
    iou_thr_per_gt: Tensor
    overlaps: Tensor


def atss_assign(
    anchors: Tensor,
    num_level_anchors: list[int],
    gt_boxes: Tensor,
    gt_labels: Tensor,
    topk: int = 9,
    ignore_boxes: Tensor | None = None,
    ignore_iof_thr: float = -1.0,
) -> AssignResult:
    """Assign anchors of one image to GTs.

    Args:
        anchors: ``[A, 4]`` valid anchors of all levels, levels concatenated.
        num_level_anchors: anchors per level in ``anchors`` (sums to A).
        gt_boxes: ``[G, 4]`` pixels; gt_labels: ``[G]``.
        topk: candidates per level per GT.
        ignore_boxes: ``[I, 4]`` regions; with ``ignore_iof_thr > 0`` anchors whose IoF with one of them
            exceeds the threshold are ignored (-1) unless they become positive.

    Returns:
        :class:`AssignResult`.
    """
    num_anchors, num_gt = anchors.shape[0], gt_boxes.shape[0]
    device = anchors.device
    overlaps = bbox_overlaps(anchors, gt_boxes)
    gt_inds = torch.zeros(num_anchors, dtype=torch.long, device=device)
    if num_gt == 0 or num_anchors == 0:
        return AssignResult(
            gt_inds=gt_inds,
            max_overlaps=anchors.new_zeros(num_anchors),
            labels=torch.full((num_anchors,), -1, dtype=torch.long, device=device),
            iou_thr_per_gt=anchors.new_zeros(num_gt),
            overlaps=overlaps,
        )

    gt_centers = box_centers(gt_boxes)
    anchor_centers = box_centers(anchors)
    distances = (anchor_centers[:, None, :] - gt_centers[None, :, :]).pow(2).sum(-1).sqrt()

    if ignore_boxes is not None and ignore_boxes.numel() > 0 and ignore_iof_thr > 0:
        ignore_max = bbox_overlaps(anchors, ignore_boxes, mode="iof").max(dim=1).values
        ignored = ignore_max > ignore_iof_thr
        distances = torch.where(ignored[:, None], INF, distances)
        gt_inds = torch.where(ignored, -1, gt_inds)

    candidates = []
    start = 0
    for n in num_level_anchors:
        end = start + n
        k = min(topk, n)
        if k > 0:
            _, idx = distances[start:end].topk(k, dim=0, largest=False)
            candidates.append(idx + start)
        start = end
    candidate_idxs = torch.cat(candidates, dim=0)  # [K, G]

    gt_range = torch.arange(num_gt, device=device)
    candidate_overlaps = overlaps[candidate_idxs, gt_range]  # [K, G]
    iou_thr = candidate_overlaps.mean(0) + candidate_overlaps.std(0)
    is_pos = candidate_overlaps >= iou_thr[None, :]

    cand_cx = anchor_centers[candidate_idxs, 0]  # [K, G]
    cand_cy = anchor_centers[candidate_idxs, 1]
    margin = (
        torch.stack(
            [
                cand_cx - gt_boxes[:, 0],
                cand_cy - gt_boxes[:, 1],
                gt_boxes[:, 2] - cand_cx,
                gt_boxes[:, 3] - cand_cy,
            ],
            dim=-1,
        )
        .min(dim=-1)
        .values
    )
    is_pos &= margin > 0.01

    # Overlaps kept only at (candidate, GT) pairs that are positive; -INF elsewhere. A GT's candidates
    # are distinct anchors (top-k per level, levels disjoint), so the scatter writes each cell once.
    overlaps_inf = torch.full((num_gt, num_anchors), -INF, dtype=overlaps.dtype, device=device)
    kept = torch.where(is_pos, candidate_overlaps, torch.full_like(candidate_overlaps, -INF))
    overlaps_inf.scatter_(1, candidate_idxs.t(), kept.t())
    max_overlaps, argmax = overlaps_inf.t().max(dim=1)
    positive = max_overlaps != -INF
    gt_inds = torch.where(positive, argmax + 1, gt_inds)
    labels = torch.where(positive, gt_labels[argmax].long(), -1)
    return AssignResult(gt_inds, max_overlaps, labels, iou_thr, overlaps)
