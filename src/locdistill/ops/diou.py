"""Distance-IoU (Zheng et al., AAAI 2020): ``DIoU = overlap - (rho^2 / c^2) ** beta``.

``rho`` is the distance between the two box centres and ``c`` the diagonal of the smallest box enclosing
both (``c^2 + 1e-7`` in the denominator, as the LD reference). The one implementation of the centre
penalty, used by the VLR of :mod:`locdistill.distill.regions` (``beta = 1``) and by Score-voting
Cluster-DIoU-NMS (:mod:`locdistill.models.cluster_nms`, ``beta = 0.8``).

Boxes are ``(x1, y1, x2, y2)``; every function works elementwise on ``[..., 4]`` tensors that
broadcast against each other (``a[:, None, :]`` and ``b[None, :, :]`` give all pairs).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from locdistill.ops.box_ops import bbox_overlaps

DIOU_EPS = 1e-7
"""Guard added to the squared enclosing diagonal ``c^2``."""


def centre_distance_penalty(boxes1: Tensor, boxes2: Tensor, eps: float = DIOU_EPS) -> Tensor:
    """``rho^2 / (c^2 + eps)``: squared centre distance over the squared diagonal of the smallest
    enclosing box. ``[..., 4]`` x ``[..., 4]`` (broadcast) -> ``[...]``."""
    ax1, ay1, ax2, ay2 = boxes1.unbind(-1)
    bx1, by1, bx2, by2 = boxes2.unbind(-1)
    cw = torch.maximum(ax2, bx2) - torch.minimum(ax1, bx1)
    ch = torch.maximum(ay2, by2) - torch.minimum(ay1, by1)
    dx = (bx1 + bx2) / 2 - (ax1 + ax2) / 2  # centre offset
    dy = (by1 + by2) / 2 - (ay1 + ay2) / 2
    return (dx * dx + dy * dy) / (cw * cw + ch * ch + eps)


def iou_and_diou(boxes1: Tensor, boxes2: Tensor, beta: float = 1.0) -> tuple[Tensor, Tensor]:
    """IoU and ``DIoU = IoU - penalty ** beta`` of ``[..., 4]`` x ``[..., 4]`` (broadcast) -> ``[...]``
    twice. The union is clamped to the smallest normal float (no change for boxes of positive area).

    Written per coordinate (``unbind``), so that broadcasting ``[N, 1, 4]`` against ``[1, M, 4]`` works on
    ``[N, 1]`` / ``[1, M]`` pieces and never slices the ``[N, M]`` products (in an ONNX graph such slices
    are gathers that cost more than the arithmetic)."""
    ax1, ay1, ax2, ay2 = boxes1.unbind(-1)
    bx1, by1, bx2, by2 = boxes2.unbind(-1)
    iw = (torch.minimum(ax2, bx2) - torch.maximum(ax1, bx1)).clamp(min=0)
    ih = (torch.minimum(ay2, by2) - torch.maximum(ay1, by1)).clamp(min=0)
    inter = iw * ih
    union = (ax2 - ax1) * (ay2 - ay1) + (bx2 - bx1) * (by2 - by1) - inter
    iou = inter / union.clamp(min=torch.finfo(inter.dtype).tiny)
    penalty = centre_distance_penalty(boxes1, boxes2)
    return iou, iou - (penalty if beta == 1.0 else penalty.pow(beta))


def diou_matrix(boxes1: Tensor, boxes2: Tensor, beta: float = 0.8) -> Tensor:
    """Dense DIoU with penalty exponent ``beta``: ``[N, 4] x [M, 4] -> [N, M]``. O(N*M) memory: for
    small inputs and tests."""
    return iou_and_diou(boxes1[:, None, :], boxes2[None, :, :], beta)[1]


def anchor_gt_diou(anchors: Tensor, gts: Tensor, mode: Literal["official", "true"] = "official") -> Tensor:
    """``[A, 4]`` x ``[G, 4]`` -> ``[A, G]`` DIoU (``beta = 1``) between anchors and GTs, for the VLR.

    ``true``: IoU minus the centre penalty. ``official``: the LD reference code's variant, the overlap
    divided by the *anchor* area (IoF) minus the centre penalty. The overlap is mmdetection's
    :func:`~locdistill.ops.box_ops.bbox_overlaps` (union clamped to 1e-6).
    """
    overlap_term = bbox_overlaps(anchors, gts, mode="iof" if mode == "official" else "iou")
    return overlap_term - centre_distance_penalty(anchors[:, None, :], gts[None, :, :])
