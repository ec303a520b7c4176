"""build_backbone: every family at real width runs forward and backward; config errors."""

from __future__ import annotations

import pytest
import torch

from locdistill.config import BackboneConfig
from locdistill.models.backbones import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    Backbone,
    PretrainedWeightsError,
    build_backbone,
)
from locdistill.weights import WeightsError
from tests.models.backbones.helpers import NO_DCN

REAL_WIDTH_CASES = [
    ("resnet18", NO_DCN, [128, 256, 512]),
    ("resnet34", NO_DCN, [128, 256, 512]),
    ("resnet50", NO_DCN, [512, 1024, 2048]),
    ("resnet101", NO_DCN, [512, 1024, 2048]),
    ("resnext101_32x4d", NO_DCN, [512, 1024, 2048]),
    ("res2net101_26w_4s", NO_DCN, [512, 1024, 2048]),
    ("resnet50", [False, True, True, True], [512, 1024, 2048]),
    ("efficientnet_lite0", NO_DCN, [40, 112, 320]),
    ("efficientnet_lite1", NO_DCN, [40, 112, 320]),
    ("efficientnet_lite2", NO_DCN, [48, 120, 352]),
]


@pytest.mark.parametrize(
    ("name", "dcn", "channels"),
    REAL_WIDTH_CASES,
    ids=[f"{n}{'_dcn' if any(d) else ''}" for n, d, _ in REAL_WIDTH_CASES],
)
def test_real_width_forward_backward(name: str, dcn: list[bool], channels: list[int]) -> None:
    torch.manual_seed(0)
    backbone = build_backbone(BackboneConfig(name=name, dcn=dcn, frozen_stages=1))
    assert isinstance(backbone, Backbone)
    assert backbone.out_channels == channels
    if name.startswith("efficientnet"):
        assert backbone.mean == (0.5, 0.5, 0.5) and backbone.std == (0.5, 0.5, 0.5)
    else:
        assert backbone.mean == IMAGENET_MEAN == (0.485, 0.456, 0.406)
        assert backbone.std == IMAGENET_STD == (0.229, 0.224, 0.225)
    backbone.train()
    x = torch.randn(1, 3, 64, 96)
    feats = backbone(x)
    assert len(feats) == 3
    for feat, c, stride in zip(feats, channels, (8, 16, 32)):
        assert feat.shape == (1, c, 64 // stride, 96 // stride)
        assert torch.isfinite(feat).all()
    sum(f.square().mean() for f in feats).backward()
    frozen = backbone.frozen_modules()
    assert frozen, "frozen_stages=1 freezes the stem and the first stage"
    for module in frozen:
        for p in module.parameters():
            assert not p.requires_grad and p.grad is None
    trainable = [p for p in backbone.parameters() if p.requires_grad]
    assert trainable and all(p.grad is not None for p in trainable)


def test_config_errors() -> None:
    with pytest.raises(ValueError, match="unknown backbone"):
        build_backbone(BackboneConfig(name="vgg16"))
    with pytest.raises(ValueError, match="bottleneck"):
        build_backbone(BackboneConfig(name="resnet18", dcn=[False, True, True, True]))
    with pytest.raises(ValueError, match="dcn"):
        build_backbone(BackboneConfig(name="efficientnet_lite0", dcn=[False, True, True, True]))
    with pytest.raises(PretrainedWeightsError, match="base_width"):
        build_backbone(BackboneConfig(name="resnet18", base_width=16, pretrained=True))
    with pytest.raises(WeightsError, match="not found"):  # file errors: the one weight-reading error
        build_backbone(BackboneConfig(name="resnet18", base_width=16, pretrained="/nonexistent/weights.pth"))
