"""ResNet-18/34/50/101/152 and ResNeXt (e.g. 101-32x4d), optionally with deformable 3x3 convs.

Built from torchvision's own ``BasicBlock`` / ``Bottleneck``, so the state-dict keys are torchvision's
(``conv1.weight``, ``bn1.*``, ``layer1.0.conv1.weight``, ``layer1.0.downsample.0.weight`` ...), which
are also mmdetection's ``ResNet`` / ``ResNeXt`` keys (``style='pytorch'``: the stride sits on the 3x3
conv). There is no ``fc``. torchvision ImageNet weights and mmdetection ``backbone.*`` weights load
unchanged. With DCN in a stage, each bottleneck's ``conv2`` becomes a deformable conv that keeps the
key ``conv2.weight`` and adds ``conv2.conv_offset.{weight,bias}`` (mmcv's layout).
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn
from torchvision.models.resnet import BasicBlock, Bottleneck, conv1x1

from .deform_conv import DEFORM_CONVS
from .staged import StagedBackbone, check_stage_arguments

RESNET_DEPTHS: dict[int, tuple[type[BasicBlock] | type[Bottleneck], tuple[int, int, int, int]]] = {
    18: (BasicBlock, (2, 2, 2, 2)),
    34: (BasicBlock, (3, 4, 6, 3)),
    50: (Bottleneck, (3, 4, 6, 3)),
    101: (Bottleneck, (3, 4, 23, 3)),
    152: (Bottleneck, (3, 8, 36, 3)),
}
"""depth -> (block, blocks per stage)."""


class ResNet(StagedBackbone):
    """ResNet / ResNeXt returning C3-C5 (the outputs of ``layer2``, ``layer3``, ``layer4``).

    Args:
        depth: 18, 34, 50, 101 or 152.
        base_width: channels of the stem and of ``layer1``'s ``planes`` (64 in the real network). Every
            stage width is scaled by ``base_width / 64``; small values give tiny test/CPU variants.
        groups: ResNeXt cardinality (32 for ResNeXt-101-32x4d); 1 for ResNet.
        width_per_group: ResNeXt bottleneck width per group at ``planes = 64`` (4 for 32x4d); 64 for
            ResNet. The 3x3 conv of a bottleneck has ``int(planes * width_per_group / 64) * groups``
            channels (torchvision's and mmdetection's rule).
        frozen_stages: mmdetection semantics: -1 freezes nothing, 0 the stem (``conv1``, ``bn1``),
            ``k >= 1`` the stem and ``layer1`` .. ``layer{k}``.
        norm_eval: keep all BatchNorm layers in eval mode during training.
        dcn: per stage 1-4, replace the bottlenecks' 3x3 ``conv2`` with a deformable conv (also the
            stride-2 one: mmdetection's ``fallback_on_stride=False``). Bottleneck blocks only.
        dcn_type: ``"dcn"`` (mmcv ``type='DCN'``, DCNv1, used by all mmdetection GFL/LD DCN configs) or
            ``"dcnv2"`` (mmcv ``type='DCNv2'``, modulated).
    """

    def __init__(
        self,
        *,
        depth: int,
        base_width: int = 64,
        groups: int = 1,
        width_per_group: int = 64,
        frozen_stages: int = 1,
        norm_eval: bool = True,
        dcn: Sequence[bool] = (False, False, False, False),
        dcn_type: str = "dcn",
    ) -> None:
        check_stage_arguments("ResNet", depth, RESNET_DEPTHS, dcn, dcn_type, frozen_stages)
        block, layers = RESNET_DEPTHS[depth]
        if any(dcn) and block is BasicBlock:
            raise ValueError(f"DCN needs bottleneck blocks; resnet{depth} has basic blocks (as mmdetection)")
        if block is BasicBlock and (groups != 1 or width_per_group != 64):
            raise ValueError("basic-block ResNets (18/34) support only groups=1, width_per_group=64")
        if base_width < 1 or int(base_width * width_per_group / 64) * groups < 1:
            raise ValueError(
                f"base_width={base_width} is too small for groups={groups}, width_per_group={width_per_group}"
            )
        super().__init__(
            depth=depth,
            base_width=base_width,
            expansion=block.expansion,
            frozen_stages=frozen_stages,
            norm_eval=norm_eval,
            dcn=dcn,
            dcn_type=dcn_type,
        )
        self.groups = groups
        self.width_per_group = width_per_group

        self.conv1 = nn.Conv2d(3, base_width, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(base_width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.inplanes = base_width
        self.layer1 = self._make_layer(block, self.planes[0], layers[0], stride=1)
        self.layer2 = self._make_layer(block, self.planes[1], layers[1], stride=2)
        self.layer3 = self._make_layer(block, self.planes[2], layers[2], stride=2)
        self.layer4 = self._make_layer(block, self.planes[3], layers[3], stride=2)
        self._init_weights()
        if groups == 1:
            self._zero_init_residual()
        for stage, use_dcn in enumerate(self.dcn):
            if use_dcn:
                self._make_deformable(self.stages[stage])
        self._freeze_stages()

    def _make_layer(
        self, block: type[BasicBlock] | type[Bottleneck], planes: int, blocks: int, stride: int
    ) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                conv1x1(self.inplanes, planes * block.expansion, stride),
                nn.BatchNorm2d(planes * block.expansion),
            )
        layers: list[nn.Module] = []
        for i in range(blocks):
            layers.append(
                block(
                    self.inplanes,
                    planes,
                    stride=stride if i == 0 else 1,
                    downsample=downsample if i == 0 else None,
                    groups=self.groups,
                    base_width=self.width_per_group,
                )
            )
            self.inplanes = planes * block.expansion
        return nn.Sequential(*layers)

    def _zero_init_residual(self) -> None:
        """Zero the last BatchNorm of every block (``bn2`` basic, ``bn3`` bottleneck; weight and bias), so
        each residual branch starts at zero: mmdetection ``ResNet(zero_init_residual=True)``, its default
        when training from scratch. mmdetection's ResNeXt and Res2Net blocks are other classes, which its
        rule (``block is Bottleneck``) skips, so ``groups > 1`` keeps 1 as there. Pretrained weights
        overwrite these values."""
        for stage in self.stages:
            for block in stage:
                last = block.bn3 if isinstance(block, Bottleneck) else block.bn2
                assert isinstance(last, nn.BatchNorm2d)
                nn.init.zeros_(last.weight)
                nn.init.zeros_(last.bias)

    def _make_deformable(self, layer: nn.Sequential) -> None:
        """Swap each bottleneck's ``conv2`` (3x3, maybe stride 2) for a deformable conv that keeps its
        weight: ``conv2.weight`` stays, ``conv2.conv_offset`` is added (zeros)."""
        conv_cls = DEFORM_CONVS[self.dcn_type]
        for block in layer:
            assert isinstance(block, Bottleneck)
            plain = block.conv2
            assert isinstance(plain, nn.Conv2d)
            deform = conv_cls(
                plain.in_channels,
                plain.out_channels,
                kernel_size=3,
                stride=int(plain.stride[0]),
                padding=int(plain.dilation[0]),
                dilation=int(plain.dilation[0]),
                groups=plain.groups,
                deform_groups=1,
            )
            deform.weight.data.copy_(plain.weight.data)
            block.conv2 = deform

    def stem_modules(self) -> list[nn.Module]:
        return [self.conv1, self.bn1]

    def forward_stem(self, x: Tensor) -> Tensor:
        return self.maxpool(self.relu(self.bn1(self.conv1(x))))
