"""The one DIoU of the package: hand-computed penalty, the VLR's two variants, the NMS matrix."""

from __future__ import annotations

import math

import torch

from locdistill.ops.box_ops import bbox_overlaps
from locdistill.ops.diou import anchor_gt_diou, centre_distance_penalty, diou_matrix, iou_and_diou


def random_boxes(n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=g) * 200
    wh = torch.rand(n, 2, generator=g) * 80 + 1
    return torch.cat([xy, xy + wh], dim=1)


def test_penalty_and_diou_on_a_hand_case() -> None:
    a = torch.tensor([[0.0, 0.0, 2.0, 2.0]])
    b = torch.tensor([[1.0, 0.0, 5.0, 2.0]])
    # centres (1, 1) and (3, 1): rho^2 = 4; enclosing box [0, 0, 5, 2]: c^2 = 25 + 4
    penalty = centre_distance_penalty(a, b)
    assert math.isclose(float(penalty), 4 / (29 + 1e-7), rel_tol=1e-6)
    iou, diou = iou_and_diou(a, b, beta=0.8)
    assert math.isclose(float(iou), 2 / 10, rel_tol=1e-6)  # overlap 1x2, union 4 + 8 - 2
    assert math.isclose(float(diou), 0.2 - (4 / 29) ** 0.8, abs_tol=1e-7)
    # broadcasting: the dense matrix is the elementwise function on all pairs
    boxes = random_boxes(7, 0)
    dense = diou_matrix(boxes, boxes[:3], beta=0.8)
    assert dense.shape == (7, 3)
    assert torch.equal(dense[4, 2], iou_and_diou(boxes[4], boxes[2], 0.8)[1])
    assert torch.allclose(torch.diagonal(diou_matrix(boxes, boxes)), torch.ones(7))


def test_vlr_variants_true_and_official() -> None:
    anchors, gts = random_boxes(50, 1), random_boxes(4, 2)
    penalty = centre_distance_penalty(anchors[:, None, :], gts[None, :, :])
    true = anchor_gt_diou(anchors, gts, "true")
    # for boxes of positive area the VLR's "true" DIoU is the NMS one with beta = 1, bit for bit
    assert torch.equal(true, diou_matrix(anchors, gts, beta=1.0))
    assert torch.equal(true, bbox_overlaps(anchors, gts) - penalty)
    official = anchor_gt_diou(anchors, gts, "official")  # overlap / anchor area (IoF)
    assert torch.equal(official, bbox_overlaps(anchors, gts, mode="iof") - penalty)
    assert bool((official >= true).all())  # IoF >= IoU
