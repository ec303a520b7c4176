"""Localization distillation: the teacher stays frozen and out of the way, and each LD term follows
its reference formula."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from locdistill.config import DistillConfig, LDTermConfig, VLRConfig
from locdistill.distill.distiller import Distiller
from locdistill.distill.ld_loss import batch_scale, main_kd_loss, main_ld_loss, vlr_ld_loss
from locdistill.distill.regions import anchor_gt_diou, vlr_region
from locdistill.models.fpn import FPN
from locdistill.models.gfl import GFL
from locdistill.models.gfl_head import GFLHead
from locdistill.models.priors import multi_level_anchors
from locdistill.models.targets import build_targets
from locdistill.structures import Batch, ImageMeta, Targets


class TinyBackbone(nn.Module):
    """Three strided conv stages giving C3-C5 at strides 8/16/32 (a stand-in for a real backbone)."""

    def __init__(self, width: int = 8, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225)) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, width, 3, 4, 1), nn.ReLU())
        self.c3 = nn.Sequential(nn.Conv2d(width, width, 3, 2, 1), nn.ReLU())
        self.c4 = nn.Sequential(nn.Conv2d(width, 2 * width, 3, 2, 1), nn.ReLU())
        self.c5 = nn.Sequential(nn.Conv2d(2 * width, 4 * width, 3, 2, 1), nn.ReLU())
        self.out_channels = [width, 2 * width, 4 * width]
        self.mean, self.std = mean, std

    def forward(self, x):
        c3 = self.c3(self.stem(x))
        c4 = self.c4(c3)
        return [c3, c4, self.c5(c4)]


def tiny_gfl(
    seed: int = 0, num_classes: int = 3, reg_max: int = 16, strides=(8, 16, 32, 64, 128), **bb
) -> GFL:
    torch.manual_seed(seed)
    backbone = TinyBackbone(**bb)
    neck = FPN(backbone.out_channels, 32, len(strides))
    head = GFLHead(
        num_classes, 32, 32, stacked_convs=1, num_levels=len(strides), reg_max=reg_max, norm_groups=8
    )
    return GFL(backbone, neck, head, list(strides))


def make_batch(num_images: int = 2, with_gt: bool = True, seed: int = 0) -> Batch:
    g = torch.Generator().manual_seed(seed)
    images = torch.randn(num_images, 3, 128, 128, generator=g)
    targets, metas = [], []
    for i in range(num_images):
        if with_gt:
            boxes = torch.tensor(
                [[10.0, 12.0, 60.0, 70.0], [50.0, 40.0, 120.0, 100.0], [5.0, 80.0, 30.0, 110.0]]
            )
            targets.append(Targets(boxes + i, torch.tensor([0, 1, 2])))
        else:
            targets.append(Targets())
        metas.append(ImageMeta(i, f"img{i}", (128, 128), (128, 128), (128, 128)))
    return Batch(images, targets, metas)


def ld_config(**overrides) -> DistillConfig:
    cfg = DistillConfig(
        main_ld=LDTermConfig(True, 0.25, 10.0),
        vlr_ld=VLRConfig(True, 0.25, 10.0),
        main_kd=LDTermConfig(True, 10.0, 2.0),
    )
    for k, v in overrides.items():
        setattr(cfg, k, v)
    return cfg


def test_teacher_frozen_absent_from_checkpoint_and_optimizer() -> None:
    student, teacher = tiny_gfl(0), tiny_gfl(1)
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    module = Distiller(student, teacher, ld_config())
    module.train()
    assert not module.teacher.training and module.student.training
    params = [p for p in module.parameters() if p.requires_grad]
    teacher_ids = {id(p) for p in module.teacher.parameters()}
    assert params and not any(id(p) in teacher_ids for p in params)
    opt = torch.optim.SGD(params, lr=0.01, momentum=0.9)
    for step in range(3):
        losses = module(make_batch(seed=step))
        assert {"loss_ld", "loss_ld_vlr", "loss_kd"} <= set(losses)
        opt.zero_grad()
        sum(losses.values()).backward()
        opt.step()
    for k, v in teacher.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert all(p.grad is None for p in teacher.parameters())
    assert not any(k.startswith("teacher.") for k in module.state_dict())
    assert "teacher.head.gfl_cls.weight" in module._ddp_params_and_buffers_to_ignore
    assert not module.teacher.training


def test_teacher_moves_with_to() -> None:
    module = Distiller(tiny_gfl(0), tiny_gfl(1), ld_config())
    module.to(torch.float64)
    assert next(module.teacher.parameters()).dtype == torch.float64


def test_ld_zero_when_student_equals_teacher_and_positive_otherwise() -> None:
    batch = make_batch()
    same = Distiller(tiny_gfl(0), tiny_gfl(0), ld_config())
    losses = same(batch)
    for key in ("loss_ld", "loss_ld_vlr", "loss_kd"):
        assert abs(float(losses[key].detach())) < 1e-6, key
    other = Distiller(tiny_gfl(0), tiny_gfl(1), ld_config())
    losses = other(batch)
    for key in ("loss_ld", "loss_ld_vlr", "loss_kd"):
        assert float(losses[key]) > 0, key


def test_no_ground_truth_gives_exactly_zero_ld() -> None:
    module = Distiller(tiny_gfl(0), tiny_gfl(1), ld_config())
    losses = module(make_batch(with_gt=False))
    for key in ("loss_ld", "loss_ld_vlr", "loss_kd", "loss_bbox", "loss_dfl"):
        assert float(losses[key]) == 0.0, key
    assert float(losses["loss_cls"]) > 0 and math.isfinite(float(losses["loss_cls"]))


def test_plain_gfl_when_all_terms_off() -> None:
    cfg = ld_config(main_ld=LDTermConfig(False), vlr_ld=VLRConfig(False), main_kd=LDTermConfig(False))
    student = tiny_gfl(0)
    module = Distiller(student, tiny_gfl(1), cfg)
    batch = make_batch()
    losses = module(batch)
    plain = student.loss(student(batch.images), batch.targets, batch.metas)
    assert set(losses) == set(plain)
    for k in plain:
        torch.testing.assert_close(losses[k], plain[k], rtol=0, atol=0)


def _kl_by_hand(s: torch.Tensor, t: torch.Tensor, temp: float) -> torch.Tensor:
    """KL(p_t || p_s) per row, summed over bins, written out."""
    p_t = torch.softmax(t / temp, dim=-1)
    log_p_s = torch.log_softmax(s / temp, dim=-1)
    return (p_t * (torch.log(p_t) - log_p_s)).sum(-1)


def test_official_main_ld_formula_on_hand_case() -> None:
    g = torch.Generator().manual_seed(3)
    s = torch.randn(5, 4, 17, generator=g)
    t = torch.randn(5, 4, 17, generator=g)
    w = torch.rand(5, generator=g)
    # reference: sum_i sum_side w_i * (KL/17) * T^2 / 4, times 0.25; nothing else divides it.
    expected = 0.25 * sum(w[i] * _kl_by_hand(s[i], t[i], 10.0).sum() / 17 * 100 for i in range(5)) / 4
    torch.testing.assert_close(main_ld_loss(s, t, w, 10.0, 0.25), expected, rtol=1e-5, atol=1e-7)
    # official mode grows with the batch: twice the positives, twice the loss
    s2, t2, w2 = torch.cat([s, s]), torch.cat([t, t]), torch.cat([w, w])
    torch.testing.assert_close(main_ld_loss(s2, t2, w2), 2 * main_ld_loss(s, t, w), rtol=1e-5, atol=1e-7)
    vlr = vlr_ld_loss(s, t, w, 10.0, 0.25, 16.0)
    torch.testing.assert_close(vlr, expected * 4 / 16, rtol=1e-5, atol=1e-7)
    assert batch_scale("official", 8, 3) == 1.0
    assert batch_scale("invariant", 6, 3) == 0.5


def test_main_kd_divides_each_level_by_its_positives() -> None:
    g = torch.Generator().manual_seed(4)
    s, t = torch.randn(6, 5, generator=g), torch.randn(6, 5, generator=g)
    level = torch.tensor([0, 0, 0, 2, 2, 1])
    per = _kl_by_hand(s, t, 2.0) / 5 * 4
    expected = 10 * (per[:3].sum() / 3 + per[5] / 1 + per[3:5].sum() / 2)
    torch.testing.assert_close(main_kd_loss(s, t, level, 5, 2.0, 10.0), expected, rtol=1e-5, atol=1e-6)


def test_vlr_membership_and_weights_on_hand_case() -> None:
    # one 64x64 GT; anchors of one level (stride 8, side 64) on a 128x128 image
    sizes, strides = [(16, 16)], [8]
    anchors = multi_level_anchors(sizes, strides)
    gt = Targets(torch.tensor([[32.0, 32.0, 96.0, 96.0]]), torch.tensor([0]))
    meta = ImageMeta(0, "x", (128, 128), (128, 128), (128, 128))
    t = build_targets(anchors, sizes, strides, [gt], [meta], num_classes=1)
    alpha = t.assign[0].iou_thr_per_gt[0]
    for mode in ("official", "true"):
        region = vlr_region(t, [gt], 0.25, mode)[0]
        diou = anchor_gt_diou(anchors[0], gt.boxes, mode)[:, 0]
        iou = t.assign[0].overlaps[:, 0]
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
    t = build_targets(anchors, sizes, strides, [gt], [meta], num_classes=1)
    region = vlr_region(t, [gt], 0.25, "true")[0]
    alpha = t.assign[0].iou_thr_per_gt
    diou = anchor_gt_diou(anchors[0], gt.boxes, "true")
    iou = t.assign[0].overlaps
    member = (diou >= 0.25 * alpha) & (diou < alpha)
    both = member.all(dim=1).nonzero().flatten()
    assert both.numel() > 0
    for a in both.tolist():
        assert float(region[a]) == pytest.approx(float(iou[a].max()))


def test_mismatched_teacher_is_named() -> None:
    with pytest.raises(ValueError, match="reg_max: student 16 vs teacher 8"):
        Distiller(tiny_gfl(0), tiny_gfl(1, reg_max=8), ld_config())
    with pytest.raises(ValueError, match="strides"):
        Distiller(tiny_gfl(0), tiny_gfl(1, strides=(8, 16, 32, 64, 96)), ld_config())
    with pytest.raises(ValueError, match="num_classes"):
        Distiller(tiny_gfl(0), tiny_gfl(1, num_classes=5), ld_config())
    # without class KD a different class count is fine for box LD
    Distiller(tiny_gfl(0), tiny_gfl(1, num_classes=5), ld_config(main_kd=LDTermConfig(False)))


def test_teacher_with_other_normalisation_sees_its_own_inputs() -> None:
    student = tiny_gfl(0)
    teacher = tiny_gfl(1, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    module = Distiller(student, teacher, ld_config())
    raw = torch.rand(1, 3, 64, 64)
    s_in = (raw - torch.tensor(student.mean)[:, None, None]) / torch.tensor(student.std)[:, None, None]
    t_in = module.teacher_inputs(s_in)
    torch.testing.assert_close(t_in, (raw - 0.5) / 0.5, rtol=1e-5, atol=1e-5)


def test_official_mode_warns_above_three_images_per_gpu() -> None:
    with pytest.warns(UserWarning, match="at most 3"):
        Distiller(tiny_gfl(0), tiny_gfl(1), ld_config(), images_per_gpu=4)
