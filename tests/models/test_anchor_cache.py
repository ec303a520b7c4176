"""The per-feature-size anchor cache (``AnchorGrid``) gives exactly what fresh computation gives."""

from __future__ import annotations

import pytest
import torch

from locdistill.models.assigners.assignment import build_assignment
from locdistill.models.assigners.atss import atss_assign
from locdistill.models.priors.anchors import AnchorGrid, multi_level_anchors, valid_counts, valid_flags
from locdistill.structures import ImageMeta, Targets, targets_look_valid
from tests.helpers import tiny_gfl

STRIDES = [8, 16, 32, 64, 128]


def feature_sizes(h: int, w: int) -> list[tuple[int, int]]:
    """FPN sizes of a ``h x w`` batch (stride-2 convs: ceil halving), as the tiny detector makes them."""
    sizes = []
    for s in STRIDES:
        sizes.append((-(-h // s), -(-w // s)))
    return sizes


@pytest.mark.parametrize("size", [(64, 64), (128, 96), (320, 512), (416, 224)])
def test_grid_equals_fresh_anchors_and_valid_flags(size: tuple[int, int]) -> None:
    sizes = feature_sizes(*size)
    grid = AnchorGrid(sizes, STRIDES)
    fresh = multi_level_anchors(sizes, STRIDES)
    assert all(torch.equal(a, b) for a, b in zip(grid.per_level, fresh))
    assert torch.equal(grid.anchors, torch.cat(fresh))
    assert grid.num_level_anchors == [h * w for h, w in sizes]
    expected_level = torch.cat([torch.full((h * w,), i) for i, (h, w) in enumerate(sizes)])
    assert torch.equal(grid.level_index, expected_level)
    assert torch.equal(grid.anchor_strides, torch.tensor(STRIDES, dtype=torch.float32)[expected_level])
    for pad in [size, (size[0] // 2 + 32, size[1]), (32, 32)]:
        valid = grid.valid(pad)
        flags = valid_flags(sizes, STRIDES, pad)
        assert torch.equal(valid.flags, flags)
        assert torch.equal(valid.positions, flags.nonzero().squeeze(1))
        assert torch.equal(valid.anchors, torch.cat(fresh)[flags])
        assert valid.num_level_anchors == [int(f.sum()) for f in flags.split(grid.num_level_anchors)]
        assert valid.num_level_anchors == valid_counts(sizes, STRIDES, pad)
        assert grid.valid(pad) is valid  # cached


def reference_targets(anchors, sizes, targets, metas, num_classes):
    """The straightforward form: fresh flags per image and boolean-mask writes (what the cache replaces)."""
    num_anchors = anchors.shape[0]
    out = {"labels": [], "label_weights": [], "gt_boxes": [], "gt_index": [], "valid": []}
    for tgt, meta in zip(targets, metas):
        valid = valid_flags(sizes, STRIDES, meta.pad_shape)
        idx = valid.nonzero().squeeze(1)
        per_level = [int(v.sum()) for v in valid.split([h * w for h, w in sizes])]
        r = atss_assign(anchors[idx], per_level, tgt.boxes, tgt.labels)
        pos, neg = r.gt_inds > 0, r.gt_inds == 0
        assigned = r.gt_inds[pos] - 1
        labels = torch.full((num_anchors,), num_classes, dtype=torch.long)
        labels[idx[pos]] = tgt.labels[assigned]
        weights = torch.zeros(num_anchors)
        weights[idx[pos | neg]] = 1.0
        boxes = torch.zeros((num_anchors, 4))
        boxes[idx[pos]] = tgt.boxes[assigned]
        gt_index = torch.full((num_anchors,), -1, dtype=torch.long)
        gt_index[idx[pos]] = assigned
        for k, v in zip(out, (labels, weights, boxes, gt_index, valid)):
            out[k].append(v)
    return {k: torch.stack(v) for k, v in out.items()}


def random_targets(n: int, h: int, w: int, seed: int) -> Targets:
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=g) * torch.tensor([w * 0.7, h * 0.7])
    wh = 8 + torch.rand(n, 2, generator=g) * torch.tensor([w * 0.3, h * 0.3])
    return Targets(torch.cat([xy, xy + wh], 1), torch.randint(0, 3, (n,), generator=g))


@pytest.mark.parametrize("size", [(128, 128), (192, 320), (96, 224)])
def test_cached_targets_equal_fresh_targets(size: tuple[int, int]) -> None:
    h, w = size
    sizes = feature_sizes(h, w)
    anchors = multi_level_anchors(sizes, STRIDES)
    # Two images, the second padded smaller than the batch and without any box in one case.
    metas = [
        ImageMeta(0, "a", (h, w), (h, w), (h, w)),
        ImageMeta(1, "b", (h // 2, w), (h // 2, w), (h // 2 + h // 2 % 32, w)),
    ]
    for targets in (
        [random_targets(5, h, w, 0), random_targets(3, h // 2, w, 1)],
        [random_targets(4, h, w, 2), Targets()],
    ):
        ref = reference_targets(torch.cat(anchors), sizes, targets, metas, 3)
        grid = AnchorGrid(sizes, STRIDES)
        for _ in range(2):  # the second pass reads the cached valid anchors
            t = build_assignment(anchors, sizes, STRIDES, targets, metas, 3, grid=grid)
            fresh = build_assignment(anchors, sizes, STRIDES, targets, metas, 3)
            for k, v in ref.items():
                assert torch.equal(getattr(t, k), v), k
                assert torch.equal(getattr(fresh, k), v), k
            assert torch.equal(t.num_total_pos, fresh.num_total_pos)
            assert torch.equal(t.level_index, fresh.level_index)
            assert torch.equal(t.anchor_strides, fresh.anchor_strides)


def test_detector_keeps_one_grid_per_feature_size() -> None:
    model = tiny_gfl(0)
    with torch.no_grad():
        a = model(torch.zeros(1, 3, 128, 128))
        b = model(torch.zeros(1, 3, 96, 160))
        grid_a, grid_b = model.anchor_grid(a), model.anchor_grid(b)
        assert grid_a is model.anchor_grid(model(torch.zeros(2, 3, 128, 128)))
        assert grid_a is not grid_b
        sizes = [tuple(c.shape[-2:]) for c in b.cls_scores]
        assert all(torch.equal(x, y) for x, y in zip(model.anchors(b), multi_level_anchors(sizes, STRIDES)))


def test_targets_look_valid_flags_what_check_targets_rejects() -> None:
    good = Targets(torch.tensor([[1.0, 2.0, 5.0, 6.0]]), torch.tensor([2]))
    assert targets_look_valid([good, Targets()], num_classes=3)
    assert not targets_look_valid([good, Targets(torch.tensor([[1.0, 2.0, 1.0, 6.0]]), torch.tensor([0]))], 3)
    assert not targets_look_valid(
        [Targets(torch.tensor([[1.0, float("inf"), 5.0, 6.0]]), torch.tensor([0]))], 3
    )
    assert not targets_look_valid([good], num_classes=2)
    assert targets_look_valid([good])
