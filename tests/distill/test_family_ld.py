"""The LD terms of the RetinaGFL / ATSS-GFL / FCOS-GFL students against hand-computed small cases, with
the LD code's coefficients (docs/families.md; not in mmdetection, so no stored reference), and their
second regions on real family assignments."""

from __future__ import annotations

import math

import torch

from locdistill.distill.ld_loss import main_kd_loss, main_ld_loss, vlr_ld_loss
from locdistill.distill.regions import second_region
from locdistill.models.assigners.atss_threshold import atss_threshold
from locdistill.models.assigners.batch import build_max_iou_assignment, build_point_assignment
from locdistill.models.detectors.atss_gfl import ATSSGFL
from locdistill.models.detectors.fcos_gfl import FCOSGFL
from locdistill.models.detectors.retina_gfl import RetinaGFL
from locdistill.models.priors.multi_anchors import MultiAnchorGrid
from locdistill.models.priors.points import multi_level_points
from locdistill.ops.box_ops import bbox_overlaps
from locdistill.structures import ImageMeta, Targets


def true_kl(p_logits: torch.Tensor, q_logits: torch.Tensor, t: float) -> float:
    """KL(softmax(q/T) || softmax(p/T)) summed over the row, term by term in float64."""
    q = [math.exp(v / t) for v in q_logits.tolist()]
    p = [math.exp(v / t) for v in p_logits.tolist()]
    zq, zp = sum(q), sum(p)
    return sum((a / zq) * (math.log(a / zq) - math.log(b / zp)) for a, b in zip(q, p))


def test_the_families_declare_the_original_ld_forms() -> None:
    assert (RetinaGFL.ld_spec.row, RetinaGFL.ld_spec.second_region) == ("prior", "vlr_negatives")
    assert (ATSSGFL.ld_spec.row, ATSSGFL.ld_spec.second_region, ATSSGFL.ld_spec.second_weight) == (
        "edge",
        "vlr",
        "iou",
    )
    assert (FCOSGFL.ld_spec.second_region, FCOSGFL.ld_spec.second_weight) == (
        "inside_gt_negatives",
        "student_score",
    )


def test_retina_main_ld_is_one_68_way_row_per_anchor() -> None:
    g = torch.Generator().manual_seed(0)
    s, t = torch.randn(68, generator=g) * 3, torch.randn(68, generator=g) * 3
    loss = main_ld_loss(s.reshape(1, 4, 17), t.reshape(1, 4, 17), torch.tensor([0.8]), 10.0, 5.0, "prior")
    # 5 * T^2 / 68 / 4 = 1.84 per unit of the true joint KL, times the student's max score 0.8
    expected = 5.0 * 100 / 68 / 4 * 0.8 * true_kl(s, t, 10.0)
    assert abs(float(loss) - expected) < 1e-5 * expected


def test_per_edge_ld_coefficient() -> None:
    """ATSS/FCOS (and RetinaGFL with distill.ld_rows=edge): 0.25 * T^2 / 17 / 4 = 0.368 per edge."""
    g = torch.Generator().manual_seed(1)
    s, t = torch.randn(68, generator=g) * 3, torch.randn(68, generator=g) * 3
    loss = main_ld_loss(s.reshape(1, 4, 17), t.reshape(1, 4, 17), torch.tensor([0.6]), 10.0, 0.25, "edge")
    per_edge = sum(true_kl(s[17 * e : 17 * e + 17], t[17 * e : 17 * e + 17], 10.0) for e in range(4))
    expected = 0.25 * 100 / 17 / 4 * 0.6 * per_edge
    assert abs(float(loss) - expected) < 1e-5 * expected


def test_joint_rows_see_an_edge_offset_that_edge_rows_ignore() -> None:
    """A constant added to one edge's logits moves no box (the Integral ignores it); the joint 68-way
    row (the original RetinaGFL LD) still charges for it, the per-edge rows do not (note §5.1)."""
    g = torch.Generator().manual_seed(2)
    s, t = torch.randn(1, 4, 17, generator=g), torch.randn(1, 4, 17, generator=g)
    shifted = s.clone()
    shifted[0, 0] += 30.0
    one = torch.ones(1)
    joint = [float(main_ld_loss(x, t, one, 10.0, 1.0, "prior")) for x in (s, shifted)]
    edge = [float(main_ld_loss(x, t, one, 10.0, 1.0, "edge")) for x in (s, shifted)]
    assert abs(joint[0] - joint[1]) > 0.01
    assert abs(edge[0] - edge[1]) < 1e-6


def test_second_region_coefficients() -> None:
    """Retina: 0.03 * 5 * sum v KL_68 / 4; ATSS: 0.15 * 0.25 * sum v KL_17 / 4; FCOS: 0.25 * 0.25 / 4."""
    g = torch.Generator().manual_seed(3)
    s, t = torch.randn(2, 4, 17, generator=g) * 2, torch.randn(2, 4, 17, generator=g) * 2
    w = torch.tensor([0.3, 0.7])
    for weight, row in ((0.15, "prior"), (0.0375, "edge"), (0.0625, "edge")):
        loss = vlr_ld_loss(s, t, w, 10.0, weight, 4.0, row)  # type: ignore[arg-type]
        if row == "prior":
            kl = [true_kl(s[i].flatten(), t[i].flatten(), 10.0) / 68 for i in range(2)]
        else:
            kl = [sum(true_kl(s[i, e], t[i, e], 10.0) for e in range(4)) / 17 for i in range(2)]
        expected = weight * 100 * sum(wi * k for wi, k in zip(w.tolist(), kl)) / 4
        assert abs(float(loss) - expected) < 1e-5 * expected


def test_retina_class_kd_at_temperature_8() -> None:
    g = torch.Generator().manual_seed(4)
    s, t = torch.randn(3, 5, generator=g), torch.randn(3, 5, generator=g)
    level = torch.tensor([0, 0, 1])
    loss = main_kd_loss(s, t, level, 2, 8.0, 10.0)
    kl = [true_kl(s[i], t[i], 8.0) for i in range(3)]
    expected = 10.0 * 64 / 5 * ((kl[0] + kl[1]) / 2 + kl[2] / 1)  # lambda T^2 / C, per level / #pos
    assert abs(float(loss) - expected) < 1e-4 * expected


def retina_assignment(with_gt: bool):
    grid = MultiAnchorGrid([(8, 8), (4, 4), (2, 2)], [8, 16, 32])
    boxes = torch.tensor([[10.0, 12.0, 50.0, 40.0]]) if with_gt else torch.zeros((0, 4))
    targets = [Targets(boxes, torch.tensor([0] if with_gt else [], dtype=torch.long))]
    metas = [ImageMeta(0, "", (64, 64), (64, 64), (64, 64))]
    return grid, targets, build_max_iou_assignment(grid, targets, metas, 2)


def test_retina_vlr_uses_the_atss_style_alpha_and_excludes_positives() -> None:
    grid, targets, a = retina_assignment(True)
    iou = bbox_overlaps(grid.anchors, targets[0].boxes)
    alpha = atss_threshold(grid.anchors, grid.num_level_anchors, targets[0].boxes, iou, 9)
    torch.testing.assert_close(a.per_image[0].iou_thr_per_gt, alpha)
    region = second_region("vlr_negatives", a, targets)
    assert (region[a.pos_mask] == 0).all() and (region > 0).any()
    inside = region[0] > 0
    torch.testing.assert_close(region[0][inside], iou[inside, 0])
    with_pos = second_region("vlr", a, targets)
    torch.testing.assert_close(region, torch.where(a.pos_mask, 0.0, with_pos))


def test_retina_vlr_without_gt_is_empty() -> None:
    _, targets, a = retina_assignment(False)
    assert float(second_region("vlr_negatives", a, targets).abs().sum()) == 0.0


def test_fcos_second_region_is_the_inside_gt_negatives() -> None:
    """The contract's region equals the FCOS assignment's own inside-GT flags minus the positives; an
    image without GT has none (the original crashes there)."""
    points = multi_level_points([(8, 8), (4, 4)], [8, 16])
    targets = [Targets(torch.tensor([[0.0, 0.0, 60.0, 44.0]]), torch.tensor([1])), Targets()]
    a = build_point_assignment(points, [8, 16], targets, 3, [[-1.0, 32.0], [32.0, 1e8]], True, 1.5)
    region = second_region("inside_gt_negatives", a, targets)
    expected = a.inside_gt & ~a.pos_mask
    assert expected[0].any() and not expected[1].any()
    assert torch.equal(region > 0, expected)
