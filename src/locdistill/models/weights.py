"""Load detector weights from any supported file: locdistill checkpoints (``.pth``), safetensors,
plain state dicts, and mmdetection checkpoints (converted on the fly).

Files are read with ``torch.load(weights_only=True)`` or safetensors; only a file that
``weights_only`` refuses *and* looks like an mmdetection checkpoint goes through
:func:`locdistill.models.mmdet_import.restricted_load`, which never executes code from the file.
"""

from __future__ import annotations

import hashlib
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from locdistill.models.mmdet_import import is_mmdet_checkpoint, mmdet_state_dict, restricted_load
from locdistill.weights_sniff import describe_unreadable


@dataclass
class LoadReport:
    """What a weight load did: the source format and the keys that did not fit."""

    source: str
    format: str
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes (what checkpoints record of their teacher and source)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def read_checkpoint(path: str | Path) -> Any:
    """Read a checkpoint file as plain data, never running code from it (see the module docstring)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return {"model": load_file(str(path))}
        except Exception as e:  # safetensors raises its own SafetensorError
            if isinstance(e, OSError):
                raise
            raise ValueError(
                describe_unreadable(path) or f"{path}: not a readable safetensors file: {e}"
            ) from None
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        problem = describe_unreadable(path)  # an LFS pointer, a raw pickle, a text file ...
        if problem is not None:
            raise ValueError(problem) from None
        obj = restricted_load(path)
        if is_mmdet_checkpoint(obj):
            return obj
        raise ValueError(
            f"{path}: refused to load: the file holds Python objects beyond tensors and plain data "
            f"and is not an mmdetection checkpoint ({str(e).splitlines()[0]})"
        ) from None
    except (
        Exception
    ) as e:  # torch.load raises RuntimeError, EOFError, KeyError, IndexError ... on other files
        if isinstance(e, OSError):
            raise
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ValueError(
            describe_unreadable(path) or f"{path}: not a readable checkpoint: {reason}"
        ) from None


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def detector_state_dict(obj: Any, source: str = "checkpoint") -> tuple[dict[str, Tensor], str, list[str]]:
    """The detector's state dict in our key names from what :func:`read_checkpoint` returned.

    Returns:
        ``(state_dict, format, skipped_keys)`` with format ``locdistill``, ``mmdetection`` or ``state_dict``.
    """
    if is_mmdet_checkpoint(obj):
        state, skipped = mmdet_state_dict(obj, source)
        return state, "mmdetection", skipped
    if isinstance(obj, dict) and isinstance(obj.get("model"), dict):
        return obj["model"], "locdistill", []
    if isinstance(obj, dict) and obj and all(isinstance(v, Tensor) for v in obj.values()):
        return obj, "state_dict", []
    raise ValueError(
        f"{source}: no detector weights found (expected 'model', 'state_dict' or a plain state dict)"
    )


def load_detector_weights(model: nn.Module, path: str | Path, strict: bool = True) -> LoadReport:
    """Load weights into ``model`` from ``path`` (any supported format).

    Raises:
        ValueError: with the offending keys named, when ``strict`` and keys are missing or unexpected,
            or when shapes differ (e.g. a teacher with another class count).
    """
    obj = read_checkpoint(path)
    state, fmt, skipped = detector_state_dict(obj, str(path))
    own = model.state_dict()
    mismatched = [
        f"{k}: file {tuple(v.shape)} vs model {tuple(own[k].shape)}"
        for k, v in state.items()
        if k in own and tuple(v.shape) != tuple(own[k].shape)
    ]
    if mismatched:
        raise ValueError(
            f"{path}: weights do not fit the model ({len(mismatched)} shape mismatches): "
            + "; ".join(mismatched[:5])
        )
    result = model.load_state_dict(state, strict=False)
    report = LoadReport(str(path), fmt, list(result.missing_keys), list(result.unexpected_keys), skipped)
    if strict and (report.missing or report.unexpected):
        raise ValueError(
            f"{path} ({fmt}): weights do not fit the model: missing {report.missing[:8]}"
            f"{'...' if len(report.missing) > 8 else ''}, unexpected {report.unexpected[:8]}"
            f"{'...' if len(report.unexpected) > 8 else ''}"
        )
    return report
