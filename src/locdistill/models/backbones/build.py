"""``build_backbone``: the only place that reads a :class:`BackboneConfig`."""

from __future__ import annotations

from collections.abc import Callable

from ...config import BackboneConfig
from .base import Backbone
from .efficientnet_lite import EfficientNetLite
from .res2net import Res2Net
from .resnet import ResNet
from .weights import PretrainedWeightsError, load_pretrained


def _resnet(depth: int, groups: int = 1, width_per_group: int = 64) -> Callable[[BackboneConfig], Backbone]:
    def build(cfg: BackboneConfig) -> Backbone:
        return ResNet(
            depth=depth,
            base_width=cfg.base_width,
            groups=groups,
            width_per_group=width_per_group,
            frozen_stages=cfg.frozen_stages,
            norm_eval=cfg.norm_eval,
            dcn=cfg.dcn,
            dcn_type=cfg.dcn_type,
        )

    return build


def _res2net(depth: int) -> Callable[[BackboneConfig], Backbone]:
    def build(cfg: BackboneConfig) -> Backbone:
        return Res2Net(
            depth=depth,
            base_width=cfg.base_width,
            scales=4,
            split_width=26,
            frozen_stages=cfg.frozen_stages,
            norm_eval=cfg.norm_eval,
            dcn=cfg.dcn,
            dcn_type=cfg.dcn_type,
        )

    return build


def _efficientnet_lite(variant: int) -> Callable[[BackboneConfig], Backbone]:
    def build(cfg: BackboneConfig) -> Backbone:
        if any(cfg.dcn):
            raise ValueError(f"backbone efficientnet_lite{variant} does not support dcn (got {cfg.dcn})")
        return EfficientNetLite(variant=variant, frozen_stages=cfg.frozen_stages, norm_eval=cfg.norm_eval)

    return build


BACKBONES: dict[str, Callable[[BackboneConfig], Backbone]] = {
    "resnet18": _resnet(18),
    "resnet34": _resnet(34),
    "resnet50": _resnet(50),
    "resnet101": _resnet(101),
    "resnext101_32x4d": _resnet(101, groups=32, width_per_group=4),
    "res2net101_26w_4s": _res2net(101),
    "efficientnet_lite0": _efficientnet_lite(0),
    "efficientnet_lite1": _efficientnet_lite(1),
    "efficientnet_lite2": _efficientnet_lite(2),
}
"""Backbone name (``BackboneConfig.name``) -> builder."""


def build_backbone(cfg: BackboneConfig) -> Backbone:
    """Build the backbone named by ``cfg.name`` and load ``cfg.pretrained`` weights.

    ResNet-family DCN layers are mmcv ``type='DCN'`` (DCNv1) by default, as in every mmdetection GFL/LD
    DCN config; ``dcn_type: dcnv2`` gives modulated ones (mmcv ``type='DCNv2'``).
    ``base_width`` is ignored by EfficientNet-Lite.

    Raises:
        ValueError: unknown name or invalid options.
        PretrainedWeightsError: ImageNet weights cannot be obtained (offline, a base_width they do not fit).
        WeightsError: a ``pretrained`` file cannot be read.
    """
    if cfg.name not in BACKBONES:
        raise ValueError(f"unknown backbone {cfg.name!r}; choose one of: {', '.join(BACKBONES)}")
    backbone = BACKBONES[cfg.name](cfg)
    if cfg.pretrained is True and not cfg.name.startswith("efficientnet") and cfg.base_width != 64:
        raise PretrainedWeightsError(
            "ImageNet weights exist only for the real network (base_width 64), "
            f"not base_width {cfg.base_width}"
        )
    load_pretrained(backbone, cfg.name, cfg.pretrained)
    return backbone
