"""The export-friendly post-processing (fixed shapes, matrix Cluster-NMS, score voting) gives what
``GFL.predict`` and :mod:`locdistill.models.nms` give, in PyTorch; ONNX itself is in test_export.py."""

from __future__ import annotations

import pytest
import torch
import torchvision

from locdistill.config import BackboneConfig, HeadConfig, ModelConfig, NeckConfig, NMSConfig
from locdistill.config import TestConfig as ModelTestConfig
from locdistill.export import ExportableGFL
from locdistill.export.nms import ExportPostprocess, cluster_keep, pairwise_iou_diou
from locdistill.models.cluster_nms import score_voting_cluster_diou_nms
from locdistill.models.detectors.gfl import build_gfl
from locdistill.ops.diou import diou_matrix
from locdistill.structures import ImageMeta


@pytest.mark.parametrize("nms_type", ["nms", "voting_cluster_diou"])
@pytest.mark.parametrize("seed", [0, 1])
def test_exportable_gfl_equals_predict(nms_type: str, seed: int) -> None:
    torch.manual_seed(seed)
    cfg = ModelConfig(
        backbone=BackboneConfig(name="resnet18", base_width=16),
        neck=NeckConfig(out_channels=32),
        head=HeadConfig(num_classes=4, feat_channels=32, stacked_convs=1, norm_groups=8),
        test=ModelTestConfig(nms=NMSConfig(type=nms_type), max_per_img=60),  # type: ignore[arg-type]
    )
    model = build_gfl(cfg).eval()
    with torch.no_grad():
        torch.nn.init.normal_(model.head.gfl_cls.weight, 0, 0.3)
        torch.nn.init.normal_(model.head.gfl_reg.weight, 0, 0.3)
    h, w = 192, 256
    x = torch.randn(3, 3, h, w)
    wrapper = ExportableGFL(model, (h, w), with_nms=True)
    with torch.no_grad():
        boxes, scores, labels, num = wrapper(x)
        dets = model.predict(
            model(x), [ImageMeta(i, "", (h, w), (h, w), (h, w)) for i in range(3)], rescale=False
        )
    assert (
        wrapper.post is not None and wrapper.post.converged is not None and bool(wrapper.post.converged.all())
    )
    for i, det in enumerate(dets):
        n = int(num[i])
        assert n == len(det) > 10
        assert torch.equal(labels[i, :n], det.labels)
        torch.testing.assert_close(scores[i, :n], det.scores, rtol=0, atol=0)
        torch.testing.assert_close(boxes[i, :n], det.boxes, rtol=1e-5, atol=1e-4)


def test_pairwise_diou_is_the_reference_formula() -> None:
    g = torch.Generator().manual_seed(0)
    xy = torch.rand(40, 2, generator=g) * 100
    b = torch.cat([xy, xy + 5 + torch.rand(40, 2, generator=g) * 50], 1)
    iou, diou = pairwise_iou_diou(b[None], b[None])
    torch.testing.assert_close(diou[0], diou_matrix(b, b), rtol=0, atol=1e-6)
    torch.testing.assert_close(iou[0], torchvision.ops.box_iou(b, b), rtol=0, atol=1e-6)


def test_cluster_rounds_reach_greedy_nms_and_report_a_short_count() -> None:
    """A chain: box k overlaps k + 1 (IoU 0.67) but not k + 2. Greedy NMS keeps every other box, which
    Cluster-NMS only reaches after as many rounds as the chain is long."""
    n = 12
    boxes = torch.tensor([[10.0 * k, 0.0, 10.0 * k + 50.0, 50.0] for k in range(n)])
    scores = torch.linspace(1.0, 0.5, n)
    iou, _ = pairwise_iou_diou(boxes[None], boxes[None])
    rank = torch.arange(n)
    suppress = (iou > 0.6) & (rank[:, None] < rank[None, :])
    valid = torch.ones(1, n, dtype=torch.bool)
    greedy = torch.zeros(n, dtype=torch.bool)
    greedy[torchvision.ops.nms(boxes, scores, 0.6)] = True
    keep, converged = cluster_keep(suppress, valid, iters=n)
    assert bool(converged.all()) and torch.equal(keep[0], greedy)
    short, converged = cluster_keep(suppress, valid, iters=3)
    assert not bool(converged.any()) and not torch.equal(short[0], greedy)


def test_voters_beyond_the_suppression_prefix_still_vote() -> None:
    """Score voting uses every candidate (``predict`` does): here the voters of the kept boxes rank far
    below the ``nms_topk`` prefix on which suppression is decided."""
    g = torch.Generator().manual_seed(3)
    n_top, n_low = 30, 200
    centers = torch.rand(n_top, 2, generator=g) * 400
    top = torch.cat([centers, centers + 60], 1)
    jitter = torch.randn(n_low, 4, generator=g) * 2
    low = top[torch.arange(n_low) % n_top] + jitter
    boxes = torch.cat([top, low])
    scores = torch.cat(
        [0.5 + 0.5 * torch.rand(n_top, generator=g), 0.06 + 0.3 * torch.rand(n_low, generator=g)]
    )
    labels = torch.cat([torch.arange(n_top) % 2, torch.arange(n_low) % n_top % 2])
    per_class = torch.zeros(len(boxes), 2)
    per_class[torch.arange(len(boxes)), labels] = scores
    post = ExportPostprocess([len(boxes)], 2, "voting_cluster_diou", 0.05, 1000, 0.6, 100, nms_topk=40)
    out_boxes, out_scores, out_labels, num = post(boxes[None], per_class[None])
    ref_boxes, ref_scores, ref_labels = score_voting_cluster_diou_nms(boxes, scores, labels, 0.6, 100)
    n = int(num[0])
    assert n == len(ref_boxes) and torch.equal(out_labels[0, :n], ref_labels)
    torch.testing.assert_close(out_scores[0, :n], ref_scores, rtol=0, atol=0)
    torch.testing.assert_close(out_boxes[0, :n], ref_boxes, rtol=1e-5, atol=1e-4)
    order = torch.sort(scores, descending=True).indices[:40]  # voting inside the prefix only differs
    prefix_only = score_voting_cluster_diou_nms(boxes[order], scores[order], labels[order], 0.6, 100)[0]
    assert not torch.allclose(prefix_only[0], ref_boxes[0])


def test_an_unexportable_nms_type_is_refused() -> None:
    with pytest.raises(ValueError, match="'soft_nms' cannot be exported with --with-nms"):
        ExportPostprocess([10], 2, "soft_nms", 0.05, 1000, 0.6, 100)
