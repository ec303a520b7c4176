"""ResNet / ResNeXt: torchvision and mmdetection key layouts, DCN keys, frozen stages."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

from locdistill.config import BackboneConfig
from locdistill.models.backbones import (
    DeformConv2dPack,
    ModulatedDeformConv2dPack,
    ResNet,
    build_backbone,
)
from tests.models.backbones.helpers import batchnorms, running_stats, state_shapes, torchvision_keys


@pytest.mark.parametrize("depth", [18, 34, 50, 101])
def test_resnet_keys_and_shapes_are_torchvision(depth: int) -> None:
    ours = ResNet(depth=depth, frozen_stages=-1)
    theirs = getattr(torchvision.models, f"resnet{depth}")(weights=None)
    assert state_shapes(ours.state_dict()) == torchvision_keys(theirs)


def test_resnext_keys_and_shapes_are_mmdet() -> None:
    ours = build_backbone(BackboneConfig(name="resnext101_32x4d"))
    # torchvision's ResNet with groups/width_per_group builds mmdetection's ResNeXt with the same names.
    reference = torchvision.models.resnet.ResNet(
        torchvision.models.resnet.Bottleneck, [3, 4, 23, 3], groups=32, width_per_group=4
    )
    shapes = state_shapes(ours.state_dict())
    assert shapes == torchvision_keys(reference)
    # mmdet ResNeXt: width = floor(planes * 4 / 64) * 32, 3x3 conv grouped by 32.
    assert shapes["layer1.0.conv1.weight"] == (128, 64, 1, 1)
    assert shapes["layer1.0.conv2.weight"] == (128, 4, 3, 3)
    assert shapes["layer1.0.conv3.weight"] == (256, 128, 1, 1)
    assert shapes["layer1.0.downsample.0.weight"] == (256, 64, 1, 1)
    assert shapes["layer4.0.conv2.weight"] == (1024, 32, 3, 3)
    assert shapes["layer4.2.conv3.weight"] == (2048, 1024, 1, 1)


def test_resnet50_dcn_keys_are_mmdet() -> None:
    ours = build_backbone(BackboneConfig(name="resnet50", dcn=[False, True, True, True]))
    expected = torchvision_keys(torchvision.models.resnet50(weights=None))
    # mmcv DeformConv2dPack (type='DCN'): conv2.weight stays, conv2.conv_offset is a 3x3 conv with bias
    # predicting deform_groups * 2 * 3 * 3 = 18 offsets.
    for stage, blocks in ((2, 4), (3, 6), (4, 3)):
        width = 64 * 2 ** (stage - 1)
        for b in range(blocks):
            expected[f"layer{stage}.{b}.conv2.conv_offset.weight"] = (18, width, 3, 3)
            expected[f"layer{stage}.{b}.conv2.conv_offset.bias"] = (18,)
    assert state_shapes(ours.state_dict()) == expected
    assert "layer1.0.conv2.conv_offset.weight" not in expected
    assert isinstance(ours.layer2[0].conv2, DeformConv2dPack)
    assert ours.layer2[0].conv2.stride == (2, 2)


def test_resnet50_dcnv2_offset_conv_has_27_channels() -> None:
    ours = ResNet(depth=50, base_width=16, dcn=[False, True, False, False], dcn_type="dcnv2")
    shapes = state_shapes(ours.state_dict())
    assert shapes["layer2.0.conv2.conv_offset.weight"] == (27, 32, 3, 3)
    assert shapes["layer2.0.conv2.conv_offset.bias"] == (27,)
    assert isinstance(ours.layer2[1].conv2, ModulatedDeformConv2dPack)


def test_resnet_frozen_stages_and_norm_eval() -> None:
    torch.manual_seed(0)
    net = ResNet(depth=50, base_width=16, frozen_stages=1, norm_eval=True, dcn=[False, True, False, False])
    net.train()
    assert net.training
    for module in (net.conv1, net.bn1, net.layer1):
        assert all(not p.requires_grad for p in module.parameters())
    for module in (net.layer2, net.layer3, net.layer4):
        assert all(p.requires_grad for p in module.parameters())
    assert all(not bn.training for bn in batchnorms(net))
    assert net.layer2.training  # only BatchNorms are switched to eval
    before = running_stats(net)
    net(torch.randn(2, 3, 64, 64))
    for a, b in zip(before, running_stats(net)):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    # eval() then train() keeps the freezing
    net.eval().train()
    assert not net.layer1[0].bn1.training and not net.conv1.weight.requires_grad


def test_resnet_frozen_without_norm_eval_updates_only_trainable_bns() -> None:
    torch.manual_seed(0)
    net = ResNet(depth=18, base_width=16, frozen_stages=1, norm_eval=False).train()
    assert not net.bn1.training and not net.layer1[0].bn1.training
    assert net.layer2[0].bn1.training
    frozen_before = running_stats(net.layer1)
    live_before = running_stats(net.layer2)
    net(torch.randn(2, 3, 64, 64))
    for a, b in zip(frozen_before, running_stats(net.layer1)):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert any(not torch.equal(a, b) for a, b in zip(live_before, running_stats(net.layer2)))


@pytest.mark.parametrize(("frozen_stages", "n_frozen"), [(-1, 0), (0, 2), (2, 4)])
def test_resnet_frozen_stage_counts(frozen_stages: int, n_frozen: int) -> None:
    net = ResNet(depth=18, base_width=16, frozen_stages=frozen_stages).train()
    modules = [net.conv1, net.bn1, net.layer1, net.layer2, net.layer3, net.layer4]
    frozen = [all(not p.requires_grad for p in m.parameters()) for m in modules]
    assert frozen == [True] * n_frozen + [False] * (len(modules) - n_frozen)


@pytest.mark.parametrize(("depth", "last"), [(18, "bn2"), (50, "bn3")])
def test_resnet_zero_inits_each_residual_branch_as_mmdet(depth: int, last: str) -> None:
    """mmdetection ``ResNet(zero_init_residual=True)`` from scratch: the last BN of every block is 0
    (weight and bias), every other BN is 1 / 0 (measured on mmdetection 3.3.0's ResNet-18 at base 16)."""
    m = ResNet(depth=depth, base_width=16, frozen_stages=-1)
    for name, module in m.named_modules():
        if isinstance(module, nn.BatchNorm2d):
            want = 0.0 if name.endswith(last) else 1.0
            assert torch.all(module.weight == want), name
            assert torch.all(module.bias == 0), name


def test_resnext_keeps_residual_bns_at_one_as_mmdet() -> None:
    """mmdetection's ResNeXt blocks are another class, which its zero-init rule skips."""
    m = ResNet(depth=50, base_width=16, groups=4, width_per_group=4, frozen_stages=-1)
    assert all(torch.all(b.weight == 1) for b in m.modules() if isinstance(b, nn.BatchNorm2d))
