"""Pretrained backbone weights: torchvision and mmdetection files, DCN mismatches, downloads."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torchvision
from torch import nn

from locdistill.config import BackboneConfig
from locdistill.models.backbones import (
    PretrainedWeightsError,
    ResNet,
    build_backbone,
)


def test_pretrained_path_torchvision_layout(tmp_path: Path) -> None:
    torch.manual_seed(0)
    reference = torchvision.models.resnet18(weights=None).eval()
    path = tmp_path / "resnet18_tv.pth"
    torch.save(reference.state_dict(), path)  # includes fc.*, which is ignored
    ours = build_backbone(BackboneConfig(name="resnet18", pretrained=str(path))).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        trunk = nn.Sequential(*list(reference.children())[:-2])  # conv1 .. layer4, without avgpool, fc
        torch.testing.assert_close(ours(x)[2], trunk(x))


def test_pretrained_path_mmdet_checkpoint(tmp_path: Path) -> None:
    torch.manual_seed(0)
    cfg = BackboneConfig(name="resnet50", base_width=16, dcn=[False, False, True, True])
    source = build_backbone(cfg)
    for p in source.parameters():
        p.data.normal_()
    detector_state = {f"backbone.{k}": v for k, v in source.state_dict().items()}
    detector_state["neck.lateral_convs.0.conv.weight"] = torch.zeros(4, 4, 1, 1)
    detector_state["bbox_head.gfl_cls.bias"] = torch.zeros(80)
    # an old mmdetection checkpoint stores DCN offset convs as 'conv2_offset'
    detector_state["backbone.layer3.0.conv2_offset.weight"] = detector_state.pop(
        "backbone.layer3.0.conv2.conv_offset.weight"
    )
    path = tmp_path / "mmdet.pth"
    torch.save({"meta": {"epoch": 12, "mmdet_version": "2.10.0"}, "state_dict": detector_state}, path)
    target = build_backbone(BackboneConfig(**{**cfg.__dict__, "pretrained": str(path)}))
    for (k, a), (_, b) in zip(source.state_dict().items(), target.state_dict().items()):
        assert torch.equal(a, b), k


def test_dcn_type_mismatch_is_explained(tmp_path: Path) -> None:
    v2 = ResNet(depth=50, base_width=16, dcn=[False, True, False, False], dcn_type="dcnv2")
    path = tmp_path / "v2.pth"
    torch.save(v2.state_dict(), path)
    with pytest.raises(RuntimeError, match="DCNv2"):
        build_backbone(
            BackboneConfig(
                name="resnet50", base_width=16, dcn=[False, True, False, False], pretrained=str(path)
            )
        )


def test_torchvision_imagenet_download_or_clear_offline_error() -> None:
    try:
        backbone = build_backbone(BackboneConfig(name="resnet18", pretrained=True))
    except PretrainedWeightsError as e:
        assert "backbone.pretrained" in str(e)
        pytest.skip(f"offline: {str(e)[:120]}")
    assert backbone.conv1.weight.abs().sum() > 0
