"""Produce tests/refs/mmdet_families/*.pt: mmdetection 3.3.0's values for the parts of RetinaGFL,
ATSS-GFL and FCOS-GFL that mmdetection itself implements (see tests/refs/mmdet_families/README.md).

Runs only where mmdetection is installed (``/work/mmdet_venv/bin/python tools/make_family_refs.py``);
mmcv-lite has no compiled ops, so a stand-in ``mmcv._ext`` is installed first whose only working op is
``nms`` (``torchvision.ops.nms``: greedy, suppress when IoU > thr, as mmcv's CPU kernel with offset 0).
Nothing here is imported by locdistill.
"""

from __future__ import annotations

import sys
import types
from pathlib import Path
from typing import Any

import torch

OUT = Path(__file__).resolve().parents[1] / "tests" / "refs" / "mmdet_families"
STRIDES = [8, 16, 32, 64, 128]
NUM_CLASSES = 4


def install_fake_mmcv_ext() -> None:
    import torchvision

    module = types.ModuleType("mmcv._ext")

    def nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float, offset: int = 0) -> torch.Tensor:
        assert offset == 0
        return torchvision.ops.nms(boxes.float(), scores.float(), float(iou_threshold))

    def missing(name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)

        def fn(*args: Any, **kwargs: Any) -> Any:
            raise RuntimeError(f"mmcv._ext.{name} is not available")

        return fn

    module.nms = nms  # type: ignore[attr-defined]
    module.__getattr__ = missing  # type: ignore[method-assign]
    sys.modules["mmcv._ext"] = module


def versions() -> dict[str, str]:
    import mmcv
    import mmdet
    import mmengine

    return {
        "mmdet": str(mmdet.__version__),
        "mmengine": str(mmengine.__version__),
        "mmcv": str(mmcv.__version__),
        "torch": str(torch.__version__),
        "python": sys.version.split()[0],
    }


def featmap_sizes(h: int, w: int) -> list[tuple[int, int]]:
    """FPN sizes of a batch ``h x w`` (ceil of each stride-2 step, as ResNet + FPN produce)."""
    sizes = []
    for s in STRIDES:
        sizes.append((-(-h // s), -(-w // s)))
    return sizes


RETINA_ANCHORS = dict(
    type="AnchorGenerator", octave_base_scale=4, scales_per_octave=3, ratios=[0.5, 1.0, 2.0], strides=STRIDES
)
ATSS_ANCHORS = dict(
    type="AnchorGenerator", ratios=[1.0], octave_base_scale=8, scales_per_octave=1, strides=STRIDES
)


def gt_sets() -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """GT cases on a 160 x 192 (h x w) image."""
    main = torch.tensor(
        [
            [10.0, 12.0, 70.0, 60.0],
            [40.0, 30.0, 110.0, 120.0],
            [100.0, 20.0, 104.7, 22.9],  # tiny: only a low-quality match
            [5.0, 5.0, 187.0, 155.0],  # almost the whole image
            [120.5, 80.25, 180.0, 150.0],
            [44.0, 33.0, 112.0, 118.0],  # overlaps gt 1 heavily
        ]
    )
    labels = torch.tensor([0, 1, 2, 3, 1, 2])
    edge = torch.tensor([[-10.0, -8.0, 30.0, 40.0], [170.0, 130.0, 200.0, 175.0], [60.0, 60.0, 63.0, 75.0]])
    return {
        "main": (main, labels),
        "zero_gt": (torch.zeros((0, 4)), torch.zeros((0,), dtype=torch.long)),
        "single_gt": (main[1:2], labels[1:2]),
        "edge": (edge, torch.tensor([3, 0, 1])),
    }


def make_priors() -> dict[str, Any]:
    from mmdet.registry import TASK_UTILS

    sizes = featmap_sizes(160, 192)
    retina = TASK_UTILS.build(RETINA_ANCHORS)
    atss = TASK_UTILS.build(ATSS_ANCHORS)
    points = TASK_UTILS.build(dict(type="MlvlPointGenerator", strides=STRIDES, offset=0.5))
    pad = (128, 160)
    return {
        "featmap_sizes": [list(s) for s in sizes],
        "pad_shape": list(pad),
        "retina_base_anchors": [b.clone() for b in retina.base_anchors],
        "retina_anchors": retina.grid_priors(sizes, device="cpu"),
        "retina_valid_flags": retina.valid_flags(sizes, pad, device="cpu"),
        "atss_anchors": atss.grid_priors(sizes, device="cpu"),
        "atss_valid_flags": atss.valid_flags(sizes, pad, device="cpu"),
        "fcos_points": points.grid_priors(sizes, device="cpu"),
    }


def make_assign() -> dict[str, Any]:
    from mmdet.models.dense_heads import FCOSHead
    from mmdet.registry import TASK_UTILS
    from mmengine.structures import InstanceData

    sizes = featmap_sizes(160, 192)
    anchors = torch.cat(TASK_UTILS.build(RETINA_ANCHORS).grid_priors(sizes, device="cpu"))
    points = TASK_UTILS.build(dict(type="MlvlPointGenerator", strides=STRIDES, offset=0.5)).grid_priors(
        sizes, device="cpu"
    )
    max_iou = TASK_UTILS.build(
        dict(type="MaxIoUAssigner", pos_iou_thr=0.5, neg_iou_thr=0.4, min_pos_iou=0, ignore_iof_thr=-1)
    )
    fcos = FCOSHead(
        num_classes=NUM_CLASSES,
        strides=STRIDES,
        in_channels=8,
        feat_channels=8,
        stacked_convs=1,
        center_sampling=True,
        center_sample_radius=1.5,
        norm_on_bbox=False,
        norm_cfg=None,
    )
    cases: dict[str, Any] = {}
    for name, (boxes, labels) in gt_sets().items():
        gt = InstanceData(bboxes=boxes, labels=labels)
        r = max_iou.assign(InstanceData(priors=anchors), gt)
        f_labels, f_targets = fcos.get_targets(points, [gt])
        cases[name] = {
            "gt_bboxes": boxes,
            "gt_labels": labels,
            "max_iou_gt_inds": r.gt_inds.int(),
            "max_iou_max_overlaps": r.max_overlaps,
            "max_iou_labels": r.labels.int(),
            "fcos_labels": torch.cat(f_labels).int(),
            "fcos_bbox_targets": torch.cat(f_targets),
        }
    return {"featmap_sizes": [list(s) for s in sizes], "image_shape": [160, 192], "cases": cases}


# ------------------------------------------------------------------------------------------ losses
BATCH_H, BATCH_W = 96, 128
METAS = [
    {
        "img_shape": (96, 128),
        "pad_shape": (96, 128),
        "batch_input_shape": (96, 128),
        "scale_factor": (0.5, 0.5),
    },
    {
        "img_shape": (90, 70),
        "pad_shape": (96, 96),
        "batch_input_shape": (96, 128),
        "scale_factor": (0.8, 0.75),
    },
]


def loss_gts() -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [
        (
            torch.tensor(
                [
                    [4.0, 6.0, 40.0, 50.0],
                    [30.0, 10.0, 90.0, 60.0],
                    [60.0, 40.0, 70.0, 52.0],
                    [8.0, 8.0, 124.0, 92.0],
                ]
            ),
            torch.tensor([0, 2, 3, 1]),
        ),
        (
            torch.tensor([[8.0, 4.0, 48.0, 36.0], [20.0, 30.0, 45.0, 58.0], [2.0, 2.0, 70.0, 88.0]]),
            torch.tensor([1, 1, 0]),
        ),
    ]


def randn_f16(
    shape: tuple[int, ...], gen: torch.Generator, scale: float = 1.0, shift: float = 0.0
) -> torch.Tensor:
    """Random values exactly representable in float16 (stored as float16, used as float32)."""
    return (torch.randn(shape, generator=gen) * scale + shift).half().float()


def integral_boxes(reg: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
    from mmdet.models.dense_heads.gfl_head import Integral
    from mmdet.structures.bbox import distance2bbox

    return distance2bbox(centres, Integral(16)(reg))


def make_family_case(family: str, gen: torch.Generator) -> dict[str, Any]:
    """Head inputs (logits), mmdet targets, loss_cls / loss_centerness from mmdet's heads, and the
    GFL-ized box loss composed from mmdet's Integral, distance2bbox and GIoULoss."""
    from mmdet.models.losses import GIoULoss
    from mmdet.registry import MODELS
    from mmengine.config import ConfigDict
    from mmengine.structures import InstanceData

    sizes = featmap_sizes(BATCH_H, BATCH_W)
    num_anchors = 9 if family == "retina" else 1
    cls = [randn_f16((2, num_anchors * NUM_CLASSES, h, w), gen, 1.5, -2.5) for h, w in sizes]
    reg68 = [randn_f16((2, num_anchors * 68, h, w), gen, 2.0) for h, w in sizes]
    ctr = [randn_f16((2, 1, h, w), gen) for h, w in sizes]
    gts = [InstanceData(bboxes=b, labels=l) for b, l in loss_gts()]
    focal = dict(type="FocalLoss", use_sigmoid=True, gamma=2.0, alpha=0.25, loss_weight=1.0)
    common = dict(num_classes=NUM_CLASSES, in_channels=32, feat_channels=32, stacked_convs=1, loss_cls=focal)
    out: dict[str, Any] = {"cls_scores": [c.half() for c in cls], "bbox_preds": [r.half() for r in reg68]}
    if family == "retina":
        head = MODELS.build(
            dict(
                type="RetinaHead",
                anchor_generator=RETINA_ANCHORS,
                reg_decoded_bbox=True,
                bbox_coder=dict(type="DeltaXYWHBBoxCoder", target_means=[0.0] * 4, target_stds=[1.0] * 4),
                loss_bbox=dict(type="GIoULoss", loss_weight=2.0),
                train_cfg=ConfigDict(
                    assigner=dict(
                        type="MaxIoUAssigner",
                        pos_iou_thr=0.5,
                        neg_iou_thr=0.4,
                        min_pos_iou=0,
                        ignore_iof_thr=-1,
                    ),
                    sampler=dict(type="PseudoSampler"),
                    allowed_border=-1,
                    pos_weight=-1,
                    debug=False,
                ),
                **common,
            )
        )
        anchors, valid = head.get_anchors(sizes, METAS, device="cpu")
        labels, label_weights, bbox_targets, _, avg_factor = head.get_targets(anchors, valid, gts, METAS)
        d4 = [torch.zeros(2, 36, h, w) for h, w in sizes]
        losses = head.loss_by_feat(cls, d4, gts, METAS)
        level_anchors = anchors[0]
    else:
        kind = "ATSSHead" if family == "atss" else "FCOSHead"
        extra: dict[str, Any] = {}
        if family == "atss":
            extra = dict(
                anchor_generator=ATSS_ANCHORS,
                loss_bbox=dict(type="GIoULoss", loss_weight=2.0),
                loss_centerness=dict(type="CrossEntropyLoss", use_sigmoid=True, loss_weight=1.0),
                train_cfg=ConfigDict(
                    assigner=dict(type="ATSSAssigner", topk=9), allowed_border=-1, pos_weight=-1, debug=False
                ),
            )
        else:
            extra = dict(
                strides=STRIDES,
                center_sampling=True,
                center_sample_radius=1.5,
                norm_on_bbox=False,
                norm_cfg=None,
            )
        head = MODELS.build(dict(type=kind, **common, **extra))
        d4 = [torch.rand(2, 4, h, w) for h, w in sizes]
        losses = head.loss_by_feat(cls, d4, ctr, gts, METAS)
        out["centernesses"] = [c.half() for c in ctr]
        if family == "atss":
            anchors, valid = head.get_anchors(sizes, METAS, device="cpu")
            tgt = head.get_targets(anchors, valid, gts, METAS)
            anchor_lv, labels, label_weights, bbox_targets, _, avg_factor = tgt
            level_anchors = anchors[0]
        else:
            points = head.prior_generator.grid_priors(sizes, device="cpu")
            labels_l, targets_l = head.get_targets(points, gts)
            level_anchors = points
    # Per level, the GFL-ized box loss on the positives, composed from mmdet pieces in the LD code's way.
    per_level_bbox, per_level_ctr_sum, ctr_targets = [], [], []
    for lvl in range(len(sizes)):
        s = STRIDES[lvl]
        reg = reg68[lvl].permute(0, 2, 3, 1).reshape(-1, 68)
        if family == "fcos":
            lab = labels_l[lvl]
            dist = targets_l[lvl]
            pts = level_anchors[lvl].repeat(2, 1)
            pos = ((lab >= 0) & (lab < NUM_CLASSES)).nonzero().reshape(-1)
            c_t = head.centerness_target(dist[pos])
            from mmdet.structures.bbox import distance2bbox

            pred = integral_boxes(reg[pos], pts[pos] / s)
            target = distance2bbox(pts[pos] / s, dist[pos] / s)
            weight = c_t
        else:
            lab = labels[lvl].reshape(-1)
            anc = (anchor_lv[lvl] if family == "atss" else torch.stack([level_anchors[lvl]] * 2)).reshape(
                -1, 4
            )
            pos = ((lab >= 0) & (lab < NUM_CLASSES)).nonzero().reshape(-1)
            gt = bbox_targets[lvl].reshape(-1, 4)[pos]
            centre = torch.stack([(anc[pos, 0] + anc[pos, 2]) / 2, (anc[pos, 1] + anc[pos, 3]) / 2], -1)
            if family == "retina":
                reg = reg68[lvl].permute(0, 2, 3, 1).reshape(-1, 68)
                weight = torch.ones(len(pos))
                c_t = torch.zeros(0)
            else:
                c_t = head.centerness_target(anc[pos], gt)
                weight = c_t
            pred = integral_boxes(reg[pos], centre / s)
            target = gt / s
        giou = GIoULoss(loss_weight=1.0)
        if len(pos) > 0:
            value = giou(pred, target, weight=weight, reduction_override="none")
        else:
            value = torch.zeros(0)
        per_level_bbox.append(value)
        per_level_ctr_sum.append(weight.sum() if family != "retina" else torch.tensor(float(len(pos))))
        ctr_targets.append(c_t)
    out["giou_per_positive"] = per_level_bbox
    out["centerness_targets"] = ctr_targets
    out["mmdet_losses"] = {k: (torch.stack(v) if isinstance(v, list) else v) for k, v in losses.items()}
    if family == "fcos":
        out["labels"] = [lab.int() for lab in labels_l]
        out["bbox_targets"] = targets_l
    else:
        out["labels"] = [lab.int() for lab in labels]
        out["label_weights"] = label_weights
        out["bbox_targets"] = bbox_targets
        out["avg_factor"] = float(avg_factor)
    out["giou"] = {"retina": 2.0, "atss": 2.0, "fcos": 1.0}[family]
    del giou
    return out


def make_losses() -> dict[str, Any]:
    gen = torch.Generator().manual_seed(20)
    gts = loss_gts()
    return {
        "featmap_sizes": [list(s) for s in featmap_sizes(BATCH_H, BATCH_W)],
        "metas": [{k: list(v) for k, v in m.items()} for m in METAS],
        "gt_bboxes": [g[0] for g in gts],
        "gt_labels": [g[1] for g in gts],
        "num_classes": NUM_CLASSES,
        "families": {f: make_family_case(f, gen) for f in ("retina", "atss", "fcos")},
    }


# --------------------------------------------------------------------------------------------- FPN
def make_fpn() -> dict[str, Any]:
    """mmdet FPN on C3-C5 with the three families' extra-level settings, random (stored) weights."""
    from mmdet.models.necks import FPN

    gen = torch.Generator().manual_seed(7)
    in_channels = [8, 16, 32]
    feats = [
        torch.randn((1, c, h, w), generator=gen) for c, (h, w) in zip(in_channels, [(8, 12), (4, 6), (2, 3)])
    ]
    out: dict[str, Any] = {"in_channels": in_channels, "out_channels": 16, "inputs": feats, "variants": {}}
    for name, kwargs in (
        ("retina_on_input", dict(add_extra_convs="on_input")),
        ("atss_on_output", dict(add_extra_convs="on_output")),
        ("fcos_on_output_relu", dict(add_extra_convs="on_output", relu_before_extra_convs=True)),
    ):
        fpn = FPN(in_channels, 16, num_outs=5, **kwargs)
        fpn.init_weights()
        with torch.no_grad():
            for p in fpn.parameters():
                p.copy_(torch.randn(p.shape, generator=gen) * 0.2)
            outs = fpn(feats)
        out["variants"][name] = {"state_dict": fpn.state_dict(), "outputs": list(outs)}
    return out


# ------------------------------------------------------------------------------------- predictions
class CentreDistanceCoder:
    """Stand-in for the GFL-ized heads' decoding: distances (already Integral x stride, pixels) from
    the anchor *centre* (mmdet's anchor heads would decode deltas)."""

    encode_size = 4

    def decode(self, priors: torch.Tensor, pred: torch.Tensor, max_shape: Any = None) -> torch.Tensor:
        from mmdet.structures.bbox import distance2bbox

        centres = torch.stack([(priors[:, 0] + priors[:, 2]) / 2, (priors[:, 1] + priors[:, 3]) / 2], -1)
        return distance2bbox(centres, pred, max_shape)


def make_predict() -> dict[str, Any]:
    """mmdet's post-processing order (BaseDenseHead._predict_by_feat_single + _bbox_post_process) on
    the loss cases' logits; the 68 logits per prior are turned into pixel distances first."""
    from mmdet.models.dense_heads.gfl_head import Integral
    from mmdet.registry import MODELS
    from mmengine.config import ConfigDict

    losses = torch.load(OUT / "losses.pt", weights_only=True)
    integral = Integral(16)
    out: dict[str, Any] = {}
    for family in ("retina", "atss", "fcos"):
        case = losses["families"][family]
        cls = [c.float() for c in case["cls_scores"]]
        a = 9 if family == "retina" else 1
        dist = []
        for lvl, r in enumerate(case["bbox_preds"]):
            b, _, h, w = r.shape
            d = integral(r.float().permute(0, 2, 3, 1).reshape(-1, 68)) * STRIDES[lvl]
            dist.append(d.reshape(b, h, w, a * 4).permute(0, 3, 1, 2))
        common = dict(num_classes=NUM_CLASSES, in_channels=32, feat_channels=32, stacked_convs=1)
        if family == "retina":
            head = MODELS.build(dict(type="RetinaHead", anchor_generator=RETINA_ANCHORS, **common))
            head.bbox_coder = CentreDistanceCoder()
        elif family == "atss":
            head = MODELS.build(dict(type="ATSSHead", anchor_generator=ATSS_ANCHORS, **common))
            head.bbox_coder = CentreDistanceCoder()
        else:
            head = MODELS.build(dict(type="FCOSHead", strides=STRIDES, norm_cfg=None, **common))
        variants = {}
        for vname, nms_pre, max_per_img, rescale in (
            ("default", 1000, 100, False),
            ("small_nms_pre_rescale", 30, 20, True),
        ):
            cfg = ConfigDict(
                nms_pre=nms_pre,
                min_bbox_size=0,
                score_thr=0.05,
                nms=dict(type="nms", iou_threshold=0.6),
                max_per_img=max_per_img,
            )
            score_factors = [c.float() for c in case["centernesses"]] if family != "retina" else None
            results = head.predict_by_feat(
                cls,
                dist,
                score_factors=score_factors,
                batch_img_metas=METAS,
                cfg=cfg,
                rescale=rescale,
                with_nms=True,
            )
            variants[vname] = {
                "nms_pre": nms_pre,
                "max_per_img": max_per_img,
                "rescale": rescale,
                "results": [{"bboxes": r.bboxes, "scores": r.scores, "labels": r.labels} for r in results],
            }
        out[family] = variants
    return out


def main() -> None:
    install_fake_mmcv_ext()
    from mmdet.utils import register_all_modules

    register_all_modules()
    torch.manual_seed(0)
    OUT.mkdir(parents=True, exist_ok=True)
    meta = versions()
    for name, fn in (
        ("priors", make_priors),
        ("assign", make_assign),
        ("losses", make_losses),
        ("fpn", make_fpn),
        ("predict", make_predict),
    ):
        data = fn()
        data["versions"] = meta
        torch.save(data, OUT / f"{name}.pt")
        print(name, (OUT / f"{name}.pt").stat().st_size)


if __name__ == "__main__":
    main()
