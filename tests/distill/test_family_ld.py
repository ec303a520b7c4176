"""The family LD terms against hand-computed small cases (the coefficients of the LD code's heads:
docs/families.md; not in mmdetection, so no stored reference)."""

from __future__ import annotations

import math

import torch

from locdistill.config import DistillConfig, LDTermConfig, VLRConfig
from locdistill.distill.family_ld import default_rows, family_ld_losses
from locdistill.distill.family_regions import inside_gt_region, retina_vlr_region
from locdistill.models.assigners.atss_threshold import atss_threshold
from locdistill.models.assigners.batch import (
    MultiAnchorGrid,
    build_max_iou_assignment,
    build_point_assignment,
)
from locdistill.models.integral import Integral
from locdistill.models.losses.gfl import positive_samples
from locdistill.models.priors.points import multi_level_points
from locdistill.ops.box_ops import bbox_overlaps
from locdistill.structures import ImageMeta, Targets


def true_kl(p_logits: torch.Tensor, q_logits: torch.Tensor, t: float) -> float:
    """KL(softmax(q/T) || softmax(p/T)) summed over the row, computed term by term."""
    q = [math.exp(v / t) for v in q_logits.tolist()]
    p = [math.exp(v / t) for v in p_logits.tolist()]
    zq, zp = sum(q), sum(p)
    return sum((a / zq) * (math.log(a / zq) - math.log(b / zp)) for a, b in zip(q, p))


def one_prior_case(rows_family: str, cfg: DistillConfig, s_reg: torch.Tensor, t_reg: torch.Tensor, w: float):
    """One image, one prior that is positive, with max class score ``w``."""
    s_cls = torch.full((1, 1, 3), -10.0)
    s_cls[0, 0, 1] = math.log(w / (1 - w))
    assignment = build_point_assignment(
        [torch.tensor([[4.0, 4.0]])],
        [8],
        [Targets(torch.tensor([[0.0, 0.0, 8.0, 8.0]]), torch.tensor([1]))],
        3,
        [[-1.0, 1e8]],
    )
    pos = positive_samples(s_cls, s_reg[None, None], assignment, Integral(16))
    assert pos.batch_index.numel() == 1
    return family_ld_losses(
        rows_family,
        s_cls,
        s_reg[None, None],
        s_cls.clone(),
        t_reg[None, None],
        assignment,
        [],
        pos,
        cfg,
        1,
        default_rows(rows_family),
    )


def test_retina_main_ld_is_one_68_way_row() -> None:
    g = torch.Generator().manual_seed(0)
    s, t = torch.randn(68, generator=g) * 3, torch.randn(68, generator=g) * 3
    cfg = DistillConfig(main_ld=LDTermConfig(True, 5.0, 10.0))
    loss = one_prior_case("retina_gfl", cfg, s, t, 0.8)["loss_ld"]
    # 5 * T^2 / 68 / 4 = 1.84 per unit of true joint KL, times the student's max score 0.8
    expected = 5.0 * 100 / 68 / 4 * 0.8 * true_kl(s, t, 10.0)
    assert abs(float(loss) - expected) < 1e-6 * max(1.0, expected)


def test_edge_rows_for_atss_fcos_and_retina_option() -> None:
    g = torch.Generator().manual_seed(1)
    s, t = torch.randn(68, generator=g) * 3, torch.randn(68, generator=g) * 3
    cfg = DistillConfig(main_ld=LDTermConfig(True, 0.25, 10.0))
    per_edge = sum(true_kl(s[17 * e : 17 * e + 17], t[17 * e : 17 * e + 17], 10.0) for e in range(4))
    expected = 0.25 * 100 / 17 / 4 * 0.6 * per_edge  # 0.368 per edge
    for family in ("atss_gfl", "fcos_gfl"):
        loss = one_prior_case(family, cfg, s, t, 0.6)["loss_ld"]
        assert abs(float(loss) - expected) < 1e-6


def test_joint_rows_see_an_edge_offset_that_edge_rows_ignore() -> None:
    """Adding a constant to one edge's logits moves the box by nothing (the Integral is invariant); the
    joint 68-way row still sees it (the original's quirk), the per-edge rows do not."""
    from locdistill.distill.family_ld import weighted_row_kd

    g = torch.Generator().manual_seed(2)
    s, t = torch.randn(1, 68, generator=g), torch.randn(1, 68, generator=g)
    shifted = s.clone()
    shifted[0, :17] += 30.0
    one = torch.ones(1)
    joint = [float(weighted_row_kd(x, t, one, "joint", 10.0, 17)) for x in (s, shifted)]
    edge = [float(weighted_row_kd(x, t, one, "edge", 10.0, 17)) for x in (s, shifted)]
    assert abs(joint[0] - joint[1]) > 0.1
    assert abs(edge[0] - edge[1]) < 1e-5


def test_class_kd_per_level_count_and_temperature() -> None:
    g = torch.Generator().manual_seed(3)
    s_cls, t_cls = torch.randn(1, 1, 3, generator=g), torch.randn(1, 1, 3, generator=g)
    reg = torch.zeros(68)
    cfg = DistillConfig(main_ld=LDTermConfig(False), main_kd=LDTermConfig(True, 10.0, 8.0))
    assignment = build_point_assignment(
        [torch.tensor([[4.0, 4.0]])],
        [8],
        [Targets(torch.tensor([[0.0, 0.0, 8.0, 8.0]]), torch.tensor([1]))],
        3,
        [[-1.0, 1e8]],
    )
    pos = positive_samples(s_cls, reg[None, None], assignment, Integral(16))
    out = family_ld_losses(
        "retina_gfl", s_cls, reg[None, None], t_cls, reg[None, None], assignment, [], pos, cfg, 1, "joint"
    )
    expected = 10.0 * 64 / 3 * true_kl(s_cls[0, 0], t_cls[0, 0], 8.0) / 1  # lambda T^2 / C * KL / #pos
    assert abs(float(out["loss_kd"]) - expected) < 1e-4 * expected  # float32 KL cancellation


def retina_batch(with_gt: bool):
    grid = MultiAnchorGrid([(8, 8), (4, 4), (2, 2)], [8, 16, 32])
    boxes = torch.tensor([[10.0, 12.0, 50.0, 40.0]]) if with_gt else torch.zeros((0, 4))
    targets = [Targets(boxes, torch.tensor([0] if with_gt else [], dtype=torch.long))]
    metas = [ImageMeta(0, "", (64, 64), (64, 64), (64, 64))]
    return grid, targets, build_max_iou_assignment(grid, targets, metas, 2)


def test_retina_vlr_excludes_positives_and_weighs_by_iou() -> None:
    grid, targets, a = retina_batch(True)
    region = retina_vlr_region(a, targets)
    assert (region[a.pos_mask] == 0).all()
    inside = region > 0
    assert inside.any()
    iou = bbox_overlaps(grid.anchors, targets[0].boxes)[:, 0]
    torch.testing.assert_close(region[0][inside[0]], iou[inside[0]])
    # the VLR band: alpha_low * alpha <= IoF-DIoU < alpha with the ATSS-style alpha of the 9 nearest
    alpha = atss_threshold(grid.anchors, grid.num_level_anchors, targets[0].boxes, iou[:, None], 9)
    assert 0 < float(alpha) < 1
    torch.testing.assert_close(a.per_image[0].iou_thr_per_gt, alpha)


def test_retina_vlr_without_gt_is_empty() -> None:
    _, targets, a = retina_batch(False)
    assert float(retina_vlr_region(a, targets).abs().sum()) == 0.0


def test_fcos_second_region_inside_gt_negatives_weighted_by_student_score() -> None:
    points = multi_level_points([(8, 8)], [8])
    targets = [
        Targets(torch.tensor([[0.0, 0.0, 60.0, 60.0]]), torch.tensor([1])),
        Targets(),  # no GT: no region
    ]
    a = build_point_assignment(points, [8], targets, 3, [[-1.0, 1e8]], True, 1.5)
    cls = torch.randn(2, 64, 3)
    region = inside_gt_region(a, cls)
    expected_mask = a.inside_gt & ~a.pos_mask
    assert expected_mask[0].any() and not expected_mask[1].any()
    torch.testing.assert_close(region[expected_mask], cls.sigmoid().max(-1).values[expected_mask])
    assert (region[~expected_mask] == 0).all()


def test_second_region_terms_use_the_configured_coefficients() -> None:
    """FCOS: 0.25 * lambda_ld * sum w KD / 4 -> vlr weight 0.0625, divisor 4."""
    points = multi_level_points([(4, 4)], [8])
    targets = [Targets(torch.tensor([[0.0, 0.0, 30.0, 30.0]]), torch.tensor([1]))]
    a = build_point_assignment(points, [8], targets, 3, [[-1.0, 1e8]], True, 1.5)
    g = torch.Generator().manual_seed(4)
    s_cls, s_reg, t_reg = (
        torch.randn(1, 16, 3, generator=g),
        torch.randn(1, 16, 68, generator=g),
        torch.randn(1, 16, 68, generator=g),
    )
    pos = positive_samples(s_cls, s_reg, a, Integral(16))
    cfg = DistillConfig(main_ld=LDTermConfig(False), vlr_ld=VLRConfig(True, 0.0625, 10.0, divisor=4.0))
    out = family_ld_losses("fcos_gfl", s_cls, s_reg, s_cls, t_reg, a, targets, pos, cfg, 1, "edge")
    mask = a.inside_gt[0] & ~a.pos_mask[0]
    expected = 0.0
    for i in mask.nonzero().flatten().tolist():
        w = float(s_cls[0, i].sigmoid().max())
        kl = sum(
            true_kl(s_reg[0, i, 17 * e : 17 * e + 17], t_reg[0, i, 17 * e : 17 * e + 17], 10.0)
            for e in range(4)
        )
        expected += 0.0625 * 100 / 17 * w * kl / 4
    assert mask.any()
    assert abs(float(out["loss_ld_vlr"]) - expected) < 1e-5
