"""mmdetection-layout checkpoints of the LD code's RetinaGFL / ATSS-GFL / FCOS-GFL heads
(``bbox_head.atss_*``, ``bbox_head.conv_*``): loaded and converted with their family recognised."""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import pytest
import torch

from locdistill.config import BackboneConfig, HeadConfig, ModelConfig, NeckConfig
from locdistill.models.build import build_detector
from locdistill.weights import load_weights
from locdistill.weights.mmdet_import import convert_mmdet_checkpoint

SETTINGS = {
    "retina_gfl": dict(octave_base_scale=4.0, scales_per_octave=3, anchor_ratios=[0.5, 1.0, 2.0]),
    "atss_gfl": {},
    "fcos_gfl": {},
}


def tiny(family: str, seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    cfg = ModelConfig(
        type=family,  # type: ignore[arg-type]
        backbone=BackboneConfig(name="resnet18", base_width=8),
        neck=NeckConfig(out_channels=16),
        head=HeadConfig(num_classes=3, feat_channels=16, stacked_convs=1, norm_groups=4, **SETTINGS[family]),  # type: ignore[arg-type]
    )
    return build_detector(cfg).eval()


def mmdet_file(tmp_path: Path, model: torch.nn.Module) -> Path:
    state = OrderedDict()
    for key, value in model.state_dict().items():
        state[("bbox_head." + key[5:]) if key.startswith("head.") else key] = value.clone()
    state["bbox_head.integral.project"] = torch.linspace(0, 16, 17)  # the LD code's heads store it
    path = tmp_path / "mmdet.pth"
    torch.save({"meta": {"epoch": 24}, "state_dict": state}, path)
    return path


@pytest.mark.parametrize("family", ["retina_gfl", "atss_gfl", "fcos_gfl"])
def test_load_and_convert(tmp_path: Path, family: str) -> None:
    src = tiny(family, 0)
    path = mmdet_file(tmp_path, src)
    dst = tiny(family, 1)
    report = load_weights(dst, path)
    assert report.format == "mmdetection" and not report.missing and not report.unexpected
    x = torch.randn(1, 3, 64, 64)
    for a, b in zip(src(x).cls_scores, dst(x).cls_scores):
        assert torch.equal(a, b)
    converted = convert_mmdet_checkpoint(path, tmp_path / "converted.pth")
    head = converted["head"]
    assert head["type"] == family and head["num_classes"] == 3 and head["reg_max"] == 16
    assert head["num_anchors"] == (9 if family == "retina_gfl" else 1)
