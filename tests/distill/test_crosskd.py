"""CrossKD: the cross-head pass follows the authors' GFL code step by step, its losses their formulas, the
teacher stays frozen while gradients pass through it, and it composes with LD."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from locdistill.config import CrossKDConfig, DistillConfig, LDTermConfig, VLRConfig
from locdistill.distill.crosskd import CrossKD, align_scale, batch_mean_std, hold_sums, run_teacher
from locdistill.distill.crosskd_loss import (
    crosskd_bbox_loss,
    crosskd_cls_loss,
    crosskd_reg_loss,
    teacher_box_weights,
)
from locdistill.distill.distiller import Distiller
from locdistill.losses.reduce import EPS32
from locdistill.models.integral import Integral
from locdistill.ops.box_ops import bbox_overlaps

from .helpers import make_batch, tiny_gfl

CROSS_KEYS = {"loss_crosskd_cls", "loss_crosskd_reg"}


def crosskd_only(**kw) -> DistillConfig:
    return DistillConfig(
        main_ld=LDTermConfig(False), vlr_ld=VLRConfig(False), crosskd=CrossKDConfig(enabled=True, **kw)
    )


def test_shapes_and_loss_terms() -> None:
    student, teacher = tiny_gfl(0, feat=32, convs=2), tiny_gfl(1, feat=32, convs=4)
    module = Distiller(student, teacher, crosskd_only(layer=2, teacher_layer=3, bbox_weight=2.0))
    batch = make_batch()
    result = run_teacher(teacher, batch.images, module.crosskd.teacher_layer)
    s_out, s_tower = module.crosskd.student_forward(student, batch.images)
    cross = module.crosskd.cross_outputs(teacher.head, s_tower, result.hold_sums)
    for a, b in zip(teacher.flatten(cross), result.outputs):  # per prior: [B, A, C], [B, A, 4*(R+1)]
        assert a.shape == b.shape and a.dtype == torch.float32
    assert [tuple(s.shape) for s in result.hold_sums] == [(2, 2, 2, 32)] * 5
    losses = module(batch)
    assert CROSS_KEYS | {"loss_crosskd_bbox", "loss_cls", "loss_bbox", "loss_dfl"} == set(losses)
    assert all(float(v.detach()) > 0 for v in losses.values())


def test_student_forward_gives_the_students_own_outputs() -> None:
    student, teacher = tiny_gfl(0), tiny_gfl(1)
    cross = CrossKD(student, teacher, CrossKDConfig(True, layer=1))
    images = make_batch().images
    out, tower = cross.student_forward(student, images)
    ref = student(images)
    for a, b in zip(out.cls_scores + out.bbox_preds, ref.cls_scores + ref.bbox_preds):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert tower.depth == 1


@pytest.mark.parametrize("hold", ["post_relu", "pre_relu"])
def test_crossing_after_the_last_conv_equals_the_teacher_head_by_hand(hold: str) -> None:
    """Published (``post_relu``): the hold features are the last tower conv's output after its ReLU,
    student and teacher alike; ``pre_relu`` (the variant) takes both before it."""
    student, teacher = tiny_gfl(0, convs=2), tiny_gfl(1, convs=2)
    cross = CrossKD(student, teacher, CrossKDConfig(True, layer=2, hold=hold))  # type: ignore[arg-type]
    images = make_batch().images
    _, s_tower = cross.student_forward(student, images)
    sums = run_teacher(teacher, images, 2, hold_relu=hold == "post_relu").hold_sums
    out = cross.cross_outputs(teacher.head, s_tower, sums)
    th = teacher.head
    t_feats = teacher.neck(teacher.backbone(images))
    s_feats = student.neck(student.backbone(images))
    act = torch.relu if hold == "post_relu" else (lambda x: x)
    for level in range(5):
        # the student's last tower conv (conv -> GN [-> ReLU]), and the teacher's, written out
        s_c = act(
            student.head.cls_convs[1].gn(
                student.head.cls_convs[1].conv(student.head.cls_convs[0](s_feats[level]))
            )
        )
        t_c = act(th.cls_convs[1].gn(th.cls_convs[1].conv(th.cls_convs[0](t_feats[level]))))
        s_r = act(
            student.head.reg_convs[1].gn(
                student.head.reg_convs[1].conv(student.head.reg_convs[0](s_feats[level]))
            )
        )
        t_r = act(th.reg_convs[1].gn(th.reg_convs[1].conv(th.reg_convs[0](t_feats[level]))))
        if hold == "post_relu":
            assert (s_c == 0).float().mean() > 0.2  # rectified: many exact zeros

        def aligned(s, t):
            s_flat, t_flat = s.transpose(0, 1).flatten(1), t.transpose(0, 1).flatten(1)
            z = (s_flat - s_flat.mean(1, keepdim=True)) / (s_flat.std(1, keepdim=True) + 1e-6)
            z = z * t_flat.std(1, keepdim=True) + t_flat.mean(1, keepdim=True)
            return z.reshape(s.shape[1], s.shape[0], *s.shape[2:]).transpose(0, 1)

        cls = th.gfl_cls(torch.relu(aligned(s_c, t_c)))
        reg = th.scales[level](th.gfl_reg(torch.relu(aligned(s_r, t_r))))
        torch.testing.assert_close(out.cls_scores[level], cls, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(out.bbox_preds[level], reg, rtol=1e-4, atol=1e-5)


def test_crossing_at_the_fpn_runs_the_whole_teacher_head_without_a_leading_relu() -> None:
    student, teacher = tiny_gfl(0, convs=1), tiny_gfl(1, convs=2)
    cross = CrossKD(student, teacher, CrossKDConfig(True, layer=0))
    images = make_batch().images
    _, s_tower = cross.student_forward(student, images)
    sums = run_teacher(teacher, images, 0).hold_sums
    out = cross.cross_outputs(teacher.head, s_tower, sums)
    s_feats = student.neck(student.backbone(images))
    t_feats = teacher.neck(teacher.backbone(images))
    for level in range(5):
        s, t = s_feats[level], t_feats[level]
        mean, std = t.mean(dim=(0, 2, 3)), t.std(dim=(0, 2, 3))
        x = align_scale(s, mean, std)
        for conv in teacher.head.cls_convs:
            x = conv(x)
        torch.testing.assert_close(out.cls_scores[level], teacher.head.gfl_cls(x), rtol=1e-4, atol=1e-5)


def test_batch_statistics_from_per_image_sums() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 6, 5, 7, generator=g) * 3 + 1
    from locdistill.models.heads.outputs import TowerFeatures

    sums = hold_sums(TowerFeatures([x], [2 * x], 1))[0]
    mean, std = batch_mean_std(sums, 35)
    torch.testing.assert_close(mean[0], x.mean(dim=(0, 2, 3)))
    torch.testing.assert_close(std[0], x.std(dim=(0, 2, 3)))
    torch.testing.assert_close(std[1], (2 * x).std(dim=(0, 2, 3)))
    # any split of the batch into images gives the same statistics
    again = torch.cat([hold_sums(TowerFeatures([x[i : i + 1]], [x[i : i + 1]], 1))[0] for i in range(3)])
    torch.testing.assert_close(batch_mean_std(again, 35)[1][0], std[0])


def test_gradients_reach_only_the_student_and_the_teacher_is_unchanged_by_a_step() -> None:
    student, teacher = tiny_gfl(0, convs=2), tiny_gfl(1, convs=2)
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    module = Distiller(student, teacher, crosskd_only(layer=1))
    module.train()
    params = [p for p in module.parameters() if p.requires_grad]
    teacher_ids = {id(p) for p in teacher.parameters()}
    assert not any(id(p) in teacher_ids for p in params)
    assert all(not p.requires_grad for p in teacher.parameters())
    opt = torch.optim.SGD(params, lr=0.05, momentum=0.9)
    for step in range(2):
        losses = module(make_batch(seed=step))
        opt.zero_grad()
        (losses["loss_crosskd_cls"] + losses["loss_crosskd_reg"]).backward()
        # the cross-head losses reach the student's backbone, FPN and the tower convs before the
        # crossing, and nothing after it (the student's own later convs and output convs)
        assert student.backbone.stem[0].weight.grad is not None
        assert float(student.backbone.stem[0].weight.grad.abs().sum()) > 0
        assert float(student.head.cls_convs[0].conv.weight.grad.abs().sum()) > 0
        assert float(student.head.reg_convs[0].conv.weight.grad.abs().sum()) > 0
        assert student.head.cls_convs[1].conv.weight.grad is None
        assert student.head.gfl_cls.weight.grad is None
        assert all(p.grad is None for p in teacher.parameters())
        opt.step()
    for k, v in teacher.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert not teacher.training
    assert not any(k.startswith("teacher.") for k in module.state_dict())


def test_self_distillation_through_the_same_head_gives_almost_zero() -> None:
    student, teacher = tiny_gfl(0), tiny_gfl(0)
    losses = Distiller(student, teacher, crosskd_only(layer=1, bbox_weight=2.0))(make_batch())
    # the cross head reproduces the teacher (up to the 1e-6 on the std): KL, GIoU and |p - q| vanish
    assert float(losses["loss_crosskd_reg"]) < 1e-6
    assert float(losses["loss_crosskd_bbox"]) < 1e-5
    assert float(losses["loss_crosskd_cls"]) < 1e-4


def test_widths_that_differ_need_the_adapter() -> None:
    student, teacher = tiny_gfl(0, feat=16), tiny_gfl(1, feat=32)
    with pytest.raises(ValueError, match="have 16 channels but the teacher's head expects 32"):
        Distiller(student, teacher, crosskd_only(layer=1))
    module = Distiller(student, teacher, crosskd_only(layer=1, adapter=True))
    assert module.crosskd.cls_adapter.weight.shape == (32, 16, 1, 1)
    assert "crosskd.cls_adapter.weight" in module.state_dict()
    losses = module(make_batch())
    sum(losses.values()).backward()
    assert module.crosskd.cls_adapter.weight.grad is not None
    # at the FPN the widths are the FPN's (equal here): no adapter needed
    assert isinstance(
        Distiller(student, teacher, crosskd_only(layer=0)).crosskd.cls_adapter, torch.nn.Identity
    )


def test_layers_outside_the_towers_are_named() -> None:
    with pytest.raises(
        ValueError, match=r"distill.crosskd.layer=3 is outside the student head's tower \(0..2"
    ):
        Distiller(tiny_gfl(0, convs=2), tiny_gfl(1, convs=4), crosskd_only(layer=3))
    with pytest.raises(ValueError, match="teacher_layer=5"):
        Distiller(tiny_gfl(0, convs=2), tiny_gfl(1, convs=4), crosskd_only(layer=1, teacher_layer=5))
    with pytest.raises(ValueError, match="num_classes"):
        Distiller(tiny_gfl(0), tiny_gfl(1, num_classes=4), crosskd_only(layer=1))


def test_composes_with_ld() -> None:
    cfg = DistillConfig(
        main_ld=LDTermConfig(True, 0.25, 10.0),
        vlr_ld=VLRConfig(True, 0.25, 10.0),
        crosskd=CrossKDConfig(True, layer=1),
    )
    student, teacher = tiny_gfl(0), tiny_gfl(1)
    batch = make_batch()
    both = Distiller(student, teacher, cfg)(batch)
    assert {"loss_ld", "loss_ld_vlr"} | CROSS_KEYS <= set(both)
    ld_only = Distiller(student, teacher, DistillConfig(vlr_ld=VLRConfig(True, 0.25, 10.0)))(batch)
    for key in ("loss_cls", "loss_bbox", "loss_dfl", "loss_ld", "loss_ld_vlr"):
        torch.testing.assert_close(both[key], ld_only[key], rtol=0, atol=0)


def test_gflv2_teacher_applies_its_dgqp_to_the_cross_head() -> None:
    student, teacher = tiny_gfl(0), tiny_gfl(1, dgqp=True)
    module = Distiller(student, teacher, crosskd_only(layer=2))
    losses = module(make_batch())
    assert all(torch.isfinite(v) for v in losses.values())


# ------------------------------------------------------------------------ the loss formulas by hand
def test_cls_kd_on_a_hand_case() -> None:
    x = torch.tensor([[[0.0, 2.0], [-1.0, 1.0]], [[3.0, -2.0], [0.5, 0.5]]])  # [B=2, A=2, C=2]
    t = torch.tensor([[[1.0, 1.0], [-1.0, -3.0]], [[0.0, 0.0], [2.0, -1.0]]])
    lw = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    total = 0.0
    for b in range(2):
        for a in range(2):
            for c in range(2):
                p, q = torch.sigmoid(x[b, a, c]), torch.sigmoid(t[b, a, c])
                bce = -(q * torch.log(p) + (1 - q) * torch.log(1 - p))
                total += float(lw[b, a] * bce * abs(p - q))
    got = crosskd_cls_loss(x, t, lw, avg_factor=3.0, beta=1.0, loss_weight=1.5)
    assert float(got) == pytest.approx(1.5 * total / (3.0 + EPS32), rel=1e-5)


def test_reg_kd_on_a_hand_case() -> None:
    g = torch.Generator().manual_seed(5)
    bins = 5
    x = torch.randn(1, 3, 4 * bins, generator=g)
    t = torch.randn(1, 3, 4 * bins, generator=g)
    t_cls = torch.tensor([[[0.0, 1.0], [2.0, -1.0], [-3.0, -4.0]]])
    lw = torch.tensor([[1.0, 1.0, 0.0]])
    w = teacher_box_weights(t_cls, lw)
    torch.testing.assert_close(
        w, torch.tensor([[torch.sigmoid(torch.tensor(1.0)), torch.sigmoid(torch.tensor(2.0)), 0.0]])
    )
    total = 0.0
    for a in range(3):
        for side in range(4):
            pt = torch.softmax(t[0, a, side * bins : (side + 1) * bins] / 2.0, 0)
            log_px = torch.log_softmax(x[0, a, side * bins : (side + 1) * bins] / 2.0, 0)
            total += float(w[0, a] * (pt * (pt.log() - log_px)).sum() * 4.0)
    got = crosskd_reg_loss(x, t, w, temperature=2.0, loss_weight=3.0)
    expected = 3.0 * total / 4.0 / float(w.sum())
    assert float(got) == pytest.approx(expected, rel=1e-5)


def test_bbox_kd_on_a_hand_case() -> None:
    reg_max = 4
    integral = Integral(reg_max)

    # one-hot-ish distributions: the cross head at distances (1,1,1,1), the teacher at (2,1,1,2)
    def dist(d):
        logits = torch.full((4, reg_max + 1), -30.0)
        for side, v in enumerate(d):
            logits[side, v] = 30.0
        return logits.reshape(-1)

    x = torch.stack([dist([1, 1, 1, 1]), dist([2, 2, 2, 2])])[None]
    t = torch.stack([dist([2, 1, 1, 2]), dist([2, 2, 2, 2])])[None]
    w = torch.tensor([[0.5, 0.25]])
    centers = torch.tensor([[5.0, 5.0], [9.0, 9.0]])
    box_x = torch.tensor([[4.0, 4.0, 6.0, 6.0]])
    box_t = torch.tensor([[3.0, 4.0, 6.0, 7.0]])
    giou = float(bbox_overlaps(box_x, box_t, mode="giou", is_aligned=True)[0])
    assert giou == pytest.approx(4 / 9)  # box_x inside box_t: IoU = GIoU = 4/9
    got = crosskd_bbox_loss(x, t, w, centers, integral, loss_weight=2.0)
    assert float(got) == pytest.approx(2.0 * 0.5 * (1 - giou) / 0.75, rel=1e-4)


def test_losses_are_normalised_like_the_reference() -> None:
    """Doubling the batch with a copy leaves cls KD (per positive) and reg KD (per weight) unchanged."""
    g = torch.Generator().manual_seed(2)
    x, t = torch.randn(1, 6, 3, generator=g), torch.randn(1, 6, 3, generator=g)
    lw = torch.ones(1, 6)
    one = crosskd_cls_loss(x, t, lw, 2.0)
    two = crosskd_cls_loss(torch.cat([x, x]), torch.cat([t, t]), torch.cat([lw, lw]), 4.0)
    torch.testing.assert_close(one, two)
    xr, tr = torch.randn(1, 6, 20, generator=g), torch.randn(1, 6, 20, generator=g)
    w = teacher_box_weights(t, lw)
    torch.testing.assert_close(
        crosskd_reg_loss(xr, tr, w),
        crosskd_reg_loss(torch.cat([xr, xr]), torch.cat([tr, tr]), torch.cat([w, w])),
    )
    # KL summed over the bins (class_reduction 'sum'), not averaged
    flat_x, flat_t = xr.reshape(-1, 5), tr.reshape(-1, 5)
    kl = F.kl_div(F.log_softmax(flat_x, 1), F.softmax(flat_t, 1), reduction="none").sum(1)
    manual = 4.0 * (kl * w.reshape(-1).repeat_interleave(4)).sum() / (4 + EPS32) / w.sum()
    torch.testing.assert_close(crosskd_reg_loss(xr, tr, w), manual)
