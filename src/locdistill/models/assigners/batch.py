"""Batch assignments of the non-GFL families: MaxIoU over multi-anchor grids (RetinaGFL) and FCOS
points. Both give a :class:`~locdistill.models.assigners.assignment.Assignment` (ATSS-GFL uses
:func:`~locdistill.models.assigners.assignment.build_assignment` as GFL does). The multi-anchor grid is
:class:`~locdistill.models.priors.multi_anchors.MultiAnchorGrid`.

Anchors outside an image's own padded area are removed before assignment and filled back as background
with label weight 0 (mmdetection's ``valid_flags`` / ``unmap``); FCOS uses every point.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from locdistill.models.assigners.assignment import Assignment
from locdistill.models.assigners.atss_threshold import atss_threshold
from locdistill.models.assigners.fcos_targets import fcos_targets, level_ranges_and_radii
from locdistill.models.assigners.max_iou import max_iou_assign
from locdistill.models.priors.multi_anchors import MultiAnchorGrid
from locdistill.structures import ImageMeta, Targets


def build_max_iou_assignment(
    grid: MultiAnchorGrid,
    targets: list[Targets],
    metas: list[ImageMeta],
    num_classes: int,
    pos_iou_thr: float = 0.5,
    neg_iou_thr: float = 0.4,
    min_pos_iou: float = 0.0,
    vlr_topk: int = 9,
) -> Assignment:
    """MaxIoU on every image's valid anchors. Label weight 1 at positives and negatives, 0 at ignored
    (IoU in ``[neg, pos)``) and invalid anchors; ``num_total_pos = sum_images max(#pos, 1)``. Each
    image's ``per_image`` result carries the ATSS-style threshold of every GT (``vlr_topk`` nearest
    anchors per level) in ``iou_thr_per_gt``: RetinaGFL's VLR is defined by it."""
    anchors = grid.anchors
    device = anchors.device
    num_anchors = anchors.shape[0]
    valid_all, labels_all, weights_all, boxes_all, gt_index_all, assigns = [], [], [], [], [], []
    num_total_pos = torch.zeros((), device=device)
    for tgt, meta in zip(targets, metas):
        valid = grid.valid(meta.pad_shape)
        gt_boxes = tgt.boxes.to(device=device, dtype=torch.float32)
        gt_labels = tgt.labels.to(device)
        result = max_iou_assign(valid.anchors, gt_boxes, gt_labels, pos_iou_thr, neg_iou_thr, min_pos_iou)
        if gt_boxes.shape[0] > 0 and valid.anchors.shape[0] > 0:
            result.iou_thr_per_gt = atss_threshold(
                valid.anchors, valid.num_level_anchors, gt_boxes, result.overlaps, vlr_topk
            )
        pos = result.gt_inds > 0
        assigned = torch.where(pos, result.gt_inds - 1, -1)
        labels = torch.full((num_anchors,), num_classes, dtype=torch.long, device=device)
        weights = torch.zeros(num_anchors, device=device)
        boxes = torch.zeros((num_anchors, 4), device=device)
        gt_index = torch.full((num_anchors,), -1, dtype=torch.long, device=device)
        weights[valid.positions] = (result.gt_inds >= 0).to(weights.dtype)
        gt_index[valid.positions] = assigned
        if gt_boxes.shape[0] > 0:
            safe = assigned.clamp(min=0)
            labels[valid.positions] = torch.where(pos, gt_labels[safe].long(), num_classes)
            boxes[valid.positions] = torch.where(pos[:, None], gt_boxes[safe], 0.0)
        num_total_pos = num_total_pos + pos.sum().clamp(min=1)
        valid_all.append(valid.flags)
        labels_all.append(labels)
        weights_all.append(weights)
        boxes_all.append(boxes)
        gt_index_all.append(gt_index)
        assigns.append(result)
    return Assignment(
        anchors=anchors,
        anchor_strides=grid.anchor_strides,
        level_index=grid.level_index,
        num_level_anchors=list(grid.num_level_anchors),
        valid=torch.stack(valid_all),
        labels=torch.stack(labels_all),
        label_weights=torch.stack(weights_all),
        gt_boxes=torch.stack(boxes_all),
        gt_index=torch.stack(gt_index_all),
        num_total_pos=num_total_pos,
        per_image=assigns,
    )


@dataclass
class PointAssignment(Assignment):
    """An :class:`~locdistill.models.assigners.assignment.Assignment` of FCOS points. ``anchors`` holds each
    point ``(x, y)`` as the zero-size box ``(x, y, x, y)`` (so its centre is the point);
    ``num_total_pos`` is the plain positive count; ``per_image`` is empty.

    Attributes:
        distances: ``[B, A, 4]`` ``(l, t, r, b)`` pixels to the assigned GT (0 elsewhere).
        inside_gt: ``[B, A]`` bool, strictly inside some GT box (FCOS-LD's second region, minus the
            positives).
    """

    distances: Tensor
    inside_gt: Tensor


def build_point_assignment(
    points_per_level: list[Tensor],
    strides: list[int],
    targets: list[Targets],
    num_classes: int,
    regress_ranges: tuple[tuple[float, float], ...] | list[list[float]],
    center_sampling: bool = True,
    radius: float = 1.5,
) -> PointAssignment:
    """FCOS targets of every image (:func:`~locdistill.models.assigners.fcos_targets.fcos_targets`)."""
    points = torch.cat(points_per_level)
    device = points.device
    counts = [p.shape[0] for p in points_per_level]
    ranges, radii = level_ranges_and_radii(counts, strides, regress_ranges, radius, device)
    level_index = torch.cat(
        [torch.full((n,), i, dtype=torch.long, device=device) for i, n in enumerate(counts)]
    )
    point_strides = torch.tensor(strides, dtype=torch.float32, device=device)[level_index]
    labels, gt_index, boxes, dists, inside = [], [], [], [], []
    for tgt in targets:
        gt_boxes = tgt.boxes.to(device=device, dtype=torch.float32)
        t = fcos_targets(points, ranges, radii, gt_boxes, tgt.labels.to(device), num_classes, center_sampling)
        pos = t.gt_index >= 0
        labels.append(t.labels)
        gt_index.append(t.gt_index)
        dists.append(torch.where(pos[:, None], t.distances, 0.0))
        if gt_boxes.shape[0] > 0:
            boxes.append(torch.where(pos[:, None], gt_boxes[t.gt_index.clamp(min=0)], 0.0))
        else:
            boxes.append(points.new_zeros((points.shape[0], 4)))
        inside.append(t.inside_gt)
    gt_index_t = torch.stack(gt_index)
    return PointAssignment(
        anchors=torch.cat([points, points], dim=1),
        anchor_strides=point_strides,
        level_index=level_index,
        num_level_anchors=counts,
        valid=torch.ones(gt_index_t.shape, dtype=torch.bool, device=device),
        labels=torch.stack(labels),
        label_weights=torch.ones(gt_index_t.shape, device=device),
        gt_boxes=torch.stack(boxes),
        gt_index=gt_index_t,
        num_total_pos=(gt_index_t >= 0).sum().to(torch.float32),
        per_image=[],
        distances=torch.stack(dists),
        inside_gt=torch.stack(inside),
    )
