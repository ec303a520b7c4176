"""Every teacher config the LD configs name (and every DCN config) builds a model into which a state dict
with the reference checkpoint's key and shape layout loads strictly, after our mmdetection key mapping.

The expected layout is generated here from the reference configs' facts alone (backbone type and
depth, ``dcn`` type and ``stage_with_dcn``, head type, classes), following mmdetection's module
definitions, not from our model code. Where each fact comes from:

* GFL v1 COCO: mmdetection ``configs/gfl/gfl_r50_fpn_1x_coco.py`` (ResNet-50, FPN ``start_level=1``,
  ``add_extra_convs='on_output'``, 5 outputs, ``GFLHead`` 4 stacked GN convs, ``reg_max=16``),
  ``gfl_r101_fpn_mstrain_2x_coco.py`` / ``gfl_r50_fpn_mstrain_2x_coco.py`` (multi-scale 480-800),
  ``gfl_r101_fpn_dconv_c3-c5_mstrain_2x_coco.py`` (``dcn=dict(type='DCN')``, i.e. DCN v1 without mask,
  ``stage_with_dcn=(False, True, True, True)``; the same in the mmdetection 2.x and 3.x versions) and
  ``gfl_x101_32x4d_fpn_dconv_c4-c5_mstrain_2x_coco.py`` (ResNeXt-101 32x4d, ``type='DCN'``,
  ``stage_with_dcn=(False, False, True, True)``).
* GFL v1 R-18 / R-34 (LD repository ``configs/gfl/gfl_r18_fpn_1x_coco.py``, ``gfl_r34_fpn_1x_coco.py``):
  BasicBlock ResNets, FPN ``in_channels=[64, 128, 256, 512]``; the R-34 teacher is our own chain stage.
* GFL v1 VOC (LD repository ``configs/gfl/gfl_r101_fpn_voc.py``): R-101, 20 classes, single scale.
  No public config of the VOC R-101-DCN teacher was found; its backbone is taken as mmdetection's
  ``gfl_r101_fpn_dconv_c3-c5`` (DCN v1, c3-c5).
* GFL v2: GFocalV2 (implus/GFocalV2) ``configs/gfocal/gfocal_{r50,r101}_fpn_ms2x.py`` and
  ``gfocal_{r101,x101,r2n101}_dcn_fpn_ms2x.py``: ``dcn=dict(type='DCN')`` (v1) everywhere, R-101 DCN on
  c3-c5, X-101-32x4d and Res2Net-101 (``res2net101_v1d_26w_4s``) DCN on c4-c5 only, multi-scale
  training ``img_scale=[(1333, 480), (1333, 960)]``; ``GFocalHead`` with ``reg_topk=4``, ``add_mean=True``,
  ``reg_channels=64`` (so ``reg_conf.0`` is a 1x1 conv from 4 * 5 = 20 channels), layers checked in the
  LD repository's ``mmdet/models/dense_heads/gfocal_head.py``.
* Module layouts: mmdetection ``backbones/resnet.py`` (``conv1``/``bn1`` stem, Bottleneck ``conv1-3`` with
  ``downsample.0/1`` in each stage's first block), ``resnext.py`` (``width = planes * 4 / 64 * 32``,
  grouped ``conv2``), ``res2net.py`` (deep stem ``stem.0/1/3/4/6/7`` of widths 32, 32, 64; ``conv1``
  to ``width * 4``, ``convs.0-2`` / ``bns.0-2`` with ``width = planes * 26 / 64``, ``conv3``; avg-down
  ``downsample.1/2``); mmcv ``DeformConv2dPack`` (``weight`` without bias, ``conv_offset`` with
  ``2 * 3 * 3 = 18`` outputs and a bias; ``ModulatedDeformConv2dPack`` would have 27); FPN
  ``lateral_convs.i.conv`` / ``fpn_convs.i.conv`` with biases; ``GFLHead`` ``{cls,reg}_convs.i.conv``
  (no bias) + ``.gn``, ``gfl_cls``, ``gfl_reg``, ``scales.i.scale`` (0-d) and the ``integral.project``
  buffer.

The generator was cross-checked once against mmdetection 3.3.0 itself (mmcv-lite, whose
``DeformConv2dPack`` builds without compiled ops): for every reference here, the GFL v1 detectors and
the GFL v2 backbones it builds have exactly these keys and shapes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from locdistill.config import load_config
from locdistill.models.detectors.gfl import build_gfl
from locdistill.weights.mmdet_keys import convert_detector_state_dict

CONFIGS = Path(__file__).resolve().parents[2] / "src" / "locdistill" / "configs"
Shape = tuple[int, ...]


@dataclass(frozen=True)
class Reference:
    """The facts of one reference config (see the module docstring for the sources)."""

    backbone: str  # "resnet", "resnext" (32x4d) or "res2net" (26w x 4s, v1d)
    depth: int
    stage_with_dcn: tuple[bool, bool, bool, bool] = (False, False, False, False)
    dcn_type: str = "DCN"  # mmcv's dcn=dict(type=...)
    gflv2: bool = False
    num_classes: int = 80
    multiscale: tuple[int, int] | None = None  # short-side range of multi-scale training


C3_C5 = (False, True, True, True)
C4_C5 = (False, False, True, True)
REFERENCES: dict[str, Reference] = {
    "gfl/gfl_r18_fpn_coco_1x.yaml": Reference("resnet", 18),
    "gfl/gfl_r34_fpn_coco_1x.yaml": Reference("resnet", 34),
    "gfl/gfl_r50_fpn_coco_1x.yaml": Reference("resnet", 50),
    "gfl/gfl_r101_fpn_coco_2x.yaml": Reference("resnet", 101, multiscale=(480, 800)),
    "gfl/gfl_r101_dcn_fpn_coco_2x.yaml": Reference("resnet", 101, C3_C5, multiscale=(480, 800)),
    "gfl/gfl_r101_fpn_voc.yaml": Reference("resnet", 101, num_classes=20),
    "gfl/gfl_r101_dcn_fpn_voc.yaml": Reference("resnet", 101, C3_C5, num_classes=20),
    "gfl/gfl_x101_32x4d_dcn_fpn_coco_1x.yaml": Reference("resnext", 101, C4_C5),
    # the released checkpoints of the zoo (mmdetection configs/gfl/*_ms-2x_coco.py)
    "gfl/gfl_r50_fpn_coco_2x.yaml": Reference("resnet", 50, multiscale=(480, 800)),
    "gfl/gfl_x101_32x4d_fpn_coco_2x.yaml": Reference("resnext", 101, multiscale=(480, 800)),
    "gfl/gfl_x101_32x4d_dcn_fpn_coco_2x.yaml": Reference("resnext", 101, C4_C5, multiscale=(480, 800)),
    "gfl/gflv2_r101_fpn_coco_2x.yaml": Reference("resnet", 101, gflv2=True, multiscale=(480, 960)),
    "gfl/gflv2_r101_dcn_fpn_coco_2x.yaml": Reference("resnet", 101, C3_C5, gflv2=True, multiscale=(480, 960)),
    "gfl/gflv2_x101_32x4d_dcn_fpn_coco_2x.yaml": Reference(
        "resnext", 101, C4_C5, gflv2=True, multiscale=(480, 960)
    ),
    "gfl/gflv2_r2_101_dcn_fpn_coco_2x.yaml": Reference(
        "res2net", 101, C4_C5, gflv2=True, multiscale=(480, 960)
    ),
}
NOT_MMDETECTION = {
    "gfl/gfl_effl2_fpn_bccd.yaml",  # our EfficientNet-Lite teachers: no reference layout
    "atss_gfl/atss_gfl_effl2_fpn_bccd.yaml",
    "fcos_gfl/fcos_gfl_effl2_fpn_bccd.yaml",
    "retina_gfl/retina_gfl_effl2_fpn_bccd.yaml",
    # the LD code's RetinaGFL / ATSS-GFL / FCOS-GFL teachers: no released checkpoint (its configs say
    # "train your own"); their mmdetection layout is checked by tests/weights/test_family_import.py
    "atss_gfl/atss_gfl_r101_fpn_coco_2x.yaml",
    "fcos_gfl/fcos_gfl_r101_fpn_center_coco_2x.yaml",
    "retina_gfl/retina_gfl_r101_fpn_coco_2x.yaml",
}


def teacher_configs() -> list[str]:
    """The teacher config of every LD config, and every DCN config, relative to the config folder."""
    found = {str(p.relative_to(CONFIGS)) for p in (CONFIGS / "gfl").glob("*dcn*.yaml")}
    for ld in sorted((CONFIGS / "ld").glob("*.yaml")):
        teacher = load_config(ld).distill
        assert teacher is not None and teacher.teacher_config, f"{ld.name} names no teacher config"
        found.add(str((ld.parent / teacher.teacher_config).resolve().relative_to(CONFIGS.resolve())))
    return sorted(found)


# ------------------------------------------------------------------ mmdetection's layout, from facts
def _bn(out: dict[str, Shape], prefix: str, channels: int) -> None:
    for name in ("weight", "bias", "running_mean", "running_var"):
        out[f"{prefix}.{name}"] = (channels,)
    out[f"{prefix}.num_batches_tracked"] = ()


def _conv3x3(out: dict[str, Shape], prefix: str, cin: int, cout: int, groups: int, dcn: str | None) -> None:
    out[f"{prefix}.weight"] = (cout, cin // groups, 3, 3)
    if dcn is not None:  # mmcv DeformConv2dPack / ModulatedDeformConv2dPack: conv_offset with a bias
        per_tap = {"DCN": 2, "DCNv2": 3}[dcn]
        out[f"{prefix}.conv_offset.weight"] = (per_tap * 9, cin, 3, 3)
        out[f"{prefix}.conv_offset.bias"] = (per_tap * 9,)


def backbone_layout(ref: Reference) -> tuple[dict[str, Shape], list[int]]:
    """mmdetection ``backbone.*`` keys and shapes, and the channels of C2-C5."""
    out: dict[str, Shape] = {}
    blocks = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3), 50: (3, 4, 6, 3), 101: (3, 4, 23, 3)}[ref.depth]
    basic = ref.depth in (18, 34)
    if ref.backbone == "res2net":  # deep stem: 3x3 convs to 32, 32, 64
        for i, (cin, cout) in enumerate([(3, 32), (32, 32), (32, 64)]):
            out[f"backbone.stem.{3 * i}.weight"] = (cout, cin, 3, 3)
            _bn(out, f"backbone.stem.{3 * i + 1}", cout)
    else:
        out["backbone.conv1.weight"] = (64, 3, 7, 7)
        _bn(out, "backbone.bn1", 64)
    inplanes, channels = 64, []
    for stage, n in enumerate(blocks):
        planes = 64 * 2**stage
        expansion = 1 if basic else 4
        dcn = ref.dcn_type if ref.stage_with_dcn[stage] else None
        for b in range(n):
            p = f"backbone.layer{stage + 1}.{b}"
            cin = inplanes if b == 0 else planes * expansion
            if basic:
                out[f"{p}.conv1.weight"] = (planes, cin, 3, 3)
                _bn(out, f"{p}.bn1", planes)
                out[f"{p}.conv2.weight"] = (planes, planes, 3, 3)
                _bn(out, f"{p}.bn2", planes)
            elif ref.backbone == "res2net":
                width = planes * 26 // 64
                out[f"{p}.conv1.weight"] = (width * 4, cin, 1, 1)
                _bn(out, f"{p}.bn1", width * 4)
                for i in range(3):
                    _conv3x3(out, f"{p}.convs.{i}", width, width, 1, dcn)
                    _bn(out, f"{p}.bns.{i}", width)
                out[f"{p}.conv3.weight"] = (planes * 4, width * 4, 1, 1)
                _bn(out, f"{p}.bn3", planes * 4)
            else:
                groups = 32 if ref.backbone == "resnext" else 1
                width = planes * 4 // 64 * 32 if ref.backbone == "resnext" else planes
                out[f"{p}.conv1.weight"] = (width, cin, 1, 1)
                _bn(out, f"{p}.bn1", width)
                _conv3x3(out, f"{p}.conv2", width, width, groups, dcn)
                _bn(out, f"{p}.bn2", width)
                out[f"{p}.conv3.weight"] = (planes * 4, width, 1, 1)
                _bn(out, f"{p}.bn3", planes * 4)
            if b == 0 and (stage > 0 or cin != planes * expansion):
                conv, bn = (
                    ("downsample.1", "downsample.2")
                    if ref.backbone == "res2net"
                    else ("downsample.0", "downsample.1")
                )
                out[f"{p}.{conv}.weight"] = (planes * expansion, cin, 1, 1)
                _bn(out, f"{p}.{bn}", planes * expansion)
        inplanes = planes * expansion
        channels.append(inplanes)
    return out, channels


def gfl_layout(ref: Reference) -> dict[str, Shape]:
    """The whole mmdetection GFL / GFocalV2 detector state dict layout."""
    out, channels = backbone_layout(ref)
    for i, cin in enumerate(channels[1:]):  # FPN start_level=1: laterals from C3-C5
        out[f"neck.lateral_convs.{i}.conv.weight"] = (256, cin, 1, 1)
        out[f"neck.lateral_convs.{i}.conv.bias"] = (256,)
    for i in range(5):  # P3-P5 outputs, then two extra convs on the outputs (P6, P7)
        out[f"neck.fpn_convs.{i}.conv.weight"] = (256, 256, 3, 3)
        out[f"neck.fpn_convs.{i}.conv.bias"] = (256,)
    for branch in ("cls_convs", "reg_convs"):
        for i in range(4):
            out[f"bbox_head.{branch}.{i}.conv.weight"] = (256, 256, 3, 3)
            out[f"bbox_head.{branch}.{i}.gn.weight"] = (256,)
            out[f"bbox_head.{branch}.{i}.gn.bias"] = (256,)
    out["bbox_head.gfl_cls.weight"] = (ref.num_classes, 256, 3, 3)
    out["bbox_head.gfl_cls.bias"] = (ref.num_classes,)
    out["bbox_head.gfl_reg.weight"] = (4 * 17, 256, 3, 3)
    out["bbox_head.gfl_reg.bias"] = (4 * 17,)
    for i in range(5):
        out[f"bbox_head.scales.{i}.scale"] = ()
    out["bbox_head.integral.project"] = (17,)
    if ref.gflv2:
        out["bbox_head.reg_conf.0.weight"] = (64, 4 * 5, 1, 1)
        out["bbox_head.reg_conf.0.bias"] = (64,)
        out["bbox_head.reg_conf.2.weight"] = (1, 64, 1, 1)
        out["bbox_head.reg_conf.2.bias"] = (1,)
    return out


# ---------------------------------------------------------------------------------------- the tests
def test_every_teacher_config_has_a_reference() -> None:
    configs = teacher_configs()
    assert "gfl/gflv2_r2_101_dcn_fpn_coco_2x.yaml" in configs and "gfl/gfl_r101_fpn_coco_2x.yaml" in configs
    missing = [c for c in configs if c not in REFERENCES and c not in NOT_MMDETECTION]
    assert not missing, f"teacher configs without reference facts in this test: {missing}"


@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_reference_layout_loads_strictly(name: str) -> None:
    ref = REFERENCES[name]
    cfg = load_config(CONFIGS / name)
    backbone = cfg.model.backbone
    assert backbone.dcn == list(ref.stage_with_dcn)
    if any(ref.stage_with_dcn):
        assert backbone.dcn_type == ref.dcn_type.lower()
    assert cfg.model.head.dgqp == ref.gflv2 and cfg.model.head.num_classes == ref.num_classes
    expected_ms = None if ref.multiscale is None else [[1333, ref.multiscale[0]], [1333, ref.multiscale[1]]]
    assert cfg.data.multiscale == expected_ms

    backbone.pretrained = False
    with torch.device("meta"):  # full-size networks, without allocating their weights
        model = build_gfl(cfg.model)
        mmdet = {k: torch.empty(shape) for k, shape in gfl_layout(ref).items()}
    state, skipped = convert_detector_state_dict(mmdet)
    assert not skipped
    result = model.load_state_dict(state, strict=True)  # raises on any missing/unexpected key or shape
    assert not result.missing_keys and not result.unexpected_keys


def test_a_dcnv2_layout_does_not_load_into_a_dcn_v1_config() -> None:
    """The check above can fail: the GFocalV2 R2-101-DCN layout with DCNv2 offsets (27 channels) is
    refused by the fixed config, as the released teacher was by the old DCNv2 configs."""
    ref = REFERENCES["gfl/gflv2_r2_101_dcn_fpn_coco_2x.yaml"]
    cfg = load_config(CONFIGS / "gfl/gflv2_r2_101_dcn_fpn_coco_2x.yaml", ["model.backbone.pretrained=false"])
    wrong = Reference(ref.backbone, ref.depth, ref.stage_with_dcn, "DCNv2", ref.gflv2, 80, ref.multiscale)
    with torch.device("meta"):
        model = build_gfl(cfg.model)
        state, _ = convert_detector_state_dict({k: torch.empty(s) for k, s in gfl_layout(wrong).items()})
    with pytest.raises(RuntimeError, match="conv_offset.weight has 27 output channels"):
        model.load_state_dict(state, strict=True)
