"""Logging for training runs: console (tqdm-safe) + ``train.log`` on the main process, and JSON-lines
metrics (``metrics.jsonl``; other ranks write ``metrics.rank<r>.jsonl``), optionally mirrored to
TensorBoard on the main process (:mod:`locdistill.engine.tensorboard`).

Every module logs to its own ``logging.getLogger(__name__)``; :func:`setup_logger` puts the handlers on
the package logger ``locdistill`` that they all propagate to."""

from __future__ import annotations

import json
import logging
import math
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from tqdm import tqdm

from locdistill.engine.distributed import all_reduce_sum

try:
    import resource
except ImportError:  # pragma: no cover - Windows
    resource = None  # type: ignore[assignment]

LOGGER_NAME = "locdistill"
_FORMAT = "%(asctime)s %(levelname)s %(message)s"


class _TqdmHandler(logging.StreamHandler):
    """Writes through ``tqdm.write`` so that log lines do not break a progress bar."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            tqdm.write(self.format(record), file=sys.stderr)
        except Exception:  # pragma: no cover - logging must never raise
            self.handleError(record)


def setup_logger(work_dir: Path | None = None, rank: int = 0, filename: str = "train.log") -> logging.Logger:
    """Configure the ``locdistill`` logger: INFO on the main process (console + ``work_dir/filename``),
    WARNING elsewhere (console, prefixed with the rank). Replaces handlers set by an earlier call."""
    logger = logging.getLogger(LOGGER_NAME)
    for h in list(logger.handlers):
        if getattr(h, "_locdistill", False):
            logger.removeHandler(h)
            h.close()
    logger.setLevel(logging.INFO if rank == 0 else logging.WARNING)
    logger.propagate = False
    prefix = "" if rank == 0 else f"[rank {rank}] "
    console = _TqdmHandler()
    console.setFormatter(logging.Formatter(prefix + _FORMAT, datefmt="%H:%M:%S"))
    console._locdistill = True  # type: ignore[attr-defined]
    logger.addHandler(console)
    if work_dir is not None and rank == 0:
        work_dir.mkdir(parents=True, exist_ok=True)
        fh = logging.FileHandler(work_dir / filename, encoding="utf-8")
        fh.setFormatter(logging.Formatter(_FORMAT))
        fh._locdistill = True  # type: ignore[attr-defined]
        logger.addHandler(fh)
    return logger


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if hasattr(value, "item"):
        return _jsonable(value.item())
    return value


class MetricsWriter:
    """Appends one JSON object per line; flushed at once so a killed run keeps what it logged. With
    ``tensorboard`` the main process also writes each record to ``work_dir/tensorboard``."""

    def __init__(self, work_dir: Path, rank: int = 0, tensorboard: bool = False) -> None:
        name = "metrics.jsonl" if rank == 0 else f"metrics.rank{rank}.jsonl"
        self.path = work_dir / name
        work_dir.mkdir(parents=True, exist_ok=True)
        self.tensorboard = None
        if tensorboard and rank == 0:
            from locdistill.engine.tensorboard import TensorBoardWriter

            self.tensorboard = TensorBoardWriter(work_dir / "tensorboard")

    def write(self, record: dict[str, Any]) -> None:
        record = _jsonable(record)
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
        if self.tensorboard is not None:
            self.tensorboard.write(record)


# ------------------------------------------------------------------------------- progress records
class EtaClock:
    """ETA from the mean time per iteration since this process started training."""

    def __init__(self, start_iter: int, total_iters: int) -> None:
        self.t0, self.start_iter, self.total = time.perf_counter(), start_iter, total_iters

    def eta(self, global_iter: int) -> float:
        rate = (time.perf_counter() - self.t0) / max(global_iter - self.start_iter, 1)
        return round(rate * max(self.total - global_iter, 0), 1)


def hms(seconds: float) -> str:
    """``H:MM:SS`` of a number of seconds."""
    s = int(seconds)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def reduce_meters(meters: dict[str, Tensor], steps: int, world_size: int) -> dict[str, float]:
    """Loss means over the interval, averaged over ranks with one all-reduce; plus their sum ``loss``."""
    names = sorted(meters)
    values = (all_reduce_sum(torch.stack([meters[k] for k in names]) / steps) / world_size).tolist()
    out = dict(zip(names, values))
    out["loss"] = float(sum(values))
    return out


def memory_record(device: torch.device) -> dict[str, float]:
    """``{"memory_mb": peak}``: CUDA's max allocated memory, else the process's max resident size."""
    if device.type == "cuda":
        return {"memory_mb": torch.cuda.max_memory_allocated(device) / 2**20}
    if resource is None:  # pragma: no cover - Windows
        return {}
    return {"memory_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
