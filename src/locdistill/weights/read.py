"""Reading any supported weights file into plain data, never running code from it.

Supported files and what :func:`read_weights` makes of them (``WeightsFile.format``):

* ``locdistill``: a ``torch.save`` checkpoint of ours (``model``, ``ema``, ``config``, ``meta``, ...),
  read with ``torch.load(weights_only=True)``;
* ``safetensors``: tensors as ``model``, and the ``config`` / ``meta`` JSON strings of the file's metadata;
* ``state_dict``: a ``{"state_dict": sd}`` file or a plain state dict (DDP ``module.`` prefixes allowed);
* ``mmdetection``: a checkpoint whose ``state_dict`` carries mmdetection key names (``bbox_head.*``).
  Real ones pickle mmengine/numpy objects, which ``weights_only`` refuses; those go through the
  restricted unpickler of :mod:`locdistill.weights.mmdet_import`, which never calls anything the file
  names. Any other file that ``weights_only`` refuses is refused.

A file that cannot be read raises :class:`~locdistill.weights.errors.WeightsError` with one line that
says what the file is (:func:`locdistill.weights.sniff.describe_unreadable`).
"""

from __future__ import annotations

import json
import pickle
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from locdistill.weights.errors import WeightsError, WeightsFileNotFoundError
from locdistill.weights.mmdet_import import (
    is_mmdet_checkpoint,
    mmdet_class_names,
    mmdet_meta,
    restricted_load,
)
from locdistill.weights.restricted_pickle import UnsafeCheckpointError
from locdistill.weights.sniff import describe_unreadable

SAFETENSORS_SUFFIX = ".safetensors"


@dataclass
class WeightsFile:
    """What a weights file holds, as plain data.

    ``content`` is the file's top-level mapping as loaded (a safetensors file gives
    ``{"model": tensors, "config": ..., "meta": ...}``); ``format`` is one of ``locdistill``,
    ``safetensors``, ``state_dict``, ``mmdetection`` (see the module docstring).
    """

    path: Path
    format: str
    content: dict[str, Any]

    @property
    def config(self) -> dict[str, Any] | None:
        """The locdistill config stored in the file (``None``: none, e.g. mmdetection or a state dict)."""
        config = self.content.get("config") if self.format != "mmdetection" else None
        return config if isinstance(config, dict) else None

    @property
    def meta(self) -> dict[str, Any]:
        """The file's metadata (``{}`` when it has none); for mmdetection its plain-data fields."""
        if self.format == "mmdetection":
            meta = dict(mmdet_meta(self.content))
            meta["converted_from"] = "mmdetection"
            return meta
        stored = self.content.get("meta")
        return dict(stored) if isinstance(stored, dict) else {}

    @property
    def class_names(self) -> list[str] | None:
        """Class names the file records: ours in ``meta``, mmdetection's ``CLASSES`` / ``dataset_meta``."""
        if self.format == "mmdetection":
            return mmdet_class_names(self.content)
        names = self.meta.get("class_names")
        if isinstance(names, (list, tuple)) and names and all(isinstance(n, str) for n in names):
            return list(names)
        return None


def read_weights(
    path: str | Path, map_location: str | torch.device = "cpu", allow_mmdet: bool = True
) -> WeightsFile:
    """Read a weights file safely (see the module docstring).

    Args:
        path: ``.pth`` (any name) or ``.safetensors`` file.
        map_location: device for the tensors of torch / safetensors files (mmdetection files: CPU).
        allow_mmdet: read mmdetection checkpoints that ``weights_only`` refuses through the restricted
            unpickler; ``False`` refuses them (training resume needs a file of ours).

    Raises:
        WeightsFileNotFoundError: no such file.
        WeightsError: unreadable, not a mapping, or a pickle with objects that is not mmdetection's.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsFileNotFoundError(f"checkpoint not found: {path}")
    if path.suffix == SAFETENSORS_SUFFIX:
        return WeightsFile(path, "safetensors", _read_safetensors(path, map_location))
    try:
        data = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        described = describe_unreadable(path)
        refused = None if described else _refusal(path, e)
        if refused is None:  # not a torch checkpoint with objects in it: a raw pickle, text, ...
            raise _unreadable(path, e, described) from None
        if not allow_mmdet:
            raise refused from None
        return _read_mmdet(path, refused)
    except Exception as e:  # noqa: BLE001 - corrupt zips, truncated files, text: one clear line each
        raise _unreadable(path, e, describe_unreadable(path)) from None
    if not isinstance(data, dict):
        raise WeightsError(f"checkpoint {path} holds a {type(data).__name__}, expected a dict")
    return WeightsFile(path, _format_of(data), data)


def _format_of(data: dict[str, Any]) -> str:
    if "model" in data or "ema" in data:
        return "locdistill"
    sd = data.get("state_dict")
    if (
        is_mmdet_checkpoint(data)
        and isinstance(sd, dict)
        and any(str(k).startswith("bbox_head.") for k in sd)
    ):
        return "mmdetection"
    return "state_dict"


def _read_safetensors(path: Path, map_location: str | torch.device) -> dict[str, Any]:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt", device=str(map_location)) as f:
            metadata = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 - safe_open has no __iter__
    except Exception as e:  # noqa: BLE001 - safetensors raises its own error types
        raise _unreadable(path, e, describe_unreadable(path)) from None
    out: dict[str, Any] = {"model": tensors}
    for key in ("config", "meta"):
        if key in metadata:
            try:
                out[key] = json.loads(metadata[key])
            except json.JSONDecodeError as e:
                raise WeightsError(
                    f"{path}: the '{key}' metadata of this safetensors file is not JSON: {e}"
                ) from None
    return out


def _read_mmdet(path: Path, refused: WeightsError) -> WeightsFile:
    try:
        obj = restricted_load(path)
    except UnsafeCheckpointError:  # a pickle that tampers or is too large: its own message says so
        raise
    except Exception:  # noqa: BLE001 - whatever else the restricted loader rejects, the file stays refused
        raise refused from None
    if not is_mmdet_checkpoint(obj):
        raise refused from None
    return WeightsFile(path, "mmdetection", obj)


def _refusal(path: Path, e: pickle.UnpicklingError) -> WeightsError | None:
    """The refusal of a torch checkpoint that ``weights_only`` rejected for a Python object it pickles;
    ``None`` when the file is no torch checkpoint (a raw pickle, a text file, an LFS pointer)."""
    found = re.search(r"GLOBAL ([\w.]+)", str(e))
    if found is None and not zipfile.is_zipfile(path):
        return None
    named = f"the Python object {found.group(1)}" if found else "a Python object"
    return WeightsError(
        f"refusing to load {path}: it is not a plain weights file (it pickles {named}, which "
        "torch.load with weights_only=True refuses). Convert it in a trusted environment, or use "
        "'locdistill convert --from-mmdet' for mmdetection checkpoints."
    )


def _unreadable(path: Path, e: BaseException, described: str | None) -> WeightsError:
    """One line saying what an unreadable file is: the sniffer's ``described``, else the error's gist."""
    if described:  # the sniffer's line names the file itself
        return WeightsError(
            described if str(path) in described else f"cannot read checkpoint {path}: {described}"
        )
    if path.stat().st_size == 0:
        return WeightsError(f"cannot read checkpoint {path}: the file is empty")
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    detail = next((line for line in lines if "Unsupported" in line), lines[0] if lines else type(e).__name__)
    detail = detail.split(". ")[0].removeprefix("WeightsUnpickler error: ")
    if path.suffix == SAFETENSORS_SUFFIX:
        return WeightsError(f"cannot read checkpoint {path}: a damaged safetensors file ({detail})")
    with open(path, "rb") as f:
        zip_magic = f.read(4) == b"PK\x03\x04"  # torch.save's zip format, cut short or damaged
    if zip_magic:
        return WeightsError(f"cannot read checkpoint {path}: a damaged torch checkpoint ({detail})")
    return WeightsError(f"cannot read checkpoint {path}: not a torch checkpoint ({detail})")
