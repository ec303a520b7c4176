"""The ATSS-GFL head (LD code's ``ATSSGFLHead``): ATSS's head with a GFL-style distribution box branch.

Two towers of ``stacked_convs`` x [3x3 conv (no bias) -> GroupNorm -> ReLU]; ``atss_cls`` (C),
``atss_reg`` (``4*(R+1)``) times a learnable per-level :class:`Scale` (a learned temperature of the
distribution), and ``atss_centerness`` (1 channel) from the *box* tower. Init: convs N(0, 0.01), zero
bias, class bias prior 0.01. Parameter names are the LD code's (``cls_convs.i.conv``,
``cls_convs.i.gn``, ``atss_cls``, ``atss_reg``, ``atss_centerness``, ``scales.l.scale``).
:class:`~locdistill.models.heads.fcos_gfl.FCOSGFLHead` is the same network with FCOS's names.
"""

from __future__ import annotations

import math

from torch import Tensor, nn

from locdistill.models.heads.family_outputs import FamilyOutputs
from locdistill.models.layers import ConvNorm, Scale


class CenternessGFLHead(nn.Module):
    """GN towers, per-level Scale, class / distribution / centerness outputs (names set by subclasses
    through :meth:`outputs`)."""

    def __init__(
        self,
        num_classes: int,
        in_channels: int = 256,
        feat_channels: int = 256,
        stacked_convs: int = 4,
        num_levels: int = 5,
        reg_max: int = 16,
        norm_groups: int = 32,
    ) -> None:
        super().__init__()
        self.num_classes, self.reg_max, self.num_anchors = num_classes, reg_max, 1
        self.cls_convs = nn.ModuleList()
        self.reg_convs = nn.ModuleList()
        for i in range(stacked_convs):
            chn = in_channels if i == 0 else feat_channels
            self.cls_convs.append(ConvNorm(chn, feat_channels, 3, norm_groups=norm_groups))
            self.reg_convs.append(ConvNorm(chn, feat_channels, 3, norm_groups=norm_groups))
        self.last_channels = feat_channels if stacked_convs > 0 else in_channels
        self.scales = nn.ModuleList([Scale(1.0) for _ in range(num_levels)])

    def outputs(self) -> tuple[nn.Conv2d, nn.Conv2d, nn.Conv2d]:
        """The class, distribution and centerness convs."""
        raise NotImplementedError

    def init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, 0, 0.01)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        cls_conv = self.outputs()[0]
        assert cls_conv.bias is not None
        nn.init.constant_(cls_conv.bias, -math.log((1 - 0.01) / 0.01))

    def forward_single(self, x: Tensor, scale: nn.Module) -> tuple[Tensor, Tensor, Tensor]:
        """``[B, in, H, W]`` -> (``[B, C, H, W]``, ``[B, 4*(R+1), H, W]``, ``[B, 1, H, W]``)."""
        cls_conv, reg_conv, ctr_conv = self.outputs()
        cls_feat, reg_feat = x, x
        for conv in self.cls_convs:
            cls_feat = conv(cls_feat)
        for conv in self.reg_convs:
            reg_feat = conv(reg_feat)
        return cls_conv(cls_feat), scale(reg_conv(reg_feat)), ctr_conv(reg_feat)

    def forward(self, feats: list[Tensor]) -> FamilyOutputs:
        """FPN maps (stride 8 upward) -> :class:`FamilyOutputs` with centerness."""
        outs = [self.forward_single(x, s) for x, s in zip(feats, self.scales)]
        return FamilyOutputs([o[0] for o in outs], [o[1] for o in outs], [o[2] for o in outs])


class ATSSGFLHead(CenternessGFLHead):
    """See the module docstring; arguments as :class:`CenternessGFLHead`."""

    def __init__(
        self,
        num_classes: int,
        in_channels: int = 256,
        feat_channels: int = 256,
        stacked_convs: int = 4,
        num_levels: int = 5,
        reg_max: int = 16,
        norm_groups: int = 32,
    ) -> None:
        super().__init__(
            num_classes, in_channels, feat_channels, stacked_convs, num_levels, reg_max, norm_groups
        )
        last = self.last_channels
        self.atss_cls = nn.Conv2d(last, num_classes, 3, padding=1)
        self.atss_reg = nn.Conv2d(last, 4 * (reg_max + 1), 3, padding=1)
        self.atss_centerness = nn.Conv2d(last, 1, 3, padding=1)
        self.init_weights()

    def outputs(self) -> tuple[nn.Conv2d, nn.Conv2d, nn.Conv2d]:
        return self.atss_cls, self.atss_reg, self.atss_centerness
