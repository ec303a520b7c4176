"""Res2Net: mmdetection's key layout, DCN keys, block structure, frozen stem."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from locdistill.config import BackboneConfig
from locdistill.models.backbones import (
    Res2Net,
    build_backbone,
)
from tests.models.backbones.helpers import bn_keys, state_shapes


def _res2net_expected_keys(blocks: tuple[int, ...], dcn: tuple[bool, ...] = (False,) * 4) -> dict[str, tuple]:
    """mmdetection Res2Net-101 26w×4s key names and shapes, written out from mmdet's layout."""
    keys: dict[str, tuple] = {}
    # deep stem: conv(3->32, s2) bn relu conv(32->32) bn relu conv(32->64) bn relu
    for idx, (cin, cout) in zip((0, 3, 6), ((3, 32), (32, 32), (32, 64))):
        keys[f"stem.{idx}.weight"] = (cout, cin, 3, 3)
        for k in bn_keys(f"stem.{idx + 1}"):
            keys[k] = (cout,) if not k.endswith("num_batches_tracked") else ()
    inplanes = 64
    for stage, n in enumerate(blocks, start=1):
        planes = 64 * 2 ** (stage - 1)
        width = planes * 26 // 64
        for b in range(n):
            p = f"layer{stage}.{b}"
            cin = inplanes if b == 0 else planes * 4
            entries = {
                f"{p}.conv1.weight": (4 * width, cin, 1, 1),
                f"{p}.conv3.weight": (planes * 4, 4 * width, 1, 1),
            }
            for s in range(3):
                entries[f"{p}.convs.{s}.weight"] = (width, width, 3, 3)
                if dcn[stage - 1]:
                    entries[f"{p}.convs.{s}.conv_offset.weight"] = (18, width, 3, 3)
                    entries[f"{p}.convs.{s}.conv_offset.bias"] = (18,)
                for k in bn_keys(f"{p}.bns.{s}"):
                    entries[k] = (width,)
            for k in bn_keys(f"{p}.bn1"):
                entries[k] = (4 * width,)
            for k in bn_keys(f"{p}.bn3"):
                entries[k] = (planes * 4,)
            if b == 0:  # downsample = AvgPool (no params), conv1x1, BN -> indices 1 and 2
                entries[f"{p}.downsample.1.weight"] = (planes * 4, inplanes, 1, 1)
                for k in bn_keys(f"{p}.downsample.2"):
                    entries[k] = (planes * 4,)
            for k, v in entries.items():
                keys[k] = () if k.endswith("num_batches_tracked") else v
        inplanes = planes * 4
    return keys


def test_res2net101_keys_and_shapes_are_mmdet() -> None:
    ours = build_backbone(BackboneConfig(name="res2net101_26w_4s"))
    shapes = state_shapes(ours.state_dict())
    expected = _res2net_expected_keys((3, 4, 23, 3))
    assert set(shapes) == set(expected), (sorted(set(shapes) ^ set(expected)))[:10]
    assert shapes == expected
    # spot checks against mmdetection's published naming
    assert shapes["stem.0.weight"] == (32, 3, 3, 3)
    assert shapes["layer1.0.convs.0.weight"] == (26, 26, 3, 3)
    assert shapes["layer1.0.downsample.1.weight"] == (256, 64, 1, 1)
    assert shapes["layer4.0.convs.2.weight"] == (208, 208, 3, 3)
    # 43.18 M parameters: Res2Net-101 26w×4s (45.2 M with fc) minus fc, v1d stem.
    assert sum(p.numel() for p in ours.parameters()) == pytest.approx(43.18e6, rel=1e-3)


def test_res2net_dcn_keys() -> None:
    ours = Res2Net(depth=50, dcn=(False, False, True, True))
    assert state_shapes(ours.state_dict()) == _res2net_expected_keys(
        (3, 4, 6, 3), dcn=(False, False, True, True)
    )


def test_res2net_block_structure() -> None:
    """Stage-first blocks take each split alone and pool the last split when strided; later blocks
    add the previous split's output (mmdetection's 'stage' / 'normal' block types)."""
    net = Res2Net(depth=50, base_width=16, frozen_stages=-1).eval()
    first, second = net.layer2[0], net.layer2[1]
    assert first.first_in_stage and isinstance(first.pool, nn.AvgPool2d) and first.pool.stride == 2
    assert net.layer1[0].pool is None  # stride 1: the last split passes unchanged
    assert isinstance(first.downsample[0], nn.AvgPool2d) and first.downsample[0].ceil_mode
    assert not first.downsample[0].count_include_pad
    # Manual forward of a normal block.
    torch.manual_seed(0)
    x = torch.randn(1, second.conv1.in_channels, 5, 5)
    with torch.no_grad():
        out = F.relu(second.bn1(second.conv1(x)))
        s = torch.split(out, second.width, 1)
        y0 = F.relu(second.bns[0](second.convs[0](s[0])))
        y1 = F.relu(second.bns[1](second.convs[1](s[1] + y0)))
        y2 = F.relu(second.bns[2](second.convs[2](s[2] + y1)))
        ref = F.relu(second.bn3(second.conv3(torch.cat([y0, y1, y2, s[3]], 1))) + x)
        torch.testing.assert_close(second(x), ref)


def test_res2net_frozen_stem() -> None:
    net = Res2Net(depth=50, base_width=16, frozen_stages=1, norm_eval=False).train()
    assert all(not p.requires_grad for p in net.stem.parameters())
    assert all(not p.requires_grad for p in net.layer1.parameters())
    assert all(p.requires_grad for p in net.layer2.parameters())
    assert not net.stem[1].training and net.layer2[0].bn1.training
