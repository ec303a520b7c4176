"""The RetinaGFL head (LD code's ``RetinaGFLHead``): RetinaNet's head whose box branch predicts a
GFL-style distribution of ``reg_max + 1`` bins per side for each of the ``A`` anchors of a location.

Two towers of ``stacked_convs`` x [3x3 conv with bias -> ReLU] (no normalisation, as RetinaNet), then
``atss_cls`` (``A*C`` channels) and ``atss_reg`` (``A*4*(R+1)``), both 3x3. No Scale, no centerness.
Init: every conv N(0, 0.01) with zero bias, the class bias ``-log(99)`` (prior 0.01). Parameter names are
the LD code's (``cls_convs.i.conv``, ``reg_convs.i.conv``, ``atss_cls``, ``atss_reg``).
"""

from __future__ import annotations

import math

from torch import Tensor, nn

from locdistill.models.heads.family_outputs import FamilyOutputs
from locdistill.models.layers import ConvNorm


class RetinaGFLHead(nn.Module):
    """Args:
    num_classes: foreground classes (sigmoid).
    in_channels: channels of each FPN level; feat_channels: tower width; stacked_convs: convs per tower.
    num_anchors: anchors per location (9 = 3 ratios x 3 scales).
    reg_max: ``reg_max + 1`` bins per side.
    """

    def __init__(
        self,
        num_classes: int,
        in_channels: int = 256,
        feat_channels: int = 256,
        stacked_convs: int = 4,
        num_anchors: int = 9,
        reg_max: int = 16,
    ) -> None:
        super().__init__()
        self.num_classes, self.reg_max, self.num_anchors = num_classes, reg_max, num_anchors
        self.cls_convs = nn.ModuleList()
        self.reg_convs = nn.ModuleList()
        for i in range(stacked_convs):
            chn = in_channels if i == 0 else feat_channels
            self.cls_convs.append(ConvNorm(chn, feat_channels, 3))
            self.reg_convs.append(ConvNorm(chn, feat_channels, 3))
        last = feat_channels if stacked_convs > 0 else in_channels
        self.atss_cls = nn.Conv2d(last, num_anchors * num_classes, 3, padding=1)
        self.atss_reg = nn.Conv2d(last, num_anchors * 4 * (reg_max + 1), 3, padding=1)
        self.init_weights()

    def init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, 0, 0.01)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        assert self.atss_cls.bias is not None
        nn.init.constant_(self.atss_cls.bias, -math.log((1 - 0.01) / 0.01))

    def forward_single(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``[B, in, H, W]`` -> (``[B, A*C, H, W]``, ``[B, A*4*(R+1), H, W]``)."""
        cls_feat, reg_feat = x, x
        for conv in self.cls_convs:
            cls_feat = conv(cls_feat)
        for conv in self.reg_convs:
            reg_feat = conv(reg_feat)
        return self.atss_cls(cls_feat), self.atss_reg(reg_feat)

    def forward(self, feats: list[Tensor]) -> FamilyOutputs:
        """FPN maps (stride 8 upward) -> :class:`FamilyOutputs` without centerness."""
        outs = [self.forward_single(x) for x in feats]
        return FamilyOutputs([o[0] for o in outs], [o[1] for o in outs], [])
