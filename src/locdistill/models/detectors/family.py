"""What RetinaGFL, ATSS-GFL and FCOS-GFL share: backbone -> FPN -> head, the prior cache, the
positives, post-processing, and the builder that reads the model config.

The families differ in their priors, assignment and objective (``retina_gfl.py``, ``atss_gfl.py``,
``fcos_gfl.py`` beside this file); each implements :meth:`FamilyDetector.priors`,
:meth:`FamilyDetector.assign` and :meth:`FamilyDetector.loss_per_level`. As GFL::

    outputs = model(batch.images)                       # FamilyOutputs (raw logits)
    losses = model.loss(outputs, batch.targets, batch.metas)
    detections = model.predict(outputs, batch.metas)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from locdistill.models.assigners.assignment import Assignment
from locdistill.models.detectors.base import DenseDetector, FlatOutputs
from locdistill.models.family_postprocess import PostProcessOrder, family_postprocess
from locdistill.models.fpn import FPN
from locdistill.models.heads.atss_gfl import CenternessGFLHead
from locdistill.models.heads.family_outputs import FamilyOutputs
from locdistill.models.heads.retina_gfl import RetinaGFLHead
from locdistill.models.integral import Integral
from locdistill.models.losses.common import flatten_priors
from locdistill.models.losses.gfl import PositiveSamples, positive_samples
from locdistill.models.postprocess import PostProcessConfig
from locdistill.structures import Detections, ImageMeta, Targets, check_targets, targets_look_valid


@dataclass
class FamilySettings:
    """Priors, assignment and loss settings (the LD code's defaults; each family reads its own)."""

    octave_base_scale: float = 8.0
    scales_per_octave: int = 1
    anchor_ratios: list[float] = field(default_factory=lambda: [1.0])
    atss_topk: int = 9
    pos_iou_thr: float = 0.5
    neg_iou_thr: float = 0.4
    min_pos_iou: float = 0.0
    regress_ranges: list[list[float]] = field(
        default_factory=lambda: [[-1.0, 64.0], [64.0, 128.0], [128.0, 256.0], [256.0, 512.0], [512.0, 1e8]]
    )
    center_sampling: bool = True
    center_sample_radius: float = 1.5
    focal_gamma: float = 2.0
    focal_alpha: float = 0.25
    focal_weight: float = 1.0
    giou_weight: float = 2.0
    centerness_weight: float = 1.0


class FamilyDetector(DenseDetector[FamilyOutputs]):
    """Base of the three families (the :class:`~locdistill.models.detectors.base.DenseDetector` contract;
    subclasses set ``family``, ``ld_spec`` and their priors, assignment and objective).

    Args:
        backbone: returns C3-C5; has ``out_channels``, ``mean`` and ``std``.
        neck: the FPN; head: the family's head (returns :class:`FamilyOutputs`).
        strides: one per FPN level.
        settings: :class:`FamilySettings`.
        test_cfg: post-processing settings; order: ``original`` or ``mmdet3``.
    """

    loss_keys: tuple[str, ...] = ("loss_cls", "loss_bbox")

    def __init__(
        self,
        backbone: nn.Module,
        neck: FPN,
        head: RetinaGFLHead | CenternessGFLHead,
        strides: list[int],
        settings: FamilySettings,
        test_cfg: PostProcessConfig | None = None,
        order: PostProcessOrder = "original",
    ) -> None:
        super().__init__()
        self.backbone, self.neck, self.head = backbone, neck, head
        self.strides = list(strides)
        self.settings = settings
        self.test_cfg = test_cfg or PostProcessConfig()
        self.order: PostProcessOrder = order
        self.integral = Integral(self.reg_max)
        self._prior_cache: dict[tuple, Any] = {}

    @property
    def num_classes(self) -> int:
        return self.head.num_classes

    @property
    def reg_max(self) -> int:
        return self.head.reg_max

    @property
    def num_levels(self) -> int:
        return len(self.strides)

    @property
    def priors_per_location(self) -> int:
        return self.head.num_anchors

    @property
    def mean(self) -> tuple[float, float, float]:
        return tuple(self.backbone.mean)  # type: ignore[arg-type]

    @property
    def std(self) -> tuple[float, float, float]:
        return tuple(self.backbone.std)  # type: ignore[arg-type]

    def forward(self, images: Tensor) -> FamilyOutputs:
        """``[B, 3, H, W]`` normalised images -> raw :class:`FamilyOutputs` (no decoding, no loss)."""
        return self.head(self.features(images))

    def features(self, images: Tensor) -> list[Tensor]:
        """The FPN maps ``[B, F, H_l, W_l]``."""
        return self.neck(self.backbone(images))

    def flatten(self, outputs: FamilyOutputs) -> FlatOutputs:
        """One row per prior (:mod:`locdistill.models.priors.multi_anchors` order), no dtype change."""
        cls, reg = self.flat_outputs(outputs)
        return FlatOutputs(cls, reg)

    def prior_layout(self) -> list[tuple[str, object]]:
        """What a teacher must share with the student for their priors to correspond one to one."""
        s = self.settings
        return [
            ("strides", list(self.strides)),
            ("anchor scale (octave_base_scale)", s.octave_base_scale),
            ("anchor scales per octave", s.scales_per_octave),
            ("anchor ratios", list(s.anchor_ratios)),
        ]

    # -------------------------------------------------------------------------- family specifics
    def build_priors(self, sizes: list[tuple[int, int]], device: torch.device) -> Any:
        """The family's prior grid for feature sizes ``sizes`` (cached by :meth:`priors`)."""
        raise NotImplementedError

    def prior_centres(self, grid: Any) -> list[Tensor]:
        """``[H_l*W_l*A, 2]`` prior centres per level, pixels, of a :meth:`priors` grid."""
        raise NotImplementedError

    def assign_checked(self, grid: Any, targets: list[Targets], metas: list[ImageMeta]) -> Assignment:
        raise NotImplementedError

    def loss_per_level(
        self, outputs: FamilyOutputs, assignment: Assignment, positives: PositiveSamples | None = None
    ) -> dict[str, Tensor]:
        """Per-level ``[L]`` values of each of :attr:`loss_keys` (and normalisers)."""
        raise NotImplementedError

    # ------------------------------------------------------------------------------- shared part
    def priors(self, outputs: FamilyOutputs) -> Any:
        """The prior grid of the feature sizes of ``outputs``, built once per size and device."""
        sizes = [(int(c.shape[-2]), int(c.shape[-1])) for c in outputs.cls_scores]
        device = outputs.cls_scores[0].device
        key = (tuple(sizes), str(device))
        grid = self._prior_cache.get(key)
        if grid is None:
            if len(self._prior_cache) >= 32:
                self._prior_cache.clear()
            grid = self._prior_cache[key] = self.build_priors(sizes, device)
        return grid

    def assign(self, outputs: FamilyOutputs, targets: list[Targets], metas: list[ImageMeta]) -> Assignment:
        """The family's assignment of every prior of the batch; checks the targets first."""
        if not targets_look_valid(targets, self.num_classes):
            for t, m in zip(targets, metas):
                check_targets(t, m, self.num_classes)
        return self.assign_checked(self.priors(outputs), targets, metas)

    def flat_outputs(self, outputs: FamilyOutputs) -> tuple[Tensor, Tensor]:
        """``[B, N, C]`` class logits and ``[B, N, 4*(R+1)]`` distribution logits, one row per prior."""
        return (
            flatten_priors(outputs.cls_scores, self.num_classes),
            flatten_priors(outputs.bbox_preds, 4 * (self.reg_max + 1)),
        )

    def positive_samples(self, outputs: FamilyOutputs, assignment: Assignment) -> PositiveSamples:
        """What the box loss (and LD) need at the positives, in float32."""
        cls, reg = self.flat_outputs(outputs.float())
        return positive_samples(cls, reg, assignment, self.integral)

    def loss(
        self,
        outputs: FamilyOutputs,
        targets: list[Targets],
        metas: list[ImageMeta],
        assignment: Assignment | None = None,
        positives: PositiveSamples | None = None,
    ) -> dict[str, Tensor]:
        """Training losses (:attr:`loss_keys`), each summed over levels."""
        if assignment is None:
            assignment = self.assign(outputs, targets, metas)
        out = self.loss_per_level(outputs.float(), assignment, positives)
        return {k: out[k].sum() for k in self.loss_keys}

    @torch.no_grad()
    def predict(
        self, outputs: FamilyOutputs, metas: list[ImageMeta], rescale: bool = True
    ) -> list[Detections]:
        """Detections per image (:mod:`locdistill.models.family_postprocess`, in :attr:`order`)."""
        outputs = outputs.float()
        centres = self.prior_centres(self.priors(outputs))
        return family_postprocess(
            outputs,
            centres,
            self.strides,
            metas,
            self.integral,
            self.num_classes,
            self.test_cfg,
            rescale,
            self.order,
        )
