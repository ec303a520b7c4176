"""Training state and resume: what a checkpoint holds (:class:`TrainState`), where training stands
(:class:`Position`) and how a run continues from a checkpoint (:func:`resume_state`).

Resume is exact: model, optimizer, scheduler, scaler, EMA, epoch, position inside the epoch, the seed
of the training batches (order and per-sample augmentation, :mod:`locdistill.data.seeding`; so also
with data-loading workers) and the RNG states of every rank (the loop restores them at the right
moment, see :func:`locdistill.engine.train.train`). Only a training checkpoint of the same architecture
resumes; a converted one (weights only) or one that does not fit the model is a
:class:`~locdistill.weights.WeightsError`.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from locdistill.config import Config, to_dict
from locdistill.engine.checkpoint import get_rng_state, load_checkpoint
from locdistill.engine.distributed import all_gather_object
from locdistill.engine.ema import ModelEMA
from locdistill.weights import WeightsError

logger = logging.getLogger(__name__)

MAIN_METRIC = "AP"
"""The metric that picks ``best.pth``."""


@dataclass
class Position:
    """Where training stands: ``epoch`` (0-based: the one in progress, or the next one when ``iter`` is
    0), ``iter`` (batches of it already done) and ``global_iter`` (optimiser steps done in total)."""

    epoch: int = 0
    iter: int = 0
    global_iter: int = 0


@dataclass
class TrainState:
    """Everything a checkpoint holds and a resume restores."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    ema: ModelEMA | None
    distill: nn.Module | None = None  # trainable distillation modules beside the student (CrossKD adapters)
    pos: Position = field(default_factory=Position)
    best: dict[str, Any] = field(
        default_factory=lambda: {"metric": MAIN_METRIC, "value": None, "epoch": None}
    )
    data_seed: int | None = None
    """Seed of the training batches' order and augmentation (see :mod:`locdistill.data.seeding`)."""

    def state_dict(self, cfg: Config, meta: dict[str, Any]) -> dict[str, Any]:
        """The checkpoint (collective under DDP: every rank's RNG state is gathered)."""
        rng = get_rng_state()
        rng_ranks = all_gather_object(rng)
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler.is_enabled() else None,
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "distill": self.distill.state_dict() if self.distill is not None else None,
            "epoch": self.pos.epoch,
            "iter": self.pos.iter,
            "global_iter": self.pos.global_iter,
            "best": dict(self.best),
            "data_seed": self.data_seed,
            "rng": rng,
            "rng_ranks": rng_ranks if len(rng_ranks) > 1 else None,
            "config": to_dict(cfg),
            "meta": {**meta, "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")},
        }

    def load_state_dict(self, ckpt: dict[str, Any], rank: int = 0) -> dict[str, Any] | None:
        """Restore from ``ckpt``; returns this rank's RNG state (restored later, see :func:`train`)."""
        self.model.load_state_dict(ckpt["model"])
        if self.distill is not None and ckpt.get("distill") is not None:
            self.distill.load_state_dict(ckpt["distill"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        if ckpt.get("scaler") and self.scaler.is_enabled():
            self.scaler.load_state_dict(ckpt["scaler"])
        if self.ema is not None:
            if ckpt.get("ema"):
                self.ema.load_state_dict(ckpt["ema"])
            else:
                self.ema = ModelEMA(self.model, self.ema.decay, self.ema.warmup_iters)
        self.pos = Position(int(ckpt["epoch"]), int(ckpt["iter"]), int(ckpt["global_iter"]))
        self.best = dict(ckpt.get("best") or self.best)
        if ckpt.get("data_seed") is not None:
            self.data_seed = int(ckpt["data_seed"])
        ranks = ckpt.get("rng_ranks")
        if ranks:
            return ranks[rank] if rank < len(ranks) else None
        return ckpt.get("rng") if rank == 0 else None


RESUME_KEYS = ("model", "optimizer", "scheduler", "epoch", "iter", "global_iter")
"""What a checkpoint needs to be resumed from."""


def check_resumable(ckpt: dict[str, Any], path: Path, model: nn.Module) -> None:
    """Raise :class:`~locdistill.weights.WeightsError` naming ``path`` unless ``ckpt`` is a training
    checkpoint whose model has exactly the keys and shapes of ``model`` (a converted checkpoint has
    weights only; one of another architecture or width does not fit)."""
    missing = [k for k in RESUME_KEYS if k not in ckpt]
    if missing:
        what = "weights only (a converted or exported checkpoint)" if "model" in ckpt else "no training state"
        raise WeightsError(
            f"cannot resume from {path}: it holds {what}, without {', '.join(missing)}; resume from a "
            "training checkpoint (latest.pth, epoch_N.pth, iter_N.pth of the run)"
        )
    own, saved = model.state_dict(), ckpt["model"]
    problems = [f"missing {k}" for k in own if k not in saved]
    problems += [f"unexpected {k}" for k in saved if k not in own]
    problems += [
        f"{k} is {tuple(saved[k].shape)} in the checkpoint, {tuple(v.shape)} in the model"
        for k, v in own.items()
        if k in saved and tuple(saved[k].shape) != tuple(v.shape)
    ]
    if problems:
        shown = "; ".join(problems[:3]) + (f"; and {len(problems) - 3} more" if len(problems) > 3 else "")
        raise WeightsError(
            f"cannot resume from {path}: its model does not fit this config ({shown}); resume with the "
            "config the run was trained with (its config.yaml)"
        )


def resume_path(resume: str | Path | bool, work_dir: Path) -> Path:
    """The checkpoint ``--resume`` names: ``work_dir/latest.pth`` for ``True``, else the path given."""
    return Path(resume) if isinstance(resume, (str, Path)) else work_dir / "latest.pth"


def resume_state(
    st: TrainState,
    resume: str | Path | bool,
    work_dir: Path,
    world_size: int,
    rank: int,
    iters_per_epoch: int,
) -> tuple[dict[str, Any] | None, bool]:
    """Restore ``st`` from ``work_dir/latest.pth`` (``resume`` is ``True``) or the checkpoint ``resume``
    names. Returns ``(this rank's saved RNG state for the loop to restore, whether the checkpoint's
    epoch still has to be evaluated)``: the run resumed from stopped while evaluating it."""
    path = resume_path(resume, work_dir)
    if not path.is_file():
        raise FileNotFoundError(f"cannot resume: checkpoint not found: {path}")
    ckpt = load_checkpoint(path)
    check_resumable(ckpt, path, st.model)
    saved_world = (ckpt.get("meta") or {}).get("world_size", world_size)
    if saved_world != world_size:
        logger.warning(
            "resuming a run of %d process(es) with %d: the data order and the RNG streams differ "
            "from an uninterrupted run",
            saved_world,
            world_size,
        )
    rng_state = st.load_state_dict(ckpt, rank)
    eval_pending = bool(ckpt.get("eval_pending")) and st.pos.iter == 0
    del ckpt
    logger.info(
        "resumed from %s: epoch %d, %d of its %d iterations done (%d in total)",
        path,
        st.pos.epoch + 1,
        st.pos.iter,
        iters_per_epoch,
        st.pos.global_iter,
    )
    return rng_state, eval_pending
