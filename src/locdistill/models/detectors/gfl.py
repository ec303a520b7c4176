"""The GFL detector: backbone -> FPN -> GFL head, with explicit ``loss`` and ``predict``.

``forward`` always returns raw head outputs, so an eval-mode teacher hands its distributions to LD
with no mode tricks::

    outputs = model(batch.images)                       # HeadOutputs
    losses = model.loss(outputs, batch.targets, batch.metas)
    detections = model.predict(outputs, batch.metas)    # list[Detections]

``loss`` assigns the anchors itself (``model.assign``, ATSS) unless given the :class:`Assignment`, and
gathers the positives unless given them: the Distiller computes both once and shares them with LD.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from locdistill.config import ModelConfig
from locdistill.models.assigners.assignment import Assignment, build_assignment
from locdistill.models.backbones import build_backbone
from locdistill.models.detectors.base import DenseDetector, FlatOutputs, article
from locdistill.models.fpn import FPN
from locdistill.models.heads.gfl import GFLHead
from locdistill.models.heads.outputs import HeadOutputs, flatten_levels
from locdistill.models.integral import Integral
from locdistill.models.losses.gfl import PositiveSamples, gfl_loss, positive_samples
from locdistill.models.postprocess import PostProcessConfig, postprocess
from locdistill.models.priors.anchors import AnchorGrid
from locdistill.structures import Detections, ImageMeta, Targets, check_targets, targets_look_valid


class GFL(DenseDetector[HeadOutputs]):
    """Generalized Focal Loss detector (v1; v2 when the head has DGQP): family ``GFL`` of the
    dense-detector contract (:mod:`locdistill.models.detectors.base`; LD as the reference ``LDHead``,
    the default :class:`~locdistill.models.detectors.base.LDSpec`).

    Args:
        backbone: returns C3-C5; has ``out_channels``, ``mean`` and ``std``.
        neck: the FPN.
        head: the GFL head.
        strides: one per FPN level.
        octave_base_scale: anchor side in strides.
        atss_topk: ATSS candidates per level.
        qfl_beta, qfl_weight, giou_weight, dfl_weight: loss settings.
        test_cfg: post-processing settings.
    """

    def __init__(
        self,
        backbone: nn.Module,
        neck: FPN,
        head: GFLHead,
        strides: list[int],
        octave_base_scale: float = 8.0,
        atss_topk: int = 9,
        qfl_beta: float = 2.0,
        qfl_weight: float = 1.0,
        giou_weight: float = 2.0,
        dfl_weight: float = 0.25,
        test_cfg: PostProcessConfig | None = None,
    ) -> None:
        super().__init__()
        self.backbone, self.neck, self.head = backbone, neck, head
        self.strides = list(strides)
        self.octave_base_scale = octave_base_scale
        self.atss_topk = atss_topk
        self.qfl_beta, self.qfl_weight = qfl_beta, qfl_weight
        self.giou_weight, self.dfl_weight = giou_weight, dfl_weight
        self.test_cfg = test_cfg or PostProcessConfig()
        self.integral = Integral(head.reg_max)
        self._anchor_cache: dict[tuple, AnchorGrid] = {}

    family = "GFL"

    @property
    def num_classes(self) -> int:
        return self.head.num_classes

    @property
    def num_levels(self) -> int:
        return len(self.head.scales)

    @property
    def reg_max(self) -> int:
        return self.head.reg_max

    @property
    def mean(self) -> tuple[float, float, float]:
        return tuple(self.backbone.mean)  # type: ignore[arg-type]

    @property
    def std(self) -> tuple[float, float, float]:
        return tuple(self.backbone.std)  # type: ignore[arg-type]

    def forward(self, images: Tensor) -> HeadOutputs:
        """``[B, 3, H, W]`` normalised images -> raw :class:`HeadOutputs` (no decoding, no loss)."""
        return self.head(self.features(images))

    def features(self, images: Tensor) -> list[Tensor]:
        """The FPN maps ``[B, F, H_l, W_l]``, stride 8 upward."""
        return self.neck(self.backbone(images))

    def flatten(self, outputs: HeadOutputs) -> FlatOutputs:
        """``[B, A, C]`` class and ``[B, A, 4*(R+1)]`` distribution logits, one row per anchor."""
        return FlatOutputs(flatten_levels(outputs.cls_scores), flatten_levels(outputs.bbox_preds))

    def prior_layout(self) -> list[tuple[str, object]]:
        """Strides and the anchor side: equal for a teacher whose anchors are the student's."""
        return [("strides", list(self.strides)), ("anchor scale (octave_base_scale)", self.octave_base_scale)]

    def crosskd_head(self) -> GFLHead:
        """The head, which CrossKD can split at any tower depth."""
        return self.head

    def anchor_grid(self, outputs: HeadOutputs) -> AnchorGrid:
        """The :class:`AnchorGrid` of the feature sizes of ``outputs``, built once per size and device."""
        sizes = [(int(c.shape[-2]), int(c.shape[-1])) for c in outputs.cls_scores]
        device = outputs.cls_scores[0].device
        key = (tuple(sizes), str(device))
        grid = self._anchor_cache.get(key)
        if grid is None:
            if len(self._anchor_cache) >= 32:
                self._anchor_cache.clear()
            grid = self._anchor_cache[key] = AnchorGrid(sizes, self.strides, self.octave_base_scale, device)
        return grid

    def anchors(self, outputs: HeadOutputs) -> list[Tensor]:
        """Per-level anchors ``[H_l*W_l, 4]`` for the feature sizes of ``outputs`` (cached)."""
        return self.anchor_grid(outputs).per_level

    def assign(self, outputs: HeadOutputs, targets: list[Targets], metas: list[ImageMeta]) -> Assignment:
        """ATSS assignment of every anchor of the batch to the ground truth ``targets``; checks the
        targets first (clear errors)."""
        if not targets_look_valid(targets, self.num_classes):  # one host sync for the whole batch
            for t, m in zip(targets, metas):
                check_targets(t, m, self.num_classes)
        grid = self.anchor_grid(outputs)
        return build_assignment(
            grid.per_level,
            grid.featmap_sizes,
            self.strides,
            targets,
            metas,
            self.num_classes,
            self.atss_topk,
            grid=grid,
        )

    def positive_samples(self, outputs: HeadOutputs, assignment: Assignment) -> PositiveSamples:
        """What the box losses (and LD) need at the positives of ``assignment``, in float32."""
        outputs = outputs.float()
        return positive_samples(
            flatten_levels(outputs.cls_scores), flatten_levels(outputs.bbox_preds), assignment, self.integral
        )

    def loss(
        self,
        outputs: HeadOutputs,
        targets: list[Targets],
        metas: list[ImageMeta],
        assignment: Assignment | None = None,
        positives: PositiveSamples | None = None,
    ) -> dict[str, Tensor]:
        """Training losses ``loss_cls`` (QFL), ``loss_bbox`` (GIoU), ``loss_dfl``, each summed over levels.

        ``assignment`` (of these outputs to ``targets``) and ``positives`` (:meth:`positive_samples`) are
        computed here unless given.
        """
        if assignment is None:
            assignment = self.assign(outputs, targets, metas)
        out = self.loss_per_level(outputs, assignment, positives)
        return {k: out[k].sum() for k in ("loss_cls", "loss_bbox", "loss_dfl")}

    def loss_per_level(
        self, outputs: HeadOutputs, assignment: Assignment, positives: PositiveSamples | None = None
    ) -> dict[str, Tensor]:
        """The per-level values of :func:`locdistill.models.losses.gfl.gfl_loss`."""
        return gfl_loss(
            outputs.float(),
            assignment,
            self.integral,
            self.qfl_beta,
            self.qfl_weight,
            self.giou_weight,
            self.dfl_weight,
            positives,
        )

    @torch.no_grad()
    def predict(self, outputs: HeadOutputs, metas: list[ImageMeta], rescale: bool = True) -> list[Detections]:
        """Detections per image; with ``rescale`` in original-image pixels."""
        outputs = outputs.float()
        return postprocess(
            outputs, self.anchors(outputs), self.strides, metas, self.integral, self.test_cfg, rescale
        )


def require_gfl(model: DenseDetector[Any], what: str) -> GFL:
    """``model`` as a :class:`GFL`; ``ValueError`` naming ``what`` and the family for any other family
    (for the parts that read GFL's own layout: ONNX export, ``analyze``, the demo)."""
    if not isinstance(model, GFL):
        raise ValueError(
            f"{what} supports GFL detectors only; this is {article(model.family)} {model.family} detector"
        )
    return model


def build_gfl(cfg: ModelConfig) -> GFL:
    """Build a :class:`GFL` from the model section of a config (the only place that reads it)."""
    backbone = build_backbone(cfg.backbone)
    neck = FPN(list(backbone.out_channels), cfg.neck.out_channels, cfg.neck.num_outs)
    h = cfg.head
    if len(h.strides) != cfg.neck.num_outs:
        raise ValueError(
            f"model.head.strides has {len(h.strides)} entries but the FPN makes {cfg.neck.num_outs} levels"
        )
    head = GFLHead(
        num_classes=h.num_classes,
        in_channels=cfg.neck.out_channels,
        feat_channels=h.feat_channels,
        stacked_convs=h.stacked_convs,
        num_levels=cfg.neck.num_outs,
        reg_max=h.reg_max,
        norm_groups=h.norm_groups,
        dgqp=h.dgqp,
        dgqp_topk=h.dgqp_topk,
        dgqp_channels=h.dgqp_channels,
    )
    t = cfg.test
    test_cfg = PostProcessConfig(t.score_thr, t.nms_pre, t.nms.type, t.nms.iou_threshold, t.max_per_img)
    return GFL(
        backbone,
        neck,
        head,
        strides=h.strides,
        octave_base_scale=h.octave_base_scale,
        atss_topk=h.atss_topk,
        qfl_beta=h.qfl_beta,
        qfl_weight=h.qfl_weight,
        giou_weight=h.giou_weight,
        dfl_weight=h.dfl_weight,
        test_cfg=test_cfg,
    )
