"""Small building blocks whose parameter names match mmdetection's (``conv``, ``gn``), so that
mmdetection state dicts load with only a prefix change."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class ConvNorm(nn.Module):
    """``conv3x3/1x1 -> [GroupNorm] -> [ReLU]`` (mmcv ``ConvModule``'s layout: ``.conv``, ``.gn``).

    The conv has a bias only when there is no norm, as ``ConvModule(bias='auto')``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        norm_groups: int | None = None,
        relu: bool = True,
    ) -> None:
        super().__init__()
        self.conv = nn.Conv2d(
            in_channels, out_channels, kernel_size, stride, padding=kernel_size // 2, bias=norm_groups is None
        )
        self.gn = nn.GroupNorm(norm_groups, out_channels) if norm_groups is not None else None
        self.relu = relu

    def forward(self, x: Tensor, activate: bool = True) -> Tensor:
        """``activate=False``: the normalised conv output before the ReLU (CrossKD's ``hold: pre_relu``)."""
        # (autocast first: a traced export, where it is off, never reads the shape)
        if self.conv.stride[1] > 1 and torch.is_autocast_enabled("cpu") and x.is_cpu and x.shape[-1] == 1:
            # oneDNN's bfloat16 weight gradient of a strided conv over a map one pixel wide is at times
            # non-finite (torch 2.14 on CPU; FPN's P6 -> P7 on inputs <= 64 px wide): float32 there.
            with torch.autocast("cpu", enabled=False):
                x = self.conv(x.float())
        else:
            x = self.conv(x)
        if self.gn is not None:
            x = self.gn(x)
        # In place, as mmcv's ConvModule: neither the conv nor GroupNorm needs its output for backward.
        return torch.relu_(x) if self.relu and activate else x


class Scale(nn.Module):
    """A learnable scalar multiplier (per FPN level)."""

    def __init__(self, value: float = 1.0) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(float(value)))

    def forward(self, x: Tensor) -> Tensor:
        return x * self.scale
