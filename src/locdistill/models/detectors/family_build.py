"""Build RetinaGFL / ATSS-GFL / FCOS-GFL from the model section of a config (the only reader of it
for these families)."""

from __future__ import annotations

from locdistill.config import ModelConfig
from locdistill.models.backbones import build_backbone
from locdistill.models.detectors.atss_gfl import ATSSGFL
from locdistill.models.detectors.family import FamilyDetector, FamilySettings
from locdistill.models.detectors.fcos_gfl import FCOSGFL
from locdistill.models.detectors.retina_gfl import RetinaGFL
from locdistill.models.fpn import FPN
from locdistill.models.heads.atss_gfl import ATSSGFLHead
from locdistill.models.heads.fcos_gfl import FCOSGFLHead
from locdistill.models.heads.retina_gfl import RetinaGFLHead
from locdistill.models.postprocess import PostProcessConfig


def build_family(cfg: ModelConfig) -> FamilyDetector:
    """The detector of ``cfg.type`` (``retina_gfl``, ``atss_gfl`` or ``fcos_gfl``)."""
    backbone = build_backbone(cfg.backbone)
    n = cfg.neck
    neck = FPN(
        list(backbone.out_channels), n.out_channels, n.num_outs, n.add_extra_convs, n.relu_before_extra_convs
    )
    h = cfg.head
    if len(h.strides) != n.num_outs:
        raise ValueError(
            f"model.head.strides has {len(h.strides)} entries but the FPN makes {n.num_outs} levels"
        )
    if cfg.type == "fcos_gfl" and len(h.regress_ranges) != n.num_outs:
        raise ValueError(
            f"model.head.regress_ranges has {len(h.regress_ranges)} entries but the FPN makes "
            f"{n.num_outs} levels"
        )
    settings = FamilySettings(
        octave_base_scale=h.octave_base_scale,
        scales_per_octave=h.scales_per_octave,
        anchor_ratios=list(h.anchor_ratios),
        atss_topk=h.atss_topk,
        pos_iou_thr=h.pos_iou_thr,
        neg_iou_thr=h.neg_iou_thr,
        min_pos_iou=h.min_pos_iou,
        regress_ranges=[list(r) for r in h.regress_ranges],
        center_sampling=h.center_sampling,
        center_sample_radius=h.center_sample_radius,
        focal_gamma=h.focal_gamma,
        focal_alpha=h.focal_alpha,
        focal_weight=h.focal_weight,
        giou_weight=h.giou_weight,
        centerness_weight=h.centerness_weight,
    )
    t = cfg.test
    test_cfg = PostProcessConfig(t.score_thr, t.nms_pre, t.nms.type, t.nms.iou_threshold, t.max_per_img)
    common = dict(num_classes=h.num_classes, in_channels=n.out_channels, feat_channels=h.feat_channels)
    if cfg.type == "retina_gfl":
        head = RetinaGFLHead(
            **common,
            stacked_convs=h.stacked_convs,
            num_anchors=len(h.anchor_ratios) * h.scales_per_octave,
            reg_max=h.reg_max,
        )
        return RetinaGFL(backbone, neck, head, h.strides, settings, test_cfg, t.order)
    head_cls = ATSSGFLHead if cfg.type == "atss_gfl" else FCOSGFLHead
    c_head = head_cls(
        **common,
        stacked_convs=h.stacked_convs,
        num_levels=n.num_outs,
        reg_max=h.reg_max,
        norm_groups=h.norm_groups,
    )
    if cfg.type == "atss_gfl":
        if len(h.anchor_ratios) * h.scales_per_octave != 1:
            raise ValueError(
                "model.head: atss_gfl has one anchor per location (anchor_ratios [1], scales_per_octave 1)"
            )
        return ATSSGFL(backbone, neck, c_head, h.strides, settings, test_cfg, t.order)
    if cfg.type == "fcos_gfl":
        return FCOSGFL(backbone, neck, c_head, h.strides, settings, test_cfg, t.order)
    raise ValueError(f"model.type: {cfg.type!r} is not one of retina_gfl, atss_gfl, fcos_gfl")
