"""Deformable convolutions (torchvision.ops) against mmcv's definition."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from locdistill.models.backbones import (
    DeformConv2dPack,
    ModulatedDeformConv2dPack,
)
from tests.tolerance import assert_conv_close


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
    # sampled columns times a matrix against oneDNN's convolution: the same sums of 8 / groups * 9
    # products in another order (tests/tolerance.py)
    reduction = 8 // groups * 9
    assert_conv_close(v1(x), plain, reduction)
    # mmcv's zero init of conv_offset gives mask = sigmoid(0) = 0.5: half the plain conv.
    assert_conv_close(v2(x), 0.5 * plain, reduction)


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
