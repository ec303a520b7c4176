"""The accumulation-order tolerance of tests/tolerance.py holds on this machine's kernels, with room."""

from __future__ import annotations

import torch
from torch import nn

from tests.tolerance import conv_atol


def test_a_float32_conv_stack_is_well_within_the_tolerance_of_its_float64_value() -> None:
    """The GFL head's shape (4 conv + GN + ReLU, then the output conv; 64 channels, 3x3): float32
    against the exact (float64) value stays within half the tolerance (which bounds two float32 orders),
    and a relative change of 1e-4, as from a wrong epsilon or a rounded weight, is well outside it."""
    torch.manual_seed(0)
    layers: list[nn.Module] = []
    for _ in range(4):
        layers += [nn.Conv2d(64, 64, 3, padding=1), nn.GroupNorm(32, 64), nn.ReLU()]
    net = nn.Sequential(*layers, nn.Conv2d(64, 80, 3, padding=1)).eval()
    x = torch.randn(2, 64, 24, 32)
    with torch.no_grad():
        y32 = net(x).double()
        y64 = net.double()(x.double())
    atol = conv_atol(y64, reduction=9 * 64, depth=5)
    assert float((y32 - y64).abs().max()) <= atol / 2
    assert float((y64 * (1 + 1e-4) - y64).abs().max()) > 2 * atol
