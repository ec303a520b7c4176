"""Import mmdetection GFL v1 / GFL v2 / LD checkpoints without executing code from the file.

Real model-zoo checkpoints carry pickled mmengine/mmcv objects (``ConfigDict``, ``HistoryBuffer``)
and numpy arrays in ``meta`` and ``message_hub``, so ``torch.load(weights_only=True)`` refuses them.
They are read with :func:`locdistill.weights.restricted_pickle.restricted_load`, which keeps tensors and
plain data, turns every other object into an inert :class:`Placeholder` and never runs code from the
file nor lets it change anything outside the returned data.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from locdistill.utils.atomic_write import atomic_write
from locdistill.weights.mmdet_keys import convert_detector_state_dict
from locdistill.weights.restricted_pickle import (
    DEFAULT_MAX_STORAGE_BYTES,
    Placeholder,
    UnsafeCheckpointError,
    contains_placeholder,
    plain_data,
    restricted_load,
)

__all__ = [
    "DEFAULT_MAX_STORAGE_BYTES",
    "Placeholder",
    "UnsafeCheckpointError",
    "convert_mmdet_checkpoint",
    "infer_family",
    "infer_head_settings",
    "is_mmdet_checkpoint",
    "mmdet_class_names",
    "mmdet_meta",
    "mmdet_state_dict",
    "restricted_load",
]


def is_mmdet_checkpoint(obj: Any) -> bool:
    """A dict with a ``state_dict`` (mmdetection's layout) whose keys carry ``bbox_head.``/``backbone.``."""
    if not isinstance(obj, dict) or not isinstance(obj.get("state_dict"), dict):
        return False
    return any(str(k).startswith(("bbox_head.", "backbone.", "neck.")) for k in obj["state_dict"])


def mmdet_state_dict(obj: Any, source: str = "checkpoint") -> tuple[dict[str, Tensor], list[str]]:
    """The GFL detector weights of an mmdetection checkpoint, in our key names.

    Raises:
        ValueError: when the checkpoint is not a GFL / GFL v2 / LD detector (named in the message).

    Returns:
        ``(state_dict, skipped_keys)``; an LD checkpoint's ``teacher_model.*`` keys are skipped.
    """
    if not is_mmdet_checkpoint(obj):
        raise ValueError(f"{source}: not an mmdetection checkpoint (no 'state_dict' with detector keys)")
    state = {k: v for k, v in obj["state_dict"].items() if isinstance(v, Tensor)}
    if not any(
        f"bbox_head.{c}.weight" in state and f"bbox_head.{r}.weight" in state for c, r in HEAD_OUTPUTS
    ):
        heads = sorted({k.split(".")[1] for k in state if k.startswith("bbox_head.")})[:8]
        raise ValueError(
            f"{source}: not a GFL/LD detector checkpoint: its bbox_head has {heads or 'no layers'}, "
            "expected gfl_cls and gfl_reg (or the LD code's RetinaGFL / ATSS-GFL atss_cls and atss_reg, "
            "FCOS-GFL conv_cls and conv_reg)"
        )
    return convert_detector_state_dict(state)


HEAD_OUTPUTS = (("gfl_cls", "gfl_reg"), ("atss_cls", "atss_reg"), ("conv_cls", "conv_reg"))
"""The (class, distribution) output convs of the heads an mmdetection checkpoint may hold: GFL, the LD
code's RetinaGFL / ATSS-GFL, its FCOS-GFL."""


def infer_family(state: dict[str, Tensor]) -> str:
    """``model.type`` of converted weights: ``gfl``, ``retina_gfl`` (``atss_cls`` without centerness),
    ``atss_gfl`` or ``fcos_gfl``."""
    if "head.gfl_cls.weight" in state:
        return "gfl"
    if "head.conv_cls.weight" in state:
        return "fcos_gfl"
    return "atss_gfl" if "head.atss_centerness.weight" in state else "retina_gfl"


def mmdet_meta(obj: Any) -> dict[str, Any]:
    """Plain-data fields of an mmdetection checkpoint's ``meta``: epoch, iter, versions, the config text
    (``config`` in 2.x, ``cfg`` in 3.x) and class names (``CLASSES`` in 2.x, ``dataset_meta`` in 3.x).
    Pickled dict/list subclasses (mmengine's ``ConfigDict``) come back as plain dicts/lists; fields that
    still hold other pickled objects are left out."""
    meta = plain_data(obj.get("meta")) if isinstance(obj, dict) else None
    out: dict[str, Any] = {}
    if not isinstance(meta, dict):
        return out
    keys = ("epoch", "iter", "mmdet_version", "mmengine_version", "mmcv_version", "config", "cfg", "CLASSES")
    for key in (*keys, "dataset_meta"):
        value = meta.get(key)
        if isinstance(value, (int, float, str)) or (
            isinstance(value, (list, tuple, dict)) and not contains_placeholder(value)
        ):
            out[key] = value
    return out


def mmdet_class_names(obj: Any) -> list[str] | None:
    """The class names an mmdetection checkpoint records (2.x ``meta.CLASSES``, 3.x
    ``meta.dataset_meta.classes``), or ``None``."""
    meta = mmdet_meta(obj)
    dataset_meta = meta.get("dataset_meta")
    names = meta.get("CLASSES") or (dataset_meta.get("classes") if isinstance(dataset_meta, dict) else None)
    if isinstance(names, (list, tuple)) and names and all(isinstance(n, str) for n in names):
        return list(names)
    return None


def infer_head_settings(state: dict[str, Tensor]) -> dict[str, Any]:
    """Head settings readable from converted weights: the family (``type``), classes, reg_max, width,
    depth, DGQP, FPN width (and the anchors per location of RetinaGFL)."""
    family = infer_family(state)
    cls_name, reg_name = {"gfl": HEAD_OUTPUTS[0], "fcos_gfl": HEAD_OUTPUTS[2]}.get(family, HEAD_OUTPUTS[1])
    cls_w = state[f"head.{cls_name}.weight"]
    reg_w = state[f"head.{reg_name}.weight"]
    stacked = len({k.split(".")[2] for k in state if k.startswith("head.cls_convs.")})
    anchors = 1
    if family == "retina_gfl":  # A*C class and A*4*(R+1) box channels: A from the ratio of the two
        anchors = 9 if int(cls_w.shape[0]) % 9 == 0 and int(reg_w.shape[0]) % 9 == 0 else 1
    return {
        "type": family,
        "num_anchors": anchors,
        "num_classes": int(cls_w.shape[0]) // anchors,
        "reg_max": int(reg_w.shape[0]) // anchors // 4 - 1,
        "feat_channels": int(cls_w.shape[1]),
        "stacked_convs": stacked,
        "dgqp": any(k.startswith("head.dgqp.") for k in state),
        "num_levels": len({k.split(".")[2] for k in state if k.startswith("head.scales.")}),
        "fpn_channels": int(state["neck.lateral_convs.0.conv.weight"].shape[0])
        if "neck.lateral_convs.0.conv.weight" in state
        else None,
    }


def convert_mmdet_checkpoint(
    src: str | Path, out: str | Path, config: dict[str, Any] | None = None
) -> dict[str, Any]:
    """``locdistill convert --from-mmdet``: write an mmdetection GFL/LD checkpoint in our format.

    The output holds ``model`` (our key names), and ``meta`` with the source's plain metadata, its class
    names, the head settings read from the weights and the keys that could not be placed (an LD
    checkpoint's teacher); ``config`` (a locdistill config as a plain dict, e.g. a zoo entry's), when
    given, is stored too, so the file needs no config beside it. A ``.safetensors`` output keeps
    ``meta`` (and ``config``) as JSON in its metadata. The file is written atomically with the usual
    permissions. Prints nothing; returns a report dict.
    """
    from locdistill.utils.hashing import sha256_file

    obj = restricted_load(src)
    state, skipped = mmdet_state_dict(obj, str(src))
    report = {
        "source": str(src),
        "source_sha256": sha256_file(src),
        "num_tensors": len(state),
        "skipped": skipped,
        "head": infer_head_settings(state),
        "mmdet_meta": mmdet_meta(obj),
        "class_names": mmdet_class_names(obj),
    }
    out = Path(out)
    meta = {"converted_from": "mmdetection", **_plain(report)}
    if out.suffix == ".safetensors":  # the layout of engine.checkpoint.save_checkpoint: meta as JSON
        from safetensors.torch import save_file

        tensors = {k: v.contiguous() for k, v in state.items()}
        metadata = {"format": "pt", "meta": json.dumps(meta)}
        if config is not None:
            metadata["config"] = json.dumps(config)
        atomic_write(out, lambda tmp: save_file(tensors, tmp, metadata=metadata))
    else:
        content: dict[str, Any] = {"model": state, "meta": meta}
        if config is not None:
            content["config"] = config
        atomic_write(out, lambda tmp: torch.save(content, tmp))
    return report


def _plain(value: Any) -> Any:
    """Keep only what ``torch.load(weights_only=True)`` can read back."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return repr(value)
