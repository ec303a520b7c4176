"""Parity of the family objectives with mmdetection 3.3.0 (tests/refs/mmdet_families/losses.pt):
targets, focal classification loss and its normaliser, centerness targets and loss, and the GFL-ized
box loss (mmdetection's Integral, distance2bbox and GIoULoss composed as the LD code does)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from locdistill.models.assigners.assignment import Assignment, build_assignment
from locdistill.models.assigners.batch import build_max_iou_assignment, build_point_assignment
from locdistill.models.assigners.fcos_targets import DEFAULT_REGRESS_RANGES
from locdistill.models.family_postprocess import family_postprocess
from locdistill.models.heads.family_outputs import FamilyOutputs
from locdistill.models.integral import Integral
from locdistill.models.losses.centerness_gfl import centerness_gfl_loss
from locdistill.models.losses.common import flatten_priors, positive_centerness
from locdistill.models.losses.gfl import positive_samples
from locdistill.models.losses.retina_gfl import retina_gfl_loss
from locdistill.models.postprocess import PostProcessConfig
from locdistill.models.priors.anchors import AnchorGrid
from locdistill.models.priors.multi_anchors import MultiAnchorGrid
from locdistill.models.priors.points import multi_level_points
from locdistill.ops.box_ops import box_centers
from locdistill.structures import ImageMeta, Targets

REFS = Path(__file__).resolve().parents[1] / "refs" / "mmdet_families"
STRIDES = [8, 16, 32, 64, 128]
RTOL, ATOL = 1e-5, 1e-6


@pytest.fixture(scope="module")
def ref() -> dict:
    path = REFS / "losses.pt"
    if not path.is_file():
        pytest.skip(f"mmdetection reference {path} not available")
    return torch.load(path, weights_only=True)


def metas_of(ref: dict) -> list[ImageMeta]:
    return [
        ImageMeta(i, "", m["img_shape"], m["img_shape"], m["pad_shape"], m["scale_factor"])
        for i, m in enumerate(ref["metas"])
    ]


def inputs(ref: dict, family: str) -> tuple[FamilyOutputs, Assignment, list[tuple[int, int]]]:
    case = ref["families"][family]
    sizes = [(int(h), int(w)) for h, w in ref["featmap_sizes"]]
    outputs = FamilyOutputs(
        [c.float() for c in case["cls_scores"]],
        [r.float() for r in case["bbox_preds"]],
        [c.float() for c in case.get("centernesses", [])],
    )
    targets = [Targets(b, l) for b, l in zip(ref["gt_bboxes"], ref["gt_labels"])]
    metas = metas_of(ref)
    c = ref["num_classes"]
    if family == "retina":
        assignment: Assignment = build_max_iou_assignment(MultiAnchorGrid(sizes, STRIDES), targets, metas, c)
    elif family == "atss":
        grid = AnchorGrid(sizes, STRIDES, 8.0)
        assignment = build_assignment(grid.per_level, sizes, STRIDES, targets, metas, c, 9, grid=grid)
    else:
        points = multi_level_points(sizes, STRIDES)
        assignment = build_point_assignment(points, STRIDES, targets, c, DEFAULT_REGRESS_RANGES, True, 1.5)
    return outputs, assignment, sizes


def per_level(x: torch.Tensor, counts: list[int]) -> list[torch.Tensor]:
    """``[B, A]`` -> per level ``[B, n_l]``."""
    return list(x.split(counts, dim=1))


@pytest.mark.parametrize("family", ["retina", "atss", "fcos"])
def test_targets(ref: dict, family: str) -> None:
    _, a, _ = inputs(ref, family)
    case = ref["families"][family]
    for lvl, (ours, theirs) in enumerate(zip(per_level(a.labels, a.num_level_anchors), case["labels"])):
        expected = theirs.long().reshape(ours.shape)  # fcos: images concatenated per level
        assert torch.equal(ours, expected), f"{family} labels differ at level {lvl}"
    if family != "fcos":
        for ours, theirs in zip(per_level(a.label_weights, a.num_level_anchors), case["label_weights"]):
            torch.testing.assert_close(ours, theirs.float(), rtol=0, atol=0)
        assert float(a.num_total_pos) == case["avg_factor"]


@pytest.mark.parametrize("family", ["retina", "atss", "fcos"])
def test_losses(ref: dict, family: str) -> None:
    outputs, a, _ = inputs(ref, family)
    case = ref["families"][family]
    mm = case["mmdet_losses"]
    integral = Integral(16)
    c = ref["num_classes"]
    giou_sums = torch.stack([g.sum() for g in case["giou_per_positive"]])
    if family == "retina":
        out = retina_gfl_loss(outputs, a, integral, c)
        torch.testing.assert_close(out["loss_cls"], mm["loss_cls"], rtol=RTOL, atol=ATOL)
        expected_bbox = 2.0 * giou_sums / case["avg_factor"]
        torch.testing.assert_close(out["loss_bbox"], expected_bbox, rtol=RTOL, atol=ATOL)
        return
    out = centerness_gfl_loss(outputs, a, integral, c, plain_count=family == "fcos", giou_weight=case["giou"])
    torch.testing.assert_close(out["bbox_numerator"], case["giou"] * giou_sums, rtol=RTOL, atol=ATOL)
    if family == "atss":  # mmdetection returns per-level values
        torch.testing.assert_close(out["loss_cls"], mm["loss_cls"], rtol=RTOL, atol=ATOL)
        torch.testing.assert_close(out["loss_centerness"], mm["loss_centerness"].abs(), rtol=RTOL, atol=ATOL)
    else:  # one value over all levels
        torch.testing.assert_close(out["loss_cls"].sum(), mm["loss_cls"], rtol=RTOL, atol=ATOL)
        torch.testing.assert_close(out["loss_centerness"].sum(), mm["loss_centerness"], rtol=RTOL, atol=ATOL)
        # mmdetection's FCOS box loss (IoU-family on its own 4-channel outputs) is not this head's; the
        # centerness-weighted normaliser is: sum of the targets (>= 1e-6 there, >= 1e-12 -> 1 here)
    ctr_sum = sum(float(t.sum()) for t in case["centerness_targets"])
    assert float(out["bbox_divisor"]) == pytest.approx(ctr_sum, rel=1e-6)


@pytest.mark.parametrize("family", ["atss", "fcos"])
def test_centerness_targets(ref: dict, family: str) -> None:
    outputs, a, _ = inputs(ref, family)
    c = ref["num_classes"]
    cls = flatten_priors(outputs.cls_scores, c)
    pos = positive_samples(cls, flatten_priors(outputs.bbox_preds, 68), a, Integral(16))
    ours = positive_centerness(a, pos)
    case = ref["families"][family]
    for lvl, theirs in enumerate(case["centerness_targets"]):
        mine = ours[pos.level == lvl]  # both order a level's positives image by image
        torch.testing.assert_close(mine, theirs, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("family", ["retina", "atss", "fcos"])
@pytest.mark.parametrize("variant", ["default", "small_nms_pre_rescale"])
def test_predict_mmdet3_order(ref: dict, family: str, variant: str) -> None:
    path = REFS / "predict.pt"
    if not path.is_file():
        pytest.skip(f"mmdetection reference {path} not available")
    expected = torch.load(path, weights_only=True)[family][variant]
    outputs, _, sizes = inputs(ref, family)
    if family == "retina":
        centres = [box_centers(a) for a in MultiAnchorGrid(sizes, STRIDES).per_level]
    elif family == "atss":
        centres = [box_centers(a) for a in AnchorGrid(sizes, STRIDES, 8.0).per_level]
    else:
        centres = multi_level_points(sizes, STRIDES)
    metas = metas_of(ref)
    cfg = PostProcessConfig(0.05, expected["nms_pre"], "nms", 0.6, expected["max_per_img"])
    dets = family_postprocess(
        outputs, centres, STRIDES, metas, Integral(16), ref["num_classes"], cfg, expected["rescale"], "mmdet3"
    )
    for d, e in zip(dets, expected["results"]):
        assert torch.equal(d.labels, e["labels"].long())
        torch.testing.assert_close(d.scores, e["scores"], rtol=1e-6, atol=1e-7)
        torch.testing.assert_close(d.boxes, e["bboxes"], rtol=1e-5, atol=1e-4)
