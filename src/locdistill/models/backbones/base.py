"""The interface every backbone implements: C3-C5 feature maps, their widths, the input normalisation,
and mmdetection's ``frozen_stages`` / ``norm_eval`` training semantics."""

from __future__ import annotations

from torch import Tensor, nn

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
"""ImageNet mean of RGB images in [0, 1] (mmdetection's 123.675, 116.28, 103.53 divided by 255)."""
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)
"""ImageNet std of RGB images in [0, 1] (mmdetection's 58.395, 57.12, 57.375 divided by 255)."""


class Backbone(nn.Module):
    """Feature extractor for the FPN.

    ``forward(x)`` takes ``x: [B, 3, H, W]`` (RGB, normalised with :attr:`mean` / :attr:`std`; H and W
    multiples of 32) and returns ``[C3, C4, C5]`` with strides 8, 16 and 32, i.e. shapes
    ``[B, out_channels[i], H / s, W / s]``.

    Attributes:
        out_channels: channels of C3, C4, C5.
        mean, std: per-channel input normalisation for RGB images scaled to [0, 1]:
            ``x = (image / 255 - mean) / std``.
        frozen_stages: how many leading stages are frozen (no gradients, BatchNorm in eval mode),
            as each subclass documents.
        norm_eval: keep every BatchNorm layer in eval mode (running statistics fixed) while training.

    Subclasses build their layers, then call :meth:`_freeze_stages`; they list what is frozen in
    :meth:`frozen_modules`.
    """

    out_channels: list[int]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    def __init__(
        self,
        *,
        out_channels: list[int],
        mean: tuple[float, float, float],
        std: tuple[float, float, float],
        frozen_stages: int,
        norm_eval: bool,
    ) -> None:
        super().__init__()
        self.out_channels = list(out_channels)
        self.mean = mean
        self.std = std
        self.frozen_stages = frozen_stages
        self.norm_eval = norm_eval

    def frozen_modules(self) -> list[nn.Module]:
        """The modules frozen by :attr:`frozen_stages` (stem first)."""
        raise NotImplementedError

    def forward(self, x: Tensor) -> list[Tensor]:
        raise NotImplementedError

    def _freeze_stages(self) -> None:
        for module in self.frozen_modules():
            module.eval()
            for param in module.parameters():
                param.requires_grad_(False)

    def train(self, mode: bool = True) -> Backbone:
        """Switch to training mode, keeping frozen stages frozen and, with ``norm_eval``, every
        BatchNorm layer in eval mode (mmdetection's ``ResNet.train``)."""
        super().train(mode)
        self._freeze_stages()
        if mode and self.norm_eval:
            for module in self.modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm):
                    module.eval()
        return self
