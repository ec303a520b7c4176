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
    lo1, hi1, lo2, hi2 = boxes1[..., :2], boxes1[..., 2:], boxes2[..., :2], boxes2[..., 2:]
    enclose = torch.maximum(hi1, hi2) - torch.minimum(lo1, lo2)
    enclose = enclose * enclose
    c2 = enclose[..., 0] + enclose[..., 1] + eps
    delta = (lo2 + hi2) / 2 - (lo1 + hi1) / 2  # centre offset
    delta = delta * delta
    rho2 = delta[..., 0] + delta[..., 1]
    return rho2 / c2


def iou_and_diou(boxes1: Tensor, boxes2: Tensor, beta: float = 1.0) -> tuple[Tensor, Tensor]:
    """IoU and ``DIoU = IoU - penalty ** beta`` of ``[..., 4]`` x ``[..., 4]`` (broadcast) -> ``[...]``
    twice. The union is clamped to the smallest normal float (no change for boxes of positive area)."""
    lo1, hi1, lo2, hi2 = boxes1[..., :2], boxes1[..., 2:], boxes2[..., :2], boxes2[..., 2:]
    wh = (torch.minimum(hi1, hi2) - torch.maximum(lo1, lo2)).clamp_(min=0)
    inter = wh[..., 0] * wh[..., 1]
    size1, size2 = hi1 - lo1, hi2 - lo2
    union = size1[..., 0] * size1[..., 1] + size2[..., 0] * size2[..., 1] - inter
    iou = inter / union.clamp_(min=torch.finfo(inter.dtype).tiny)
    penalty = centre_distance_penalty(boxes1, boxes2)
    return iou, iou - (penalty if beta == 1.0 else penalty.pow_(beta))


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
