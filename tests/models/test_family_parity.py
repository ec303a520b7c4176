"""Parity of the RetinaGFL / ATSS-GFL / FCOS-GFL pieces that mmdetection 3.3.0 implements: priors,
MaxIoU and FCOS assignment, classification / centerness losses and their normalisers, the GFL-ized
box loss, FPN extra levels and mmdetection's post-processing order.

The stored values (tests/refs/mmdet_families, made by tools/make_family_refs.py, see its README) come
from running mmdetection. Assignment and losses are compared at tight tolerances; activations
(FPN) at a tolerance that covers float32 accumulation order (mmdetection's own FPN outputs move by
~7e-4 between AVX2 and AVX-512 kernels).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from locdistill.models.assigners.fcos_targets import (
    DEFAULT_REGRESS_RANGES,
    fcos_targets,
    level_ranges_and_radii,
)
from locdistill.models.assigners.max_iou import max_iou_assign
from locdistill.models.fpn import FPN
from locdistill.models.priors.anchors import multi_level_anchors, valid_flags
from locdistill.models.priors.multi_anchors import (
    base_anchors,
    multi_level_grid_anchors,
    multi_level_valid_flags,
)
from locdistill.models.priors.points import multi_level_points

REFS = Path(__file__).resolve().parents[1] / "refs" / "mmdet_families"
STRIDES = [8, 16, 32, 64, 128]


def load(name: str) -> dict:
    path = REFS / f"{name}.pt"
    if not path.is_file():
        pytest.skip(f"mmdetection reference {path} not available")
    return torch.load(path, weights_only=True)


def sizes_of(ref: dict) -> list[tuple[int, int]]:
    return [(int(h), int(w)) for h, w in ref["featmap_sizes"]]


# ------------------------------------------------------------------------------------------- priors
def test_retina_anchors_and_valid_flags() -> None:
    ref = load("priors")
    sizes = sizes_of(ref)
    for s, base in zip(STRIDES, ref["retina_base_anchors"]):
        torch.testing.assert_close(base_anchors(s), base, rtol=0, atol=1e-5)
    ours = multi_level_grid_anchors(sizes, STRIDES)
    for a, b in zip(ours, ref["retina_anchors"]):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-4)
    pad = tuple(ref["pad_shape"])
    flags = multi_level_valid_flags(sizes, STRIDES, pad, 9)  # type: ignore[arg-type]
    assert torch.equal(flags, torch.cat(ref["retina_valid_flags"]))


def test_atss_anchors_and_points() -> None:
    ref = load("priors")
    sizes = sizes_of(ref)
    for a, b in zip(multi_level_anchors(sizes, STRIDES), ref["atss_anchors"]):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    one = multi_level_grid_anchors(sizes, STRIDES, 8.0, 1, [1.0])
    for a, b in zip(one, ref["atss_anchors"]):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    pad = tuple(ref["pad_shape"])
    assert torch.equal(valid_flags(sizes, STRIDES, pad), torch.cat(ref["atss_valid_flags"]))  # type: ignore[arg-type]
    for p, q in zip(multi_level_points(sizes, STRIDES), ref["fcos_points"]):
        torch.testing.assert_close(p, q, rtol=0, atol=0)


# --------------------------------------------------------------------------------------- assignment
@pytest.fixture(scope="module")
def assign_ref() -> dict:
    return load("assign")


@pytest.mark.parametrize("case", ["main", "zero_gt", "single_gt", "edge"])
def test_max_iou_assigner(assign_ref: dict, case: str) -> None:
    c = assign_ref["cases"][case]
    anchors = torch.cat(multi_level_grid_anchors(sizes_of(assign_ref), STRIDES))
    r = max_iou_assign(anchors, c["gt_bboxes"], c["gt_labels"])
    assert torch.equal(r.gt_inds, c["max_iou_gt_inds"].long())
    assert torch.equal(r.labels, c["max_iou_labels"].long())
    torch.testing.assert_close(r.max_overlaps, c["max_iou_max_overlaps"], rtol=0, atol=0)


def test_max_iou_has_every_kind(assign_ref: dict) -> None:
    """The main case exercises positives, negatives, the ignored band and a low-quality match."""
    c = assign_ref["cases"]["main"]
    inds = c["max_iou_gt_inds"]
    assert (inds > 0).any() and (inds == 0).any() and (inds == -1).any()
    tiny = 3  # the 4.7 x 2.9 px GT reaches IoU 0.5 with no anchor: only its best anchors take it
    assert int((inds == tiny).sum()) >= 1
    assert float(c["max_iou_max_overlaps"][inds == tiny].max()) < 0.5


@pytest.mark.parametrize("case", ["main", "zero_gt", "single_gt", "edge"])
def test_fcos_targets(assign_ref: dict, case: str) -> None:
    c = assign_ref["cases"][case]
    points = multi_level_points(sizes_of(assign_ref), STRIDES)
    counts = [p.shape[0] for p in points]
    ranges, radii = level_ranges_and_radii(counts, STRIDES, DEFAULT_REGRESS_RANGES, 1.5)
    t = fcos_targets(torch.cat(points), ranges, radii, c["gt_bboxes"], c["gt_labels"], 4)
    assert torch.equal(t.labels, c["fcos_labels"].long())
    pos = t.gt_index >= 0
    torch.testing.assert_close(t.distances[pos], c["fcos_bbox_targets"][pos], rtol=0, atol=0)


# ---------------------------------------------------------------------------------------------- FPN
@pytest.mark.parametrize(
    ("variant", "source", "relu"),
    [
        ("retina_on_input", "on_input", False),
        ("atss_on_output", "on_output", False),
        ("fcos_on_output_relu", "on_output", True),
    ],
)
def test_fpn_extra_levels(variant: str, source: str, relu: bool) -> None:
    """mmdetection's FPN with the family's extra-level flags, same weights: same P3-P7. Tolerance: the
    maps are sums of up to 9*32 float32 products per conv over five stacked convs; different kernels
    (mmdetection's own outputs move ~7e-4 between AVX2 and AVX-512 machines) reorder them, so 1e-4 of
    the map's scale is allowed, far below any wiring error (a missing ReLU or a wrong P6 source
    changes P6/P7 by O(1) of their scale)."""
    ref = load("fpn")
    v = ref["variants"][variant]
    fpn = FPN(ref["in_channels"], ref["out_channels"], 5, source, relu)  # type: ignore[arg-type]
    fpn.load_state_dict(v["state_dict"])
    with torch.no_grad():
        outs = fpn(ref["inputs"])
    for ours, theirs in zip(outs, v["outputs"]):
        scale = float(theirs.abs().max())
        torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-4 * scale)
