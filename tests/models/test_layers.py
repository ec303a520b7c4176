"""``ConvNorm``: a strided conv over a one-pixel-wide map keeps finite gradients under CPU bf16
autocast (oneDNN's bf16 weight gradient there is non-finite in about half of the tries)."""

from __future__ import annotations

import torch

from locdistill.models.layers import ConvNorm


def test_strided_conv_over_a_one_pixel_wide_map_has_finite_gradients_under_bf16_autocast() -> None:
    torch.manual_seed(0)
    for _ in range(40):
        layer = ConvNorm(32, 32, 3, stride=2, relu=False)
        x = torch.randn(2, 32, 3, 1, requires_grad=True)  # FPN's P6 of an image <= 64 px wide
        with torch.autocast("cpu", dtype=torch.bfloat16):
            y = layer(x)
        y.float().sum().backward()
        assert torch.isfinite(layer.conv.weight.grad).all() and torch.isfinite(x.grad).all()
        assert y.shape == (2, 32, 2, 1)
    wide = ConvNorm(32, 32, 3, stride=2, relu=False)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert wide(torch.randn(2, 32, 4, 4)).dtype == torch.bfloat16  # elsewhere autocast as usual
