"""The Distiller: the teacher stays frozen and out of the way; LD is zero exactly where it must be."""

from __future__ import annotations

import math

import pytest
import torch

from locdistill.config import DistillConfig, LDTermConfig, VLRConfig
from locdistill.distill.distiller import Distiller
from tests.helpers import make_batch, tiny_gfl


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


def test_assignment_and_positives_are_computed_once_and_shared(monkeypatch: pytest.MonkeyPatch) -> None:
    import locdistill.models.detectors.gfl as gfl_module
    import locdistill.models.losses.gfl as gfl_loss_module

    calls = {"assign": 0, "positives": 0}
    real_assign, real_positives = gfl_module.GFL.assign, gfl_loss_module.positive_samples

    def counting_assign(self, *args, **kwargs):
        calls["assign"] += 1
        return real_assign(self, *args, **kwargs)

    def counting_positives(*args, **kwargs):
        calls["positives"] += 1
        return real_positives(*args, **kwargs)

    monkeypatch.setattr(gfl_module.GFL, "assign", counting_assign)
    monkeypatch.setattr(gfl_module, "positive_samples", counting_positives)
    monkeypatch.setattr(gfl_loss_module, "positive_samples", counting_positives)
    module = Distiller(tiny_gfl(0), tiny_gfl(1), ld_config())
    batch = make_batch()
    losses = module(batch)
    assert calls == {"assign": 1, "positives": 1}
    # the shared positives give exactly the student's own GFL losses
    student = module.student
    alone = student.loss(student(batch.images), batch.targets, batch.metas)
    for key in ("loss_cls", "loss_bbox", "loss_dfl"):
        assert torch.equal(losses[key], alone[key]), key


def test_head_outputs_float_and_clone() -> None:
    from locdistill.models.heads.outputs import HeadOutputs

    half = HeadOutputs([torch.ones(1, 2, 3, 3, dtype=torch.float16)], [torch.zeros(1, 4, 3, 3)])
    out = half.float()
    assert all(t.dtype == torch.float32 for t in [*out.cls_scores, *out.bbox_preds])
    assert out.bbox_preds[0] is half.bbox_preds[0]  # float32 stays as it is, no copy
    copy = half.clone()
    assert copy.bbox_preds[0] is not half.bbox_preds[0] and torch.equal(
        copy.bbox_preds[0], half.bbox_preds[0]
    )
