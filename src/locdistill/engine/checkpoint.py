"""Checkpoints: atomic saving, safe loading (``weights_only`` / safetensors), weight import.

Layout of a training checkpoint (every value loadable with ``torch.load(weights_only=True)``)::

    {
        "model": student state_dict,            # never the teacher
        "optimizer": SGD state_dict, "scheduler": LambdaLR state_dict,
        "scaler": GradScaler state_dict | None, "ema": {"module": state_dict, "updates": int} | None,
        "epoch": int, "iter": int,              # position to resume at: epoch (0-based) and batches
                                                # already done in it; "global_iter": total steps done
        "rng": {"torch": ByteTensor, "cuda": [ByteTensor], "python": [...], "numpy": [...]},
        "config": to_dict(cfg),
        "meta": {"locdistill_version", "git_rev", "teacher_sha256" (distilled runs), "time", ...},
    }

A converted (``locdistill convert``) checkpoint keeps only ``model``, ``config`` and ``meta``; as a
``.safetensors`` file the config and meta are JSON strings in the file's metadata.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import random
import re
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from locdistill.config import Config
from locdistill.models.gfl import GFL, build_gfl
from locdistill.models.mmdet_import import is_mmdet_checkpoint, mmdet_state_dict, restricted_load
from locdistill.models.weights import sha256_file  # noqa: F401 (re-exported by locdistill.engine)
from locdistill.utils.atomic_write import atomic_write
from locdistill.weights_sniff import describe_unreadable

logger = logging.getLogger(__name__)

SAFETENSORS_SUFFIX = ".safetensors"


class CheckpointError(ValueError):
    """A checkpoint file that cannot be read safely or does not fit the model."""


# ------------------------------------------------------------------------------------------ saving
_atomic_write = atomic_write  # the name the rest of the engine uses


def save_checkpoint(path: str | Path, state: Mapping[str, Any]) -> Path:
    """Write ``state`` atomically: ``torch.save`` format, or safetensors for a ``.safetensors`` path
    (then only ``state["model"]`` is stored, with ``config`` and ``meta`` as JSON metadata)."""
    path = Path(path)
    if path.suffix == SAFETENSORS_SUFFIX:
        tensors = {k: v.detach().cpu().contiguous() for k, v in state["model"].items()}
        metadata = {"format": "pt"}
        for key in ("config", "meta"):
            if state.get(key) is not None:
                metadata[key] = json.dumps(state[key])
        _atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=metadata))
    else:
        _atomic_write(path, lambda tmp: torch.save(dict(state), tmp))
    return path


def link_or_copy(src: str | Path, dst: str | Path) -> None:
    """Make ``dst`` the same file as ``src`` (hard link, else copy), atomically replacing ``dst``."""
    src, dst = Path(src), Path(dst)
    tmp = dst.with_name(f".{dst.name}.link.tmp")
    try:
        tmp.unlink(missing_ok=True)
        os.link(src, tmp)
        os.replace(tmp, dst)
    except OSError:
        tmp.unlink(missing_ok=True)
        _atomic_write(dst, lambda t: shutil.copyfile(src, t))


def _checkpoint_order(path: Path, iters_per_epoch: int) -> int:
    m = re.fullmatch(r"(epoch|iter)_(\d+)\.pth", path.name)
    if not m:
        return -1
    n = int(m.group(2))
    return n * iters_per_epoch if m.group(1) == "epoch" else n


def prune_checkpoints(work_dir: Path, keep_last: int, iters_per_epoch: int) -> list[Path]:
    """Delete all but the newest ``keep_last`` ``epoch_N.pth`` / ``iter_N.pth`` (``<= 0``: keep all).
    ``latest.pth`` and ``best.pth`` are separate links and stay."""
    if keep_last <= 0:
        return []
    files = [p for p in work_dir.glob("*.pth") if _checkpoint_order(p, iters_per_epoch) >= 0]
    files.sort(key=lambda p: _checkpoint_order(p, iters_per_epoch))
    removed = files[:-keep_last] if len(files) > keep_last else []
    for p in removed:
        p.unlink(missing_ok=True)
    return removed


# ----------------------------------------------------------------------------------------- loading
def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint safely: ``torch.load(weights_only=True)`` or safetensors.

    A safetensors file comes back as ``{"model": tensors, "config": ..., "meta": ...}``. A pickle that
    holds anything beyond tensors and plain containers is refused with :class:`CheckpointError`.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    if path.suffix == SAFETENSORS_SUFFIX:
        try:
            tensors = load_file(str(path), device=str(map_location))
            with safe_open(str(path), framework="pt") as f:
                metadata = f.metadata() or {}
        except Exception as e:  # safetensors raises its own SafetensorError
            if isinstance(e, OSError):
                raise
            raise CheckpointError(
                describe_unreadable(path) or f"cannot read safetensors file {path}: {e}"
            ) from None
        out: dict[str, Any] = {"model": tensors}
        for key in ("config", "meta"):
            if key in metadata:
                out[key] = json.loads(metadata[key])
        return out
    try:
        data = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        problem = describe_unreadable(path)  # an LFS pointer, a raw pickle, a text file ...
        if problem is not None:
            raise CheckpointError(problem) from None
        first = str(e).strip().splitlines()
        detail = next(
            (line for line in first if "Unsupported" in line or "GLOBAL" in line), first[0] if first else ""
        )
        raise CheckpointError(
            f"refusing to load {path}: it is not a plain weights file (torch.load with weights_only=True "
            f"found an object that would need arbitrary unpickling: {detail.strip()}). Convert it in a "
            "trusted environment, or use 'locdistill convert --from-mmdet' for mmdetection checkpoints."
        ) from None
    except (
        Exception
    ) as e:  # torch.load raises RuntimeError, EOFError, KeyError, IndexError ... on other files
        if isinstance(e, OSError):
            raise
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(
            describe_unreadable(path) or f"cannot read checkpoint {path}: {reason}"
        ) from None
    if not isinstance(data, dict):
        raise CheckpointError(f"checkpoint {path} holds a {type(data).__name__}, expected a dict")
    return data


def load_checkpoint_any(path: str | Path) -> dict[str, Any]:
    """:func:`load_checkpoint`, and for an mmdetection checkpoint (which ``weights_only`` refuses) the
    restricted importer of :mod:`locdistill.models.mmdet_import` (it never runs code from the file):
    ``{"model": state dict in our key names, "meta": {"converted_from": "mmdetection"}}``."""
    try:
        return load_checkpoint(path)
    except CheckpointError as refused:
        if "refusing to load" not in str(refused):
            raise
        try:
            obj = restricted_load(path)
        except Exception:
            raise refused from None
        if not is_mmdet_checkpoint(obj):
            raise refused from None
        state, _skipped = mmdet_state_dict(obj, str(path))
        return {"model": state, "meta": {"converted_from": "mmdetection"}}


def _is_state_dict(obj: Any) -> bool:
    return isinstance(obj, Mapping) and len(obj) > 0 and all(isinstance(v, Tensor) for v in obj.values())


def extract_state_dict(ckpt: Mapping[str, Any], use_ema: bool = False) -> dict[str, Tensor]:
    """The model weights in ``ckpt``: ours (``model`` / ``ema.module``), a ``state_dict`` entry, or a
    plain state dict. A ``module.`` prefix (DDP) is removed."""
    if use_ema:
        ema = ckpt.get("ema")
        if not ema or "module" not in ema:
            raise CheckpointError("the checkpoint has no EMA weights (train with train.ema=true)")
        sd = ema["module"]
    elif "model" in ckpt and _is_state_dict(ckpt["model"]):
        sd = ckpt["model"]
    elif "state_dict" in ckpt and _is_state_dict(ckpt["state_dict"]):
        sd = ckpt["state_dict"]
    elif _is_state_dict(ckpt):
        sd = ckpt
    else:
        raise CheckpointError(
            "no model weights found: expected a locdistill checkpoint ('model'), a 'state_dict' entry or a "
            f"plain state dict; top-level keys are {sorted(map(str, ckpt))[:10]}"
        )
    if all(k.startswith("module.") for k in sd):
        sd = {k[len("module.") :]: v for k, v in sd.items()}
    return dict(sd)


def _key_list(keys: list[str], limit: int = 8) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f", ... ({len(keys)} in total)" if len(keys) > limit else "")


def load_model_weights(
    model: nn.Module,
    source: str | Path | Mapping[str, Any],
    strict: bool = True,
    use_ema: bool = False,
) -> tuple[list[str], list[str]]:
    """Load weights into ``model`` from a path (ours, plain state dict, safetensors) or a loaded dict.

    Returns ``(missing, unexpected)`` keys. With ``strict`` any missing or unexpected key, or a shape
    mismatch, raises :class:`CheckpointError` listing them; otherwise they are logged as warnings.
    """
    name = str(source) if isinstance(source, (str, Path)) else "the given state"
    ckpt = load_checkpoint(source) if isinstance(source, (str, Path)) else source
    sd = extract_state_dict(ckpt, use_ema=use_ema)
    own = model.state_dict()
    missing = [k for k in own if k not in sd]
    unexpected = [k for k in sd if k not in own]
    mismatched = [
        f"{k} (checkpoint {tuple(sd[k].shape)}, model {tuple(own[k].shape)})"
        for k in own
        if k in sd and tuple(sd[k].shape) != tuple(own[k].shape)
    ]
    problems = []
    if missing:
        problems.append(f"missing keys: {_key_list(missing)}")
    if unexpected:
        problems.append(f"unexpected keys: {_key_list(unexpected)}")
    if mismatched:
        problems.append(f"shape mismatches: {_key_list(mismatched)}")
    if mismatched or (strict and problems):
        hint = ""
        if unexpected and any(k.startswith(("bbox_head.", "neck.fpn_convs")) for k in unexpected):
            hint = " (an mmdetection checkpoint? convert it with 'locdistill convert --from-mmdet')"
        raise CheckpointError(f"weights in {name} do not fit the model: " + "; ".join(problems) + hint)
    if problems:
        logger.warning("loading %s: %s", name, "; ".join(problems))
    model.load_state_dict({k: v for k, v in sd.items() if k in own}, strict=False)
    return missing, unexpected


def strip_to_weights(ckpt: Mapping[str, Any], use_ema: bool = False) -> dict[str, Any]:
    """A small deployable checkpoint: the student (or its EMA) weights, the config and the meta; no
    optimizer, scheduler, scaler, RNG, EMA copy or teacher."""
    sd = extract_state_dict(ckpt, use_ema=use_ema)
    sd = {k: v for k, v in sd.items() if not k.startswith(("teacher.", "student.teacher."))}
    if any(k.startswith("student.") for k in sd):
        sd = {k[len("student.") :]: v for k, v in sd.items() if k.startswith("student.")}
    meta = dict(ckpt.get("meta") or {})
    if use_ema:
        meta["weights"] = "ema"
    out: dict[str, Any] = {"model": {k: v.detach().clone() for k, v in sd.items()}, "meta": meta}
    if ckpt.get("config") is not None:
        out["config"] = ckpt["config"]
    return out


# ------------------------------------------------------------------------------------------- RNG
def get_rng_state() -> dict[str, Any]:
    """All RNG states in ``weights_only``-loadable form (tensors, lists, ints, floats, str, None)."""
    py_version, py_state, py_gauss = random.getstate()
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state(legacy=True)  # type: ignore[misc]
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "python": [py_version, list(py_state), py_gauss],
        "numpy": [
            str(np_name),
            torch.from_numpy(np.asarray(np_keys, dtype=np.int64)),
            int(np_pos),
            int(np_has_gauss),
            float(np_gauss),
        ],
    }
    return state


def set_rng_state(state: Mapping[str, Any]) -> None:
    """Restore what :func:`get_rng_state` returned."""
    torch.set_rng_state(state["torch"].cpu())
    if state.get("cuda") and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])
    version, py_state, gauss = state["python"]
    random.setstate((version, tuple(py_state), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))


def load_detector(
    cfg: Config, checkpoint: str | Path, device: str | torch.device = "cpu", use_ema: bool = False
) -> tuple[GFL, dict[str, Any]]:
    """The GFL of ``cfg`` (a :class:`~locdistill.config.Config`) with the weights of ``checkpoint``
    (any format :func:`load_checkpoint_any` reads, mmdetection included), on ``device`` in eval mode,
    and the checkpoint's ``meta`` (``{}`` when it has none)."""
    cfg.model.backbone.pretrained = False  # the checkpoint holds every weight
    model = build_gfl(cfg.model)
    ckpt = load_checkpoint_any(checkpoint)
    load_model_weights(model, ckpt, strict=True, use_ema=use_ema)
    meta = ckpt.get("meta")
    return model.to(device).eval(), meta if isinstance(meta, dict) else {}
