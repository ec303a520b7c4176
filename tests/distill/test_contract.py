"""The dense-detector contract as ``distill/`` uses it: family refusal, CrossKD capability, the LD row
forms, the second-region kinds and per-anchor flattening, on GFL and on GFL subclasses posing as other
families (no real other family needed)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from locdistill.config import CrossKDConfig, DistillConfig, LDTermConfig, ModelConfig, VLRConfig
from locdistill.distill.distiller import Distiller
from locdistill.distill.ld_loss import main_ld_loss, vlr_ld_loss
from locdistill.distill.regions import inside_gt_negatives, second_region, vlr_region
from locdistill.models.build import build_detector
from locdistill.models.detectors.base import DenseDetector, LDSpec, article, check_same_family
from locdistill.models.detectors.gfl import GFL
from locdistill.models.heads.outputs import flatten_levels
from tests.distill.helpers import make_batch, tiny_gfl


class RetinaLike(GFL):
    family = "RetinaGFL"
    ld_spec = LDSpec(row="prior", second_region="vlr_negatives")


class FCOSLike(GFL):
    family = "FCOS-GFL"
    ld_spec = LDSpec(second_region="inside_gt_negatives", second_weight="student_score")

    def crosskd_head(self) -> None:
        return None


def posing_as(cls: type[GFL], seed: int) -> GFL:
    model = tiny_gfl(seed)
    model.__class__ = cls
    return model


def ld_all() -> DistillConfig:
    return DistillConfig(
        main_ld=LDTermConfig(True), vlr_ld=VLRConfig(True), main_kd=LDTermConfig(True, 10.0, 2.0)
    )


def test_a_teacher_of_another_family_is_refused_in_one_line_naming_both() -> None:
    with pytest.raises(ValueError) as e:
        Distiller(tiny_gfl(0), posing_as(RetinaLike, 1), ld_all())
    message = str(e.value)
    assert message == (
        "distill: the teacher is a RetinaGFL detector but the student is a GFL detector; LD needs a teacher "
        "of the student's family"
    )
    with pytest.raises(ValueError, match="teacher is a GFL detector but the student is an FCOS-GFL detector"):
        check_same_family(posing_as(FCOSLike, 0), tiny_gfl(1))


def test_article() -> None:
    assert [article(n) for n in ("GFL", "RetinaGFL", "ATSS-GFL", "FCOS-GFL", "YOLO-DFL")] == [
        "a",
        "a",
        "an",
        "an",
        "a",
    ]


def test_crosskd_is_refused_for_a_head_it_cannot_split() -> None:
    cfg = DistillConfig(
        main_ld=LDTermConfig(True), vlr_ld=VLRConfig(False), crosskd=CrossKDConfig(True, layer=1)
    )
    with pytest.raises(
        ValueError, match=r"distill\.crosskd: the student's head \(FCOS-GFL\) cannot be split"
    ):
        Distiller(posing_as(FCOSLike, 0), posing_as(FCOSLike, 1), cfg)


def test_gfl_fulfils_the_contract() -> None:
    model = tiny_gfl(0)
    assert isinstance(model, DenseDetector) and model.family == "GFL" and model.ld_spec == LDSpec()
    images = make_batch().images
    out = model(images)
    flat = model.flatten(out)
    assert torch.equal(flat.cls, flatten_levels(out.cls_scores))
    assert torch.equal(flat.reg, flatten_levels(out.bbox_preds))
    assert model.num_levels == 5 and model.crosskd_head() is model.head
    assert [f.shape for f in model.features(images)] == [f.shape for f in model.neck(model.backbone(images))]
    assert isinstance(build_detector(ModelConfig(type="gfl")), GFL)


def test_flatten_levels_gives_each_anchor_its_own_row() -> None:
    """Anchor-major channels (anchor ``p`` owns ``[p*K, (p+1)*K)``): row ``(y*W + x)*P + p``."""
    b, p, k, h, w = 2, 3, 4, 2, 5
    maps = torch.randn(b, p * k, h, w)
    flat = flatten_levels([maps], priors_per_location=p)
    assert flat.shape == (b, h * w * p, k)
    y, x, a = 1, 3, 2
    torch.testing.assert_close(
        flat[1, (y * w + x) * p + a], maps[1, a * k : (a + 1) * k, y, x], rtol=0, atol=0
    )


def test_ld_over_one_row_per_prior_is_the_joint_softmax() -> None:
    """``row="prior"``: one ``4*(R+1)``-way softmax per prior, the row-mean KL times ``T^2``, weighted,
    divided by 4 (RetinaGFL's LDRetinaHead); ``edge`` stays four ``(R+1)``-way rows."""
    g = torch.Generator().manual_seed(0)
    s, t = torch.randn(5, 4, 17, generator=g), torch.randn(5, 4, 17, generator=g)
    w, temp = torch.rand(5, generator=g), 10.0
    q = F.softmax(t.reshape(5, 68) / temp, dim=1)
    kl = (q * (q.log() - F.log_softmax(s.reshape(5, 68) / temp, dim=1))).mean(dim=1) * temp**2
    expected = 5.0 * (kl * w).sum() / 4
    torch.testing.assert_close(main_ld_loss(s, t, w, temp, 5.0, row="prior"), expected)
    torch.testing.assert_close(vlr_ld_loss(s, t, w, temp, 5.0, divisor=4.0, row="prior"), expected)
    assert not torch.allclose(main_ld_loss(s, t, w, temp, 5.0, row="edge"), expected)
    empty = torch.zeros(0, 4, 17)
    assert float(main_ld_loss(empty, empty, torch.zeros(0), row="prior")) == 0.0


def test_second_region_kinds() -> None:
    model = tiny_gfl(0)
    batch = make_batch()
    assignment = model.assign(model(batch.images), batch.targets, batch.metas)
    vlr = vlr_region(assignment, batch.targets)
    assert torch.equal(second_region("vlr", assignment, batch.targets), vlr)
    without = second_region("vlr_negatives", assignment, batch.targets)
    assert torch.equal(without, torch.where(assignment.pos_mask, 0.0, vlr))
    assert bool((vlr > 0).any()) and not bool((without[assignment.pos_mask] > 0).any())
    inside = second_region("inside_gt_negatives", assignment, batch.targets)
    assert torch.equal(inside, inside_gt_negatives(assignment, batch.targets))
    centers = (assignment.anchors[:, :2] + assignment.anchors[:, 2:]) / 2
    for i, tgt in enumerate(batch.targets):
        box = tgt.boxes[0]
        strictly_in = (
            (centers[:, 0] > box[0])
            & (centers[:, 1] > box[1])
            & (centers[:, 0] < box[2])
            & (centers[:, 1] < box[3])
        )
        expected_some = strictly_in & ~assignment.pos_mask[i] & assignment.valid[i]
        assert bool((inside[i][expected_some] == 1).all())
        assert not bool((inside[i][assignment.pos_mask[i]] > 0).any())


def test_the_distiller_follows_the_students_ld_spec() -> None:
    """A family with one joint row per prior and inside-GT negatives weighted by the student's score
    distils with finite LD terms that differ from GFL's on the same weights."""
    batch = make_batch()
    gfl = Distiller(tiny_gfl(0), tiny_gfl(1), ld_all())(batch)
    other = Distiller(posing_as(FCOSLike, 0), posing_as(FCOSLike, 1), ld_all())(batch)
    retina = Distiller(posing_as(RetinaLike, 0), posing_as(RetinaLike, 1), ld_all())(batch)
    for losses in (other, retina):
        assert all(math.isfinite(float(v.detach())) for v in losses.values())
        assert float(losses["loss_ld_vlr"].detach()) > 0
    assert torch.equal(gfl["loss_kd"], other["loss_kd"]) and torch.equal(gfl["loss_ld"], other["loss_ld"])
    assert not torch.equal(gfl["loss_ld_vlr"], other["loss_ld_vlr"])
    assert not torch.equal(gfl["loss_ld"], retina["loss_ld"]) and torch.equal(
        gfl["loss_kd"], retina["loss_kd"]
    )


def test_model_type_is_stored_and_an_old_config_means_gfl() -> None:
    from locdistill.config import Config, ConfigError, config_from_dict, to_dict

    raw = to_dict(Config())
    assert raw["model"]["type"] == "gfl"  # saved with every checkpoint's config
    del raw["model"]["type"]
    assert config_from_dict(raw).model.type == "gfl"
    raw["model"]["type"] = "yolo_dfl"
    with pytest.raises(ConfigError, match="type"):
        config_from_dict(raw)
