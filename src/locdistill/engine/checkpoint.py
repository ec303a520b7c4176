"""Training checkpoints: atomic saving, pruning, RNG state; reading goes through :mod:`locdistill.weights`.

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
import os
import random
import re
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import save_file
from torch import nn

from locdistill.utils.atomic_write import atomic_write
from locdistill.utils.hashing import sha256_file  # noqa: F401 (re-exported by locdistill.engine)
from locdistill.weights import SAFETENSORS_SUFFIX, extract_state_dict, load_weights, read_weights
from locdistill.weights import WeightsError as CheckpointError  # noqa: F401 (the one weights error, old name)

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


def prune_checkpoints(
    work_dir: Path, keep_last: int, iters_per_epoch: int, current: Path | None = None
) -> list[Path]:
    """Delete all but the newest ``keep_last`` ``epoch_N.pth`` / ``iter_N.pth`` (``<= 0``: keep all).
    ``latest.pth`` and ``best.pth`` are separate links and stay.

    With ``current`` (the checkpoint just written) only checkpoints up to it count: it is always kept,
    and later ones (left by a run that was resumed from an earlier checkpoint) are neither counted nor
    deleted."""
    if keep_last <= 0:
        return []
    files = [p for p in work_dir.glob("*.pth") if _checkpoint_order(p, iters_per_epoch) >= 0]
    if current is not None:
        limit = _checkpoint_order(Path(current), iters_per_epoch)
        files = [p for p in files if _checkpoint_order(p, iters_per_epoch) <= limit]
    name = Path(current).name if current is not None else None
    files.sort(key=lambda p: (_checkpoint_order(p, iters_per_epoch), p.name == name))  # current last
    removed = files[:-keep_last] if len(files) > keep_last else []
    for p in removed:
        p.unlink(missing_ok=True)
    return removed


# ----------------------------------------------------------------------------------------- loading
def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """A checkpoint of ours as a dict (to resume from, or to convert): ``torch.load(weights_only=True)``
    or safetensors (``{"model": tensors, "config": ..., "meta": ...}``), through
    :func:`locdistill.weights.read_weights`. A pickle holding anything beyond tensors and plain
    containers is refused with :class:`CheckpointError` (mmdetection files included)."""
    return read_weights(path, map_location, allow_mmdet=False).content


def load_model_weights(
    model: nn.Module,
    source: str | Path | Mapping[str, Any],
    strict: bool = True,
    use_ema: bool = False,
) -> tuple[list[str], list[str]]:
    """:func:`locdistill.weights.load_weights` returning ``(missing, unexpected)`` keys (kept for the
    public API; raises :class:`CheckpointError` naming every key that does not fit)."""
    report = load_weights(model, source, strict=strict, use_ema=use_ema)
    return report.missing, report.unexpected


def strip_to_weights(ckpt: Mapping[str, Any], use_ema: bool = False) -> dict[str, Any]:
    """A small deployable checkpoint: the student (or its EMA) weights, the config and the meta; no
    optimizer, scheduler, scaler, RNG, EMA copy or teacher."""
    sd, _ = extract_state_dict(ckpt, use_ema=use_ema)
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
