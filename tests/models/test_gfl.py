"""Properties of the GFL detector in the manner of torchvision's detection tests."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from locdistill.models.heads.gfl import DGQP, GFLHead, joint_logit
from locdistill.models.priors.anchors import level_anchors, valid_flags
from locdistill.structures import ImageMeta, Targets
from tests.helpers import make_batch, tiny_gfl


def test_no_ground_truth_box_losses_are_exactly_zero() -> None:
    model = tiny_gfl(0)
    batch = make_batch(2, with_gt=False)
    losses = model.loss(model(batch.images), batch.targets, batch.metas)
    assert float(losses["loss_bbox"].detach()) == 0.0 and float(losses["loss_dfl"].detach()) == 0.0
    qfl = float(losses["loss_cls"].detach())
    assert qfl > 0 and math.isfinite(qfl)
    sum(losses.values()).backward()
    assert all(p.grad is not None for p in model.head.parameters())


def test_invalid_boxes_are_named() -> None:
    model = tiny_gfl(0)
    batch = make_batch(1)
    batch.targets[0] = Targets(
        torch.tensor([[10.0, 10.0, 50.0, 50.0], [30.0, 40.0, 30.0, 80.0]]), torch.tensor([0, 1])
    )
    with pytest.raises(ValueError, match=r"invalid box #1 in image 'img0'.*\[30.0, 40.0, 30.0, 80.0\]"):
        model.loss(model(batch.images), batch.targets, batch.metas)
    batch.targets[0] = Targets(torch.tensor([[10.0, 10.0, float("nan"), 50.0]]), torch.tensor([0]))
    with pytest.raises(ValueError, match="invalid box #0"):
        model.loss(model(batch.images), batch.targets, batch.metas)
    batch.targets[0] = Targets(torch.tensor([[10.0, 10.0, 50.0, 50.0]]), torch.tensor([7]))
    with pytest.raises(ValueError, match=r"label 7 of box #0 in image 'img0' is outside \[0, 3\)"):
        model.loss(model(batch.images), batch.targets, batch.metas)


def _mean_positive_iou(model, batch) -> float:
    from locdistill.models.heads.outputs import flatten_levels
    from locdistill.models.losses.gfl import positive_samples
    from locdistill.ops.box_ops import bbox_overlaps

    with torch.no_grad():
        out = model(batch.images)
        t = model.assign(out, batch.targets, batch.metas)
        pos = positive_samples(
            flatten_levels(out.cls_scores), flatten_levels(out.bbox_preds), t, model.integral
        )
        return float(bbox_overlaps(pos.pred_boxes, pos.target_boxes, is_aligned=True).mean())


def test_training_improves_localization_on_a_fixed_batch() -> None:
    model = tiny_gfl(0)
    batch = make_batch(2)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    before = _mean_positive_iou(model, batch)
    for _ in range(30):
        loss = sum(model.loss(model(batch.images), batch.targets, batch.metas).values())
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert _mean_positive_iou(model, batch) > before + 0.05


def test_predict_shapes_and_rescale() -> None:
    model = tiny_gfl(0).eval()
    model.test_cfg.score_thr = 0.0
    batch = make_batch(2)
    batch.metas[1] = ImageMeta(1, "b", (256, 200), (128, 100), (128, 128), scale_factor=(0.5, 0.5))
    with torch.no_grad():
        out = model(batch.images)
    small = model.predict(out, batch.metas, rescale=False)
    big = model.predict(out, batch.metas, rescale=True)
    for d in small + big:
        assert d.boxes.shape[1] == 4 and len(d) <= 100
        assert torch.all(d.scores[:-1] >= d.scores[1:])
    # image 1 is clipped to its own img_shape (w=100), and rescaled by 1/0.5
    assert float(small[1].boxes[:, 2].max()) <= 100.0
    torch.testing.assert_close(big[1].boxes, small[1].boxes * 2)


def test_anchor_layout() -> None:
    a = level_anchors((2, 3), 16)
    assert a.shape == (6, 4)
    torch.testing.assert_close(a[4], torch.tensor([16.0 - 64, 16.0 - 64, 16.0 + 64, 16.0 + 64]))
    flags = valid_flags([(4, 4)], [8], (20, 12))
    assert flags.reshape(4, 4)[:3, :2].all() and int(flags.sum()) == 6


def test_dgqp_joint_logit_is_product_of_probabilities() -> None:
    c, q = torch.randn(1000) * 6, torch.randn(1000) * 6
    torch.testing.assert_close(
        torch.sigmoid(joint_logit(c, q)), torch.sigmoid(c) * torch.sigmoid(q), rtol=1e-4, atol=1e-6
    )
    assert torch.isfinite(joint_logit(torch.tensor([40.0, -40.0]), torch.tensor([40.0, -40.0]))).all()


def test_dgqp_statistics_layout() -> None:
    dgqp = DGQP(reg_max=16, topk=4, channels=8)
    x = torch.randn(2, 68, 3, 5)
    prob = F.softmax(x.reshape(2, 4, 17, 3, 5), dim=2)
    top = prob.topk(4, dim=2).values
    stat = torch.cat([top, top.mean(2, keepdim=True)], dim=2).reshape(2, 20, 3, 5)
    torch.testing.assert_close(dgqp(x), dgqp.reg_conf(stat))


def test_gfl_v2_head_trains() -> None:
    head = GFLHead(3, 16, 16, stacked_convs=1, num_levels=2, norm_groups=4, dgqp=True, dgqp_channels=8)
    feats = [torch.randn(1, 16, 8, 8), torch.randn(1, 16, 4, 4)]
    out = head(feats)
    assert out.cls_scores[0].shape == (1, 3, 8, 8) and out.bbox_preds[1].shape == (1, 68, 4, 4)
    (out.cls_scores[0].sum() + out.bbox_preds[0].sum()).backward()
    assert head.dgqp is not None and head.dgqp.reg_conf[0].weight.grad is not None
