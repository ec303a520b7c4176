"""The common frame of ResNet / ResNeXt and Res2Net: a stem, then four stages ``layer1`` .. ``layer4``.

The stem reduces the input by 4 (stride-2 convs and a stride-2 max pool); the stages have strides
1, 2, 2, 2 and ``planes = base_width * 2**i`` (output ``planes * expansion`` channels), so C3, C4, C5
are the outputs of ``layer2``, ``layer3``, ``layer4`` at strides 8, 16, 32. This class holds what the
two families share: argument checks, mmdetection's weight init, ``frozen_stages`` (-1 nothing, 0 the
stem, ``k >= 1`` the stem and ``layer1`` .. ``layer{k}``) and the forward pass. A subclass builds its
stem and stages, then calls :meth:`_init_weights` and :meth:`_freeze_stages`.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

from torch import Tensor, nn

from .base import IMAGENET_MEAN, IMAGENET_STD, Backbone
from .deform_conv import DEFORM_CONVS, _DeformConvBase


def check_stage_arguments(
    family: str,
    depth: int,
    depths: Collection[int],
    dcn: Sequence[bool],
    dcn_type: str,
    frozen_stages: int,
) -> None:
    """``ValueError`` naming the argument when ``depth``, the per-stage ``dcn`` flags, ``dcn_type`` or
    ``frozen_stages`` is out of range for a ``family`` ("ResNet", "Res2Net") backbone."""
    if depth not in depths:
        raise ValueError(f"{family} depth must be one of {sorted(depths)}, got {depth}")
    if len(dcn) != 4:
        raise ValueError(f"dcn needs one flag per stage (4), got {list(dcn)}")
    if dcn_type not in DEFORM_CONVS:
        raise ValueError(f"dcn_type must be one of {sorted(DEFORM_CONVS)}, got {dcn_type!r}")
    if frozen_stages > 4:
        raise ValueError(f"frozen_stages must be in [-1, 4], got {frozen_stages}")


class StagedBackbone(Backbone):
    """A stem and the four stages ``layer1`` .. ``layer4``; ``forward`` returns C3-C5.

    Args:
        depth: the network depth (the subclass's table of blocks per stage).
        base_width: ``layer1``'s ``planes``; stage ``i`` has ``base_width * 2**i``.
        expansion: output channels per plane of the stages' blocks (1 basic, 4 bottleneck).
        frozen_stages, norm_eval: see :class:`~locdistill.models.backbones.base.Backbone`.
        dcn: per stage 1-4, use deformable 3x3 convs there.
        dcn_type: a key of :data:`~locdistill.models.backbones.deform_conv.DEFORM_CONVS`.
    """

    layer1: nn.Sequential
    layer2: nn.Sequential
    layer3: nn.Sequential
    layer4: nn.Sequential

    def __init__(
        self,
        *,
        depth: int,
        base_width: int,
        expansion: int,
        frozen_stages: int,
        norm_eval: bool,
        dcn: Sequence[bool],
        dcn_type: str,
    ) -> None:
        planes = [base_width * 2**i for i in range(4)]
        super().__init__(
            out_channels=[p * expansion for p in planes[1:]],
            mean=IMAGENET_MEAN,
            std=IMAGENET_STD,
            frozen_stages=frozen_stages,
            norm_eval=norm_eval,
        )
        self.planes = planes
        self.depth = depth
        self.dcn = tuple(bool(d) for d in dcn)
        self.dcn_type = dcn_type

    @property
    def stages(self) -> list[nn.Sequential]:
        return [self.layer1, self.layer2, self.layer3, self.layer4]

    def stem_modules(self) -> list[nn.Module]:
        """The stem's modules with parameters (frozen with ``frozen_stages >= 0``)."""
        raise NotImplementedError

    def forward_stem(self, x: Tensor) -> Tensor:
        """``[B, 3, H, W] -> [B, base_width, H / 4, W / 4]``."""
        raise NotImplementedError

    def frozen_modules(self) -> list[nn.Module]:
        if self.frozen_stages < 0:
            return []
        return [*self.stem_modules(), *self.stages[: self.frozen_stages]]

    def _init_weights(self) -> None:
        """mmdetection's (and torchvision's) init: Kaiming normal (fan_out, ReLU) convs, BN weight 1 and
        bias 0; the offset convs of deformable layers stay at zero. (:class:`ResNet` then zeroes each
        block's last BN, as mmdetection's ResNet does.)"""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        for m in self.modules():
            if isinstance(m, _DeformConvBase):
                m.init_offset()

    def forward(self, x: Tensor) -> list[Tensor]:
        c2 = self.layer1(self.forward_stem(x))
        c3 = self.layer2(c2)
        c4 = self.layer3(c3)
        c5 = self.layer4(c4)
        return [c3, c4, c5]
