"""The FCOS-GFL head (LD code's ``FCOSGFLHead``): the ATSS-GFL network with FCOS's output names.

As in the LD code, the towers are [3x3 conv *without* bias -> GroupNorm -> ReLU] (its own layer builder
ignores FCOS's ``conv_bias=True``), the centerness is always computed from the box tower, and the
per-level Scale multiplies the ``4*(R+1)`` distribution logits (no exp, no ReLU, no stride factor).
Names: ``cls_convs.i.conv/.gn``, ``conv_cls``, ``conv_reg``, ``conv_centerness``, ``scales.l.scale``.
"""

from __future__ import annotations

from torch import nn

from locdistill.models.heads.atss_gfl import CenternessGFLHead


class FCOSGFLHead(CenternessGFLHead):
    """Arguments as :class:`~locdistill.models.heads.atss_gfl.CenternessGFLHead`."""

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
        self.conv_cls = nn.Conv2d(last, num_classes, 3, padding=1)
        self.conv_reg = nn.Conv2d(last, 4 * (reg_max + 1), 3, padding=1)
        self.conv_centerness = nn.Conv2d(last, 1, 3, padding=1)
        self.init_weights()

    def outputs(self) -> tuple[nn.Conv2d, nn.Conv2d, nn.Conv2d]:
        return self.conv_cls, self.conv_reg, self.conv_centerness
