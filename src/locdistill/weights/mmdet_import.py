"""Import mmdetection GFL v1 / GFL v2 / LD checkpoints without executing code from the file.

Real model-zoo checkpoints carry pickled mmengine/mmcv objects and numpy arrays in ``meta`` and
``message_hub``, so ``torch.load(weights_only=True)`` refuses them. :func:`restricted_load` uses
torch's own zip reader with an unpickler that rebuilds tensors and plain containers only; every
other global the file names becomes an inert :class:`Placeholder` (its constructor arguments and
state are kept as data, nothing is called). Loading such a file can therefore never run its code.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from locdistill.weights.mmdet_keys import convert_detector_state_dict

# Globals a tensor checkpoint needs; everything here only rebuilds tensors or plain containers.
_ALLOWED: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): __import__("collections").OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): torch._utils._rebuild_tensor_v2,  # type: ignore[attr-defined]
    ("torch._utils", "_rebuild_parameter"): torch._utils._rebuild_parameter,  # type: ignore[attr-defined]
    ("torch", "Size"): torch.Size,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("builtins", "slice"): slice,
    ("builtins", "complex"): complex,
}
for _dtype in (
    torch.float32,
    torch.float16,
    torch.bfloat16,
    torch.float64,
    torch.int64,
    torch.int32,
    torch.uint8,
    torch.int8,
    torch.int16,
    torch.bool,
):
    _ALLOWED[("torch", str(_dtype).split(".")[1])] = _dtype


class Placeholder:
    """Stands in for any object the checkpoint names that is not a tensor or plain data.

    ``Placeholder.module``/``name`` record what it replaced; ``args`` and ``state`` keep what the pickle
    passed to it, as inert data.
    """

    module = ""
    name = ""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.args = args
        self.kwargs = kwargs
        self.state: Any = None

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def __setitem__(self, key: Any, value: Any) -> None:  # dict subclasses are rebuilt with SETITEMS
        if self.state is None:
            self.state = {}
        if isinstance(self.state, dict):
            self.state[key] = value

    def append(self, value: Any) -> None:  # list subclasses are rebuilt with APPENDS
        if not isinstance(self.state, list):
            self.state = []
        self.state.append(value)

    def extend(self, values: Any) -> None:
        for v in values:
            self.append(v)

    def __repr__(self) -> str:
        return f"<placeholder for {self.module}.{self.name}>"


def _placeholder(module: str, name: str) -> type:
    return type(f"Placeholder[{module}.{name}]", (Placeholder,), {"module": module, "name": name})


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED:
            return _ALLOWED[(module, name)]
        return _placeholder(module, name)


class _RestrictedPickleModule:
    """A ``pickle_module`` for ``torch.load`` whose unpickler resolves no arbitrary globals."""

    Unpickler = _RestrictedUnpickler
    load = staticmethod(lambda f, **kw: _RestrictedUnpickler(f, **kw).load())
    __name__ = "locdistill_restricted_pickle"


def restricted_load(path: str | Path) -> Any:
    """Load a torch checkpoint keeping tensors and plain data; see the module docstring."""
    return torch.load(path, map_location="cpu", weights_only=False, pickle_module=_RestrictedPickleModule)  # type: ignore[arg-type]


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
    if "bbox_head.gfl_cls.weight" not in state or "bbox_head.gfl_reg.weight" not in state:
        heads = sorted({k.split(".")[1] for k in state if k.startswith("bbox_head.")})[:8]
        raise ValueError(
            f"{source}: not a GFL/LD detector checkpoint: its bbox_head has {heads or 'no layers'}, "
            "expected gfl_cls and gfl_reg"
        )
    return convert_detector_state_dict(state)


def mmdet_meta(obj: Any) -> dict[str, Any]:
    """Plain-data fields of an mmdetection checkpoint's ``meta`` (epoch, iter, versions, class names)."""
    meta = obj.get("meta") if isinstance(obj, dict) else None
    out: dict[str, Any] = {}
    if not isinstance(meta, dict):
        return out
    for key in ("epoch", "iter", "mmdet_version", "mmengine_version", "config", "CLASSES", "dataset_meta"):
        value = meta.get(key)
        if isinstance(value, (int, float, str)) or (
            isinstance(value, (list, tuple, dict)) and not _contains_placeholder(value)
        ):
            out[key] = value
    return out


def _contains_placeholder(value: Any) -> bool:
    if isinstance(value, Placeholder):
        return True
    if isinstance(value, dict):
        return any(_contains_placeholder(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return any(_contains_placeholder(v) for v in value)
    return False


def infer_head_settings(state: dict[str, Tensor]) -> dict[str, Any]:
    """Head settings readable from converted weights: classes, reg_max, width, depth, DGQP, FPN width."""
    cls_w = state["head.gfl_cls.weight"]
    reg_w = state["head.gfl_reg.weight"]
    stacked = len({k.split(".")[2] for k in state if k.startswith("head.cls_convs.")})
    return {
        "num_classes": int(cls_w.shape[0]),
        "reg_max": int(reg_w.shape[0]) // 4 - 1,
        "feat_channels": int(cls_w.shape[1]),
        "stacked_convs": stacked,
        "dgqp": any(k.startswith("head.dgqp.") for k in state),
        "num_levels": len({k.split(".")[2] for k in state if k.startswith("head.scales.")}),
        "fpn_channels": int(state["neck.lateral_convs.0.conv.weight"].shape[0])
        if "neck.lateral_convs.0.conv.weight" in state
        else None,
    }


def convert_mmdet_checkpoint(src: str | Path, out: str | Path) -> dict[str, Any]:
    """``locdistill convert --from-mmdet``: write an mmdetection GFL/LD checkpoint in our format.

    The output holds ``model`` (our key names), and ``meta`` with the source's plain metadata, the
    head settings read from the weights and the keys that could not be placed (an LD checkpoint's
    teacher). Prints nothing; returns a report dict.
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
    }
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in state.items()}, str(out), metadata={"format": "locdistill"})
    else:
        tmp = out.with_name(out.name + ".tmp")
        torch.save({"model": state, "meta": {"converted_from": "mmdetection", **_plain(report)}}, tmp)
        tmp.replace(out)
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
