"""Res2Net (Gao et al., TPAMI 2021) in mmdetection's layout (``mmdet/models/backbones/res2net.py``),
as used by the Res2Net-101 26w×4s GFocalV2 teacher (``open-mmlab://res2net101_v1d_26w_4s``).

mmdetection's Res2Net is its ResNet with ``deep_stem=True`` and ``avg_down=True`` and ``Bottle2neck``
blocks, so the state-dict keys are:

* stem: three 3x3 convs (stride 2, 1, 1; widths c/2, c/2, c) each followed by BN and ReLU in one
  ``nn.Sequential``: ``stem.0/3/6.weight`` (convs), ``stem.1/4/7.*`` (BNs); then a 3x3/2 max pool.
* block: ``conv1`` (1x1 to ``width * scales``), ``bn1``, ``convs.0..scales-2`` (3x3, ``width`` to
  ``width``), ``bns.0..scales-2``, ``conv3`` (1x1 to ``4 * planes``), ``bn3``; there is no ``conv2``.
* shortcut of a stage's first block: ``downsample = [AvgPool(stride, ceil_mode, no pad counting),
  1x1 conv (stride 1), BN]``, hence the keys ``downsample.1.weight`` and ``downsample.2.*``. The pool
  is present (an identity) in ``layer1`` too.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from .deform_conv import DEFORM_CONVS
from .staged import StagedBackbone, check_stage_arguments

RES2NET_DEPTHS: dict[int, tuple[int, int, int, int]] = {
    50: (3, 4, 6, 3),
    101: (3, 4, 23, 3),
    152: (3, 8, 36, 3),
}


def _conv3x3(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=stride, padding=1, bias=False)


class Bottle2neck(nn.Module):
    """Res2Net bottleneck: the 3x3 conv of a ResNet bottleneck is replaced by ``scales - 1`` 3x3 convs
    on channel splits, connected hierarchically.

    ``forward(x: [B, inplanes, H, W]) -> [B, 4 * planes, H / stride, W / stride]``.

    After ``conv1``/``bn1``/ReLU the ``width * scales`` channels are split into ``scales`` groups
    ``s_0 .. s_{scales-1}`` of ``width`` channels. ``y_0 = relu(bn(conv_0(s_0)))`` and, for
    ``0 < i < scales - 1``, ``y_i = relu(bn(conv_i(s_i + y_{i-1})))`` in a normal block, or
    ``conv_i(s_i)`` alone in the first block of a stage (``first_in_stage``, mmdetection's
    ``stage_type='stage'``). The last split is passed on untouched, except that the first block of a
    strided stage average-pools it (3x3, stride, pad 1) to match the strided convs. The concatenation
    goes through ``conv3``/``bn3``, is added to the (downsampled) input and ReLU'd.

    Args:
        inplanes: input channels.
        planes: bottleneck planes (output is ``4 * planes``).
        width: channels per split (``floor(planes * 26 / 64)`` for 26w).
        scales: number of splits (4 for 26w×4s).
        stride: stride of the 3x3 convs (pytorch style).
        downsample: shortcut module, or ``None`` for identity.
        first_in_stage: mmdetection's ``stage_type='stage'``.
        deform_conv: ``None``, or a class from :data:`DEFORM_CONVS` to use for the 3x3 convs (DCN).
    """

    expansion = 4

    def __init__(
        self,
        inplanes: int,
        planes: int,
        *,
        width: int,
        scales: int = 4,
        stride: int = 1,
        downsample: nn.Module | None = None,
        first_in_stage: bool = False,
        deform_conv: type[nn.Module] | None = None,
    ) -> None:
        super().__init__()
        if scales < 2:
            raise ValueError("Res2Net needs scales >= 2 (scales = 1 is a plain ResNet)")
        self.width = width
        self.scales = scales
        self.stride = stride
        self.first_in_stage = first_in_stage
        self.conv1 = nn.Conv2d(inplanes, width * scales, kernel_size=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width * scales)
        convs: list[nn.Module] = []
        for _ in range(scales - 1):
            if deform_conv is None:
                convs.append(_conv3x3(width, width, stride))
            else:
                convs.append(deform_conv(width, width, kernel_size=3, stride=stride, padding=1))
        self.convs = nn.ModuleList(convs)
        self.bns = nn.ModuleList(nn.BatchNorm2d(width) for _ in range(scales - 1))
        self.pool: nn.Module | None = None
        if first_in_stage and stride != 1:
            self.pool = nn.AvgPool2d(kernel_size=3, stride=stride, padding=1)
        self.conv3 = nn.Conv2d(width * scales, planes * self.expansion, kernel_size=1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        splits = torch.split(out, self.width, dim=1)
        pieces: list[Tensor] = []
        previous: Tensor | None = None
        for i, (conv, bn) in enumerate(zip(self.convs, self.bns)):
            inp = splits[i] if (i == 0 or self.first_in_stage or previous is None) else splits[i] + previous
            previous = self.relu(bn(conv(inp.contiguous())))
            pieces.append(previous)
        last = splits[self.scales - 1]
        pieces.append(self.pool(last) if self.pool is not None else last)
        out = self.bn3(self.conv3(torch.cat(pieces, dim=1)))
        if self.downsample is not None:
            identity = self.downsample(x)
        return self.relu(out + identity)


class Res2Net(StagedBackbone):
    """Res2Net-50/101/152 (v1d: deep stem, average-pool shortcuts) returning C3-C5.

    Args:
        depth: 50, 101 or 152.
        base_width: channels of the stem output and of ``layer1``'s ``planes`` (64 in the real
            network); stage widths scale by ``base_width / 64``.
        scales: splits per block (4).
        split_width: channels per split at ``planes = 64`` (26 for 26w); a block with ``planes`` has
            ``floor(planes * split_width / 64)`` channels per split (mmdetection's rule with its
            ``base_channels = 64``; here the 64 stays fixed so that tiny variants shrink too).
        frozen_stages: -1 nothing, 0 the stem, ``k >= 1`` the stem and ``layer1`` .. ``layer{k}``
            (mmdetection).
        norm_eval: keep all BatchNorm layers in eval mode during training.
        dcn: per stage 1-4, use deformable convs for the split 3x3 convs (``convs.i``).
        dcn_type: ``"dcn"`` (mmcv ``type='DCN'``) or ``"dcnv2"``.
    """

    def __init__(
        self,
        *,
        depth: int = 101,
        base_width: int = 64,
        scales: int = 4,
        split_width: int = 26,
        frozen_stages: int = 1,
        norm_eval: bool = True,
        dcn: Sequence[bool] = (False, False, False, False),
        dcn_type: str = "dcn",
    ) -> None:
        check_stage_arguments("Res2Net", depth, RES2NET_DEPTHS, dcn, dcn_type, frozen_stages)
        if base_width < 2 or base_width * split_width // 64 < 1:
            raise ValueError(f"base_width={base_width} is too small for split_width={split_width}")
        expansion = Bottle2neck.expansion
        super().__init__(
            depth=depth,
            base_width=base_width,
            expansion=expansion,
            frozen_stages=frozen_stages,
            norm_eval=norm_eval,
            dcn=dcn,
            dcn_type=dcn_type,
        )
        self.scales = scales
        self.split_width = split_width

        half = base_width // 2
        self.stem = nn.Sequential(
            _conv3x3(3, half, stride=2),
            nn.BatchNorm2d(half),
            nn.ReLU(inplace=True),
            _conv3x3(half, half),
            nn.BatchNorm2d(half),
            nn.ReLU(inplace=True),
            _conv3x3(half, base_width),
            nn.BatchNorm2d(base_width),
            nn.ReLU(inplace=True),
        )
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        blocks = RES2NET_DEPTHS[depth]
        inplanes = base_width
        stages: list[nn.Sequential] = []
        for i, (p, n) in enumerate(zip(self.planes, blocks)):
            stages.append(self._make_layer(inplanes, p, n, stride=1 if i == 0 else 2, use_dcn=self.dcn[i]))
            inplanes = p * expansion
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self._init_weights(zero_init_residual=False)  # as mmdetection's Res2Net
        self._freeze_stages()

    def _make_layer(
        self, inplanes: int, planes: int, blocks: int, stride: int, use_dcn: bool
    ) -> nn.Sequential:
        out_channels = planes * Bottle2neck.expansion
        downsample = None
        if stride != 1 or inplanes != out_channels:
            downsample = nn.Sequential(
                nn.AvgPool2d(kernel_size=stride, stride=stride, ceil_mode=True, count_include_pad=False),
                nn.Conv2d(inplanes, out_channels, kernel_size=1, bias=False),
                nn.BatchNorm2d(out_channels),
            )
        width = planes * self.split_width // 64
        deform_conv = DEFORM_CONVS[self.dcn_type] if use_dcn else None
        layers = [
            Bottle2neck(
                inplanes if i == 0 else out_channels,
                planes,
                width=width,
                scales=self.scales,
                stride=stride if i == 0 else 1,
                downsample=downsample if i == 0 else None,
                first_in_stage=i == 0,
                deform_conv=deform_conv,
            )
            for i in range(blocks)
        ]
        return nn.Sequential(*layers)

    def stem_modules(self) -> list[nn.Module]:
        return [self.stem]

    def forward_stem(self, x: Tensor) -> Tensor:
        return self.maxpool(self.stem(x))
