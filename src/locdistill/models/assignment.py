"""The assignment of a batch's anchors to its ground truth: ATSS on each image's valid anchors, mapped
back to all anchors. "Targets" in locdistill always means ground truth
(:class:`~locdistill.structures.Targets`); what the head learns at each anchor is this :class:`Assignment`."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from locdistill.models.assigner import AssignResult, atss_assign
from locdistill.models.priors import valid_flags
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
) -> Assignment:
    """Assign every image's anchors with ATSS.

    Invalid anchors (outside the image's own ``pad_shape``) are removed before the assignment, so the
    per-level top-k runs over valid anchors only, and filled back as background with weight 0.
    """
    device = anchors_per_level[0].device
    anchors = torch.cat(anchors_per_level)
    num_level_anchors = [a.shape[0] for a in anchors_per_level]
    level_index = torch.cat(
        [torch.full((n,), i, dtype=torch.long, device=device) for i, n in enumerate(num_level_anchors)]
    )
    anchor_strides = torch.tensor(strides, dtype=torch.float32, device=device)[level_index]
    num_anchors = anchors.shape[0]

    valid_all, labels_all, weights_all, boxes_all, gt_index_all, assigns = [], [], [], [], [], []
    num_total_pos = torch.zeros((), device=device)
    for tgt, meta in zip(targets, metas):
        valid = valid_flags(featmap_sizes, strides, meta.pad_shape, device)
        valid_idx = valid.nonzero().squeeze(1)
        per_level_valid = [int(v.sum()) for v in valid.split(num_level_anchors)]
        gt_boxes = tgt.boxes.to(device=device, dtype=torch.float32)
        gt_labels = tgt.labels.to(device)
        result = atss_assign(anchors[valid_idx], per_level_valid, gt_boxes, gt_labels, topk, tgt.ignore_boxes)
        pos = result.gt_inds > 0
        neg = result.gt_inds == 0
        pos_full = valid_idx[pos]
        assigned = result.gt_inds[pos] - 1

        labels = torch.full((num_anchors,), num_classes, dtype=torch.long, device=device)
        labels[pos_full] = gt_labels[assigned].long()
        weights = torch.zeros(num_anchors, device=device)
        weights[valid_idx[pos | neg]] = 1.0
        boxes = torch.zeros((num_anchors, 4), device=device)
        boxes[pos_full] = gt_boxes[assigned]
        gt_index = torch.full((num_anchors,), -1, dtype=torch.long, device=device)
        gt_index[pos_full] = assigned

        num_total_pos = num_total_pos + pos.sum().clamp(min=1)
        valid_all.append(valid)
        labels_all.append(labels)
        weights_all.append(weights)
        boxes_all.append(boxes)
        gt_index_all.append(gt_index)
        assigns.append(result)
    return Assignment(
        anchors=anchors,
        anchor_strides=anchor_strides,
        level_index=level_index,
        num_level_anchors=num_level_anchors,
        valid=torch.stack(valid_all),
        labels=torch.stack(labels_all),
        label_weights=torch.stack(weights_all),
        gt_boxes=torch.stack(boxes_all),
        gt_index=torch.stack(gt_index_all),
        num_total_pos=num_total_pos,
        per_image=assigns,
    )
