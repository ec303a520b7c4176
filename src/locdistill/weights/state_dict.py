"""The model weights inside what :func:`~locdistill.weights.read.read_weights` returned.

One rule for every format: ours (``model``, or ``ema.module`` with ``use_ema``), a ``state_dict``
entry, a plain state dict, each with an optional DDP ``module.`` prefix; mmdetection key names
(``bbox_head.*``) are converted to ours (:mod:`locdistill.weights.mmdet_keys`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import Tensor

from locdistill.weights.errors import WeightsError
from locdistill.weights.mmdet_import import mmdet_state_dict
from locdistill.weights.read import WeightsFile


def is_state_dict(obj: Any) -> bool:
    """A non-empty mapping whose values are all tensors."""
    return isinstance(obj, Mapping) and len(obj) > 0 and all(isinstance(v, Tensor) for v in obj.values())


def extract_state_dict(
    ckpt: WeightsFile | Mapping[str, Any], use_ema: bool = False
) -> tuple[dict[str, Tensor], list[str]]:
    """The detector weights in ``ckpt`` in our key names.

    Args:
        ckpt: a read file, or a loaded checkpoint mapping.
        use_ema: take the EMA copy of a locdistill training checkpoint.

    Returns:
        ``(state_dict, skipped)``: ``skipped`` lists the keys of an mmdetection file that have no place
        in a GFL (an LD checkpoint's ``teacher_model.*``).

    Raises:
        WeightsError: no weights found, no EMA weights, or an mmdetection detector that is not GFL / LD.
    """
    source = str(ckpt.path) if isinstance(ckpt, WeightsFile) else "the checkpoint"
    content: Mapping[str, Any] = ckpt.content if isinstance(ckpt, WeightsFile) else ckpt
    if use_ema:
        ema = content.get("ema")
        if not isinstance(ema, Mapping) or not is_state_dict(ema.get("module")):
            raise WeightsError(f"{source} has no EMA weights (train with train.ema=true)")
        sd = ema["module"]
    elif is_state_dict(content.get("model")):
        sd = content["model"]
    elif isinstance(content.get("state_dict"), Mapping):
        sd = {k: v for k, v in content["state_dict"].items() if isinstance(v, Tensor)}
    elif is_state_dict(content):
        sd = content
    else:
        raise WeightsError(
            f"no model weights found in {source}: expected a locdistill checkpoint ('model'), a 'state_dict' "
            f"entry or a plain state dict; top-level keys are {sorted(map(str, content))[:10]}"
        )
    if sd and all(str(k).startswith("module.") for k in sd):
        sd = {str(k)[len("module.") :]: v for k, v in sd.items()}
    if any(str(k).startswith("bbox_head.") for k in sd):  # mmdetection's names
        try:
            return mmdet_state_dict({"state_dict": dict(sd)}, source)
        except ValueError as e:
            raise WeightsError(str(e)) from None
    if not sd:
        raise WeightsError(f"no model weights found in {source}: its state dict holds no tensors")
    return dict(sd), []
