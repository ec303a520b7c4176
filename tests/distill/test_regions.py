"""The Valuable Localization Region: membership band and weights on hand cases."""

from __future__ import annotations

import pytest
import torch

from locdistill.distill.regions import vlr_region
from locdistill.models.assigners.assignment import build_assignment
from locdistill.models.priors.anchors import multi_level_anchors
from locdistill.ops.diou import anchor_gt_diou
from locdistill.structures import ImageMeta, Targets


def test_vlr_membership_and_weights_on_hand_case() -> None:
    # one 64x64 GT; anchors of one level (stride 8, side 64) on a 128x128 image
    sizes, strides = [(16, 16)], [8]
    anchors = multi_level_anchors(sizes, strides)
    gt = Targets(torch.tensor([[32.0, 32.0, 96.0, 96.0]]), torch.tensor([0]))
    meta = ImageMeta(0, "x", (128, 128), (128, 128), (128, 128))
    t = build_assignment(anchors, sizes, strides, [gt], [meta], num_classes=1)
    alpha = t.per_image[0].iou_thr_per_gt[0]
    for mode in ("official", "true"):
        region = vlr_region(t, [gt], 0.25, mode)[0]
        diou = anchor_gt_diou(anchors[0], gt.boxes, mode)[:, 0]
        iou = t.per_image[0].overlaps[:, 0]
        # membership by a direct per-anchor check
        for a in range(anchors[0].shape[0]):
            inside = bool(0.25 * alpha <= diou[a] < alpha)
            assert (region[a] > 0) == (inside and iou[a] > 0), (mode, a)
            if inside:
                assert float(region[a]) == pytest.approx(float(iou[a]))
        assert (region > 0).sum() > 0
    # the official DIoU uses the anchor area: an anchor inside the GT has overlap term 1
    inner = torch.tensor([[40.0, 40.0, 56.0, 56.0]])
    d = anchor_gt_diou(inner, gt.boxes, "official")
    penalty = ((48 - 64) ** 2 + (48 - 64) ** 2) / (64**2 + 64**2 + 1e-7)
    assert float(d) == pytest.approx(1 - penalty, abs=1e-6)


def test_vlr_anchor_in_two_regions_goes_to_highest_iou() -> None:
    sizes, strides = [(16, 16)], [8]
    anchors = multi_level_anchors(sizes, strides)
    gt = Targets(torch.tensor([[20.0, 20.0, 80.0, 80.0], [30.0, 30.0, 100.0, 90.0]]), torch.tensor([0, 0]))
    meta = ImageMeta(0, "x", (128, 128), (128, 128), (128, 128))
    t = build_assignment(anchors, sizes, strides, [gt], [meta], num_classes=1)
    region = vlr_region(t, [gt], 0.25, "true")[0]
    alpha = t.per_image[0].iou_thr_per_gt
    diou = anchor_gt_diou(anchors[0], gt.boxes, "true")
    iou = t.per_image[0].overlaps
    member = (diou >= 0.25 * alpha) & (diou < alpha)
    both = member.all(dim=1).nonzero().flatten()
    assert both.numel() > 0
    for a in both.tolist():
        assert float(region[a]) == pytest.approx(float(iou[a].max()))
