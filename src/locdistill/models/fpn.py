"""Feature Pyramid Network with extra levels (mmdetection ``FPN`` with ``add_extra_convs`` ``on_output``,
GFL/ATSS/FCOS, or ``on_input``, RetinaNet; optionally ``relu_before_extra_convs``, FCOS)."""

from __future__ import annotations

from typing import Literal

import torch.nn.functional as F
from torch import Tensor, nn

from locdistill.models.layers import ConvNorm


class FPN(nn.Module):
    """C3-C5 in, ``num_outs`` maps of ``out_channels`` out (P3-P7 for 5).

    Lateral 1x1 convs, top-down nearest upsampling and addition, 3x3 output convs; P6 is a stride-2
    3x3 conv on the P5 *output* (``extra_source="on_output"``) or on C5 itself (``"on_input"``), P7 a
    stride-2 3x3 conv on P6, with a ReLU before each extra conv after the first only when
    ``relu_before_extra`` (mmdetection applies it to every extra conv's input but the first). Parameter
    names match mmdetection (``lateral_convs.i.conv``, ``fpn_convs.i.conv``); Xavier-uniform init.
    """

    def __init__(
        self,
        in_channels: list[int],
        out_channels: int = 256,
        num_outs: int = 5,
        extra_source: Literal["on_output", "on_input"] = "on_output",
        relu_before_extra: bool = False,
    ) -> None:
        super().__init__()
        if extra_source not in ("on_output", "on_input"):
            raise ValueError(f"extra_source must be 'on_output' or 'on_input', got {extra_source!r}")
        self.extra_source, self.relu_before_extra = extra_source, relu_before_extra
        if num_outs < len(in_channels):
            raise ValueError(f"num_outs ({num_outs}) must be >= the number of inputs ({len(in_channels)})")
        self.lateral_convs = nn.ModuleList([ConvNorm(c, out_channels, 1, relu=False) for c in in_channels])
        self.fpn_convs = nn.ModuleList(
            [ConvNorm(out_channels, out_channels, 3, relu=False) for _ in in_channels]
        )
        for i in range(num_outs - len(in_channels)):
            first_in = in_channels[-1] if extra_source == "on_input" and i == 0 else out_channels
            self.fpn_convs.append(ConvNorm(first_in, out_channels, 3, stride=2, relu=False))
        self.out_channels = out_channels
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, feats: list[Tensor]) -> list[Tensor]:
        """``[B, C_i, H_i, W_i]`` for strides 8, 16, 32 -> ``num_outs`` maps of ``out_channels``."""
        laterals = [conv(x) for conv, x in zip(self.lateral_convs, feats)]
        for i in range(len(laterals) - 1, 0, -1):
            laterals[i - 1] = laterals[i - 1] + F.interpolate(
                laterals[i], size=laterals[i - 1].shape[-2:], mode="nearest"
            )
        n = len(laterals)
        outs = [self.fpn_convs[i](laterals[i]) for i in range(n)]
        for i, conv in enumerate(self.fpn_convs[n:]):
            if i == 0:
                outs.append(conv(feats[-1] if self.extra_source == "on_input" else outs[-1]))
            else:
                outs.append(conv(outs[-1].relu() if self.relu_before_extra else outs[-1]))
        return outs
