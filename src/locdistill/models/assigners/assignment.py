"""The assignment of a batch's anchors to its ground truth: ATSS on each image's valid anchors, mapped
back to all anchors. "Targets" in locdistill always means ground truth
(:class:`~locdistill.structures.Targets`); what the head learns at each anchor is this :class:`Assignment`."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from locdistill.models.assigners.atss import AssignResult, atss_assign
from locdistill.models.priors.anchors import AnchorGrid
from locdistill.structures import ImageMeta, Targets


@dataclass
class Assignment:
    """Per-anchor assignment of a batch. ``A`` = anchors of all levels (batch feature-map size).

    Attributes:
        anchors: ``[A, 4]`` pixels, levels concatenated (the same for every image of the batch).
        anchor_strides: ``[A]`` stride of each anchor's level.
        level_index: ``[A]`` int64 level of each anchor.
        num_level_anchors: anchors per level.
        valid: ``[B, A]`` bool, anchor inside the image's own padded area.
        labels: ``[B, A]`` int64, ``num_classes`` = background.
        label_weights: ``[B, A]`` float, 1 at valid positives/negatives, 0 at invalid or ignored anchors.
        gt_boxes: ``[B, A, 4]`` the assigned GT box in pixels (0 elsewhere).
        gt_index: ``[B, A]`` int64 0-based index of the assigned GT in that image, -1 elsewhere.
        num_total_pos: scalar tensor, ``sum_images max(#pos, 1)`` on this rank (not yet averaged).
        per_image: per image, the ATSS :class:`AssignResult` over that image's *valid* anchors.
    """

    anchors: Tensor
    anchor_strides: Tensor
    level_index: Tensor
    num_level_anchors: list[int]
    valid: Tensor
    labels: Tensor
    label_weights: Tensor
    gt_boxes: Tensor
    gt_index: Tensor
    num_total_pos: Tensor
    per_image: list[AssignResult]

    @property
    def pos_mask(self) -> Tensor:
        """``[B, A]`` bool positives."""
        return self.gt_index >= 0


def build_assignment(
    anchors_per_level: list[Tensor],
    featmap_sizes: list[tuple[int, int]],
    strides: list[int],
    targets: list[Targets],
    metas: list[ImageMeta],
    num_classes: int,
    topk: int = 9,
    grid: AnchorGrid | None = None,
) -> Assignment:
    """Assign every image's anchors with ATSS.

    Invalid anchors (outside the image's own ``pad_shape``) are removed before the assignment, so the
    per-level top-k runs over valid anchors only, and filled back as background with weight 0.
    ``grid``: the cached :class:`AnchorGrid` of these anchors (the detector keeps one per feature-map
    size); without it one is built from ``anchors_per_level``. The results are the same either way.
    """
    if grid is None:
        grid = AnchorGrid(featmap_sizes, strides, per_level=anchors_per_level)
    anchors = grid.anchors
    device = anchors.device
    num_anchors = anchors.shape[0]

    valid_all, labels_all, weights_all, boxes_all, gt_index_all, assigns = [], [], [], [], [], []
    num_total_pos = torch.zeros((), device=device)
    for tgt, meta in zip(targets, metas):
        valid = grid.valid(meta.pad_shape)
        gt_boxes = tgt.boxes.to(device=device, dtype=torch.float32)
        gt_labels = tgt.labels.to(device)
        result = atss_assign(
            valid.anchors, valid.num_level_anchors, gt_boxes, gt_labels, topk, tgt.ignore_boxes
        )
        # Scatter the per-valid-anchor results into all anchors: dense writes, no boolean-mask indexing.
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
