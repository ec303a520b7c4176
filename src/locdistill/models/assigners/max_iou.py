"""Max-IoU assignment (RetinaNet), as mmdetection's ``MaxIoUAssigner`` with the RetinaGFL settings.

For one image, with ``IoU[g, a]`` between GT ``g`` and anchor ``a``, every anchor starts ignored (-1); then

1. best IoU over GTs ``< neg_iou_thr`` -> negative (0);
2. best IoU ``>= pos_iou_thr`` -> positive for its best GT (first on ties);
3. low-quality matches (``match_low_quality``): for each GT in order whose best IoU over anchors is
   ``>= min_pos_iou``, every anchor that ties that best IoU becomes positive for it (a later GT
   overrides an earlier one; with ``min_pos_iou = 0`` a GT that overlaps no anchor at all claims every
   anchor of IoU 0, as in mmdetection);
4. what is left (best IoU in ``[neg_iou_thr, pos_iou_thr)``) stays ignored.

Without GTs every anchor is negative.
"""

from __future__ import annotations

import torch
from torch import Tensor

from locdistill.models.assigners.atss import AssignResult
from locdistill.ops.box_ops import bbox_overlaps


def max_iou_assign(
    anchors: Tensor,
    gt_boxes: Tensor,
    gt_labels: Tensor,
    pos_iou_thr: float = 0.5,
    neg_iou_thr: float = 0.4,
    min_pos_iou: float = 0.0,
    match_low_quality: bool = True,
) -> AssignResult:
    """Assign the anchors of one image.

    Args:
        anchors: ``[A, 4]`` pixels; gt_boxes: ``[G, 4]`` pixels; gt_labels: ``[G]``.

    Returns:
        :class:`~locdistill.models.assigners.atss.AssignResult` with ``gt_inds`` (0 negative, ``k >= 1`` the
        1-based GT, -1 ignored), ``max_overlaps`` (every anchor's best IoU over the GTs, 0 without GTs),
        ``labels`` (the GT label at positives, -1 elsewhere), ``overlaps`` ``[A, G]`` and
        ``iou_thr_per_gt`` = ``pos_iou_thr`` for every GT (MaxIoU has no per-GT threshold; the
        batch assignment replaces it by the ATSS-style threshold,
        :func:`locdistill.models.assigners.atss_threshold.atss_threshold`).
    """
    num_anchors, num_gt = anchors.shape[0], gt_boxes.shape[0]
    device = anchors.device
    overlaps = bbox_overlaps(gt_boxes, anchors).t()  # [A, G]; gt first, as mmdetection
    if num_gt == 0 or num_anchors == 0:
        fill = 0 if num_gt == 0 else -1
        return AssignResult(
            gt_inds=torch.full((num_anchors,), fill, dtype=torch.long, device=device),
            max_overlaps=anchors.new_zeros(num_anchors),
            labels=torch.full((num_anchors,), -1, dtype=torch.long, device=device),
            iou_thr_per_gt=anchors.new_full((num_gt,), pos_iou_thr),
            overlaps=overlaps,
        )
    max_overlaps, argmax = overlaps.max(dim=1)
    gt_inds = torch.full((num_anchors,), -1, dtype=torch.long, device=device)
    gt_inds = torch.where((max_overlaps >= 0) & (max_overlaps < neg_iou_thr), 0, gt_inds)
    gt_inds = torch.where(max_overlaps >= pos_iou_thr, argmax + 1, gt_inds)
    if match_low_quality:
        gt_max = overlaps.max(dim=0).values  # [G]
        ties = (overlaps == gt_max[None, :]) & (gt_max >= min_pos_iou)[None, :]  # [A, G]
        # the last GT (in order) whose best IoU this anchor ties wins, as mmdetection's sequential loop
        order = torch.arange(1, num_gt + 1, device=device)
        last = (ties.long() * order[None, :]).max(dim=1).values
        gt_inds = torch.where(last > 0, last, gt_inds)
    pos = gt_inds > 0
    labels = torch.where(pos, gt_labels[(gt_inds - 1).clamp(min=0)].long(), -1)
    return AssignResult(gt_inds, max_overlaps, labels, anchors.new_full((num_gt,), pos_iou_thr), overlaps)
