"""The ``distill`` section of a config: LD terms (Main LD, VLR LD, Main KD), CrossKD and the teacher
cache. Part of :mod:`locdistill.config` (re-exported there); plain dataclasses, no behaviour."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal


@dataclass
class LDTermConfig:
    """One distillation term: on/off, loss weight, softmax temperature."""

    enabled: bool = False
    weight: float = 0.25
    temperature: float = 10.0


@dataclass
class VLRConfig(LDTermConfig):
    """VLR LD: anchors whose DIoU with a GT lies in ``[alpha_low * alpha, alpha)`` (alpha = the GT's
    ATSS threshold). ``diou``: ``official`` (overlap / anchor area minus centre penalty, as the
    reference code) or ``true`` (the real DIoU). The summed loss is divided by ``divisor``."""

    alpha_low: float = 0.25
    divisor: float = 16.0
    diou: Literal["official", "true"] = "official"


@dataclass
class CrossKDConfig:
    """CrossKD (Wang et al., CVPR 2024): the student's head features cross into the frozen teacher head.

    The student's tower features after its first ``layer`` convs (after that conv's ReLU as the authors'
    code computes it, ``hold: post_relu``; ``hold: pre_relu`` crosses before that ReLU, a variant that an
    earlier reading of their code gave; the FPN maps at 0) are standardised per channel and re-scaled to
    the teacher's features at ``teacher_layer`` (default ``layer``), then run through the teacher's
    remaining tower convs and output convs. The resulting cross-head predictions are distilled to the
    teacher's own: ``cls_weight`` x KD quality focal loss (target the teacher's sigmoid, exponent
    ``cls_beta``) at every valid anchor, and ``reg_weight`` x KL (temperature ``reg_temperature``, summed
    over bins) of the edge distributions weighted by the teacher's max class score; ``bbox_weight`` > 0
    adds GIoU between the decoded boxes (the authors' later configs: reg 3 + bbox 2; the published GFL
    row: reg 4, no GIoU). ``adapter``: a learned 1x1 conv per tower when the student's and teacher's
    widths differ there."""

    enabled: bool = False
    layer: int = 3
    teacher_layer: int | None = None
    hold: Literal["post_relu", "pre_relu"] = "post_relu"
    adapter: bool = False
    cls_weight: float = 1.0
    cls_beta: float = 1.0
    reg_weight: float = 4.0
    reg_temperature: float = 1.0
    bbox_weight: float = 0.0


@dataclass
class DistillConfig:
    """Localization distillation from a frozen teacher.

    ``teacher_config``: the teacher's config file (relative to this config's folder first; empty: the
    one stored in the teacher checkpoint); ``teacher_checkpoint``: its weights (locdistill, safetensors or
    mmdetection), or ``zoo:NAME``, a released checkpoint (``locdistill zoo``; its config is taken
    when ``teacher_config`` is empty). ``normalize``: ``official`` reproduces the reference exactly
    (Main/VLR LD not divided by anything, so it grows with images per GPU); ``invariant`` keeps the
    per-image magnitude of official at ``reference_images_per_gpu`` images per GPU for any batch size.
    ``crosskd``: see :class:`CrossKDConfig` (it composes with the LD terms).

    ``cache``: a folder for the teacher's outputs (:mod:`locdistill.distill.teacher_cache`), stored per
    (image, flip, input size) in ``cache_dtype`` at ``all`` anchors or only at the ``needed`` ones
    (positives and VLR: Main/VLR LD and Main KD only; CrossKD reads every anchor); later epochs read
    them instead of running the teacher, and a miss runs it. Empty: no cache.
    """

    teacher_config: str = ""
    teacher_checkpoint: str = ""
    main_ld: LDTermConfig = field(default_factory=lambda: LDTermConfig(True, 0.25, 10.0))
    vlr_ld: VLRConfig = field(default_factory=lambda: VLRConfig(False, 0.25, 10.0))
    main_kd: LDTermConfig = field(default_factory=lambda: LDTermConfig(False, 10.0, 2.0))
    normalize: Literal["official", "invariant"] = "official"
    reference_images_per_gpu: float = 3.0
    crosskd: CrossKDConfig = field(default_factory=CrossKDConfig)
    cache: str = ""
    cache_dtype: Literal["float16", "float32"] = "float16"
    cache_anchors: Literal["all", "needed"] = "all"
    ld_rows: Literal["auto", "prior", "edge"] = "auto"
    """Rows of the LD softmax (Main and second-region LD): ``auto`` is the student family's own
    (``LDSpec.row``: RetinaGFL one ``4*(R+1)``-way row per anchor as the original, the others one
    ``R+1``-way row per edge); ``prior`` or ``edge`` force one (``edge`` is RetinaGFL's per-edge option,
    docs/families.md)."""
