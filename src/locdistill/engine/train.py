"""The training loop: plain GFL or LD, one process or many under ``torchrun``.

Short and explicit on purpose::

    for epoch ...:
        for batch ...:                            # train_one_epoch
            losses = module(batch)                # DetectorLoss or Distiller (DDP-wrapped when distributed)
            loss = sum(losses.values())           # one isfinite() sync per step: abort naming the term
            scaler.scale(loss).backward(); clip; scaler.step(optimizer); scheduler.step(); ema.update()
        evaluate every eval_interval epochs, then checkpoint every checkpoint_interval epochs and at the end

Resume is exact: model, optimizer, scheduler, scaler, EMA, epoch, position inside the epoch (the
batches already done are skipped without being loaded; the sampler order depends only on seed and
epoch) and the RNG states of every rank. With ``data.workers_per_gpu=0`` a resumed run is
bit-identical to an uninterrupted one on CPU; with worker processes a resumed *partial* epoch draws its
augmentation randomness from fresh worker seeds.
"""

from __future__ import annotations

import logging
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from locdistill.config import Config, to_dict
from locdistill.engine.checkpoint import (
    get_rng_state,
    link_or_copy,
    load_checkpoint,
    prune_checkpoints,
    save_checkpoint,
    set_rng_state,
)
from locdistill.engine.distributed import all_gather_object, all_reduce_sum, init_distributed
from locdistill.engine.ema import ModelEMA
from locdistill.engine.loader import set_epoch, skip_batches
from locdistill.engine.logger import MetricsWriter, setup_logger
from locdistill.engine.optim import build_optimizer, build_scheduler, clip_grad_norm, scaled_lr
from locdistill.engine.runinfo import (
    amp_settings,
    environment_info,
    pick_device,
    seed_everything,
    write_run_info,
)
from locdistill.structures import Batch

MAIN_METRIC = "AP"
logger = logging.getLogger("locdistill")


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite; the message names the term(s) and the iteration."""


class DetectorLoss(nn.Module):
    """Training module for plain GFL: ``forward(batch)`` -> the student's loss dict."""

    def __init__(self, student: nn.Module) -> None:
        super().__init__()
        self.student = student

    def forward(self, batch: Batch) -> dict[str, Tensor]:
        outputs = self.student(batch.images)
        return self.student.loss(outputs, batch.targets, batch.metas)  # type: ignore[operator]


def build_data(cfg: Config, mean: Any, std: Any, distributed: bool) -> tuple[Any, Any, Any, Any]:
    """``(train_set, train_loader, val_set, val_loader)``; the val pair is ``None`` without evaluation."""
    from locdistill.data import build_dataset, build_test_loader, build_train_loader

    d = cfg.data
    train_set = build_dataset(d.train, d, train=True, mean=mean, std=std)
    train_loader = build_train_loader(
        train_set, d.images_per_gpu, d.workers_per_gpu, cfg.train.seed, distributed
    )
    val_set, val_loader = None, None
    if cfg.train.eval_interval > 0:
        val_set = build_dataset(d.val, d, train=False, mean=mean, std=std)
        val_loader = build_test_loader(val_set, d.test_images_per_gpu, d.workers_per_gpu, distributed)
    return train_set, train_loader, val_set, val_loader


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
        ranks = ckpt.get("rng_ranks")
        if ranks:
            return ranks[rank] if rank < len(ranks) else None
        return ckpt.get("rng") if rank == 0 else None


def build_module(cfg: Config, world_size: int, device: torch.device) -> tuple[nn.Module, nn.Module]:
    """``(student GFL, training module)``; the module is a Distiller when the config distils."""
    from locdistill.models.gfl import build_gfl

    model = build_gfl(cfg.model)
    if cfg.train.sync_bn and world_size > 1:
        if device.type == "cuda":
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        else:
            logger.warning("train.sync_bn is ignored on %s (SyncBatchNorm needs CUDA)", device.type)
    if cfg.distill is not None:
        from locdistill.distill.distiller import build_distiller

        return model, build_distiller(cfg, model)
    return model, DetectorLoss(model)


def wrap_ddp(module: nn.Module, device: torch.device) -> DistributedDataParallel:
    """DDP over the student's parameters only: a teacher (no trainable parameters) is listed as ignored."""
    teacher = getattr(module, "teacher", None)
    if isinstance(teacher, nn.Module) and not hasattr(module, "_ddp_params_and_buffers_to_ignore"):
        names = [f"teacher.{n}" for n, _ in teacher.named_parameters()]
        names += [f"teacher.{n}" for n, _ in teacher.named_buffers()]
        module._ddp_params_and_buffers_to_ignore = names  # type: ignore[assignment]
    return DistributedDataParallel(
        module,
        device_ids=[device.index] if device.type == "cuda" else None,
        broadcast_buffers=False,  # as mmdetection; BN statistics are frozen (norm_eval) or synced (SyncBN)
        find_unused_parameters=False,
    )


# ------------------------------------------------------------------------------------------- train
@dataclass
class Run:
    """What the loop needs besides the state: settings, device, and where progress goes."""

    cfg: Config
    device: torch.device
    amp: bool
    amp_dtype: torch.dtype
    world_size: int
    iters_per_epoch: int
    metrics: MetricsWriter
    bar: Any
    clock: _Clock


def train(cfg: Config, work_dir: str | Path, resume: str | bool | None = None) -> Path:
    """Train ``cfg`` in ``work_dir`` and return the last checkpoint written (``latest.pth`` links to it).

    Args:
        cfg: the resolved config (``distill`` set: LD from the frozen teacher; else plain GFL).
        work_dir: run folder: config.yaml, env.json, git_rev.txt, train.log, metrics.jsonl, checkpoints.
        resume: ``True``: ``work_dir/latest.pth``; a path: that checkpoint; ``None``/``False``: start fresh.
    """
    rank, _, world_size = init_distributed()
    work_dir = Path(work_dir)
    log = setup_logger(work_dir, rank)
    tc = cfg.train
    device = pick_device()
    seed_everything(tc.seed + rank, tc.deterministic)
    env = write_run_info(cfg, work_dir, world_size) if rank == 0 else environment_info(world_size)
    if rank == 0:
        for stale in work_dir.glob(".*.tmp"):  # left by a run killed while writing a checkpoint
            stale.unlink(missing_ok=True)
    log.info(
        "locdistill %s (git %s), torch %s, %s, world size %d, work dir %s",
        env["locdistill_version"],
        env["git_rev"][:12],
        env["torch"],
        env["device"],
        world_size,
        work_dir,
    )

    model, module = build_module(cfg, world_size, device)
    module.to(device)
    if tc.channels_last:
        module.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    train_set, train_loader, val_set, val_loader = build_data(cfg, model.mean, model.std, world_size > 1)
    class_names = _check_classes(train_set, int(model.num_classes))  # type: ignore[arg-type]
    iters_per_epoch = len(train_loader)
    if iters_per_epoch == 0:
        raise ValueError(f"the training set at {cfg.data.train.root!r} gives no batches (is it empty?)")

    total_batch = cfg.data.images_per_gpu * world_size
    lr = scaled_lr(tc.optim.lr, total_batch, tc.optim.scale_lr)
    log.info(
        "lr scaled to %g for total batch %d (%d GPU(s) x %d images; config lr %g is for batch 16)",
        lr,
        total_batch,
        world_size,
        cfg.data.images_per_gpu,
        tc.optim.lr,
    )
    use_amp, amp_dtype, use_scaler = amp_settings(cfg, device)
    if tc.amp and not use_amp:
        log.info("train.amp is ignored on %s (AMP runs on CUDA only)", device.type)
    # The student's parameters, then any trainable distillation modules (CrossKD's adapters); the frozen
    # teacher has none.
    optimizer = build_optimizer(module, tc.optim, lr)
    st = TrainState(
        model=model,
        optimizer=optimizer,
        scheduler=build_scheduler(optimizer, tc.optim, iters_per_epoch),
        scaler=torch.amp.GradScaler(device.type, enabled=use_scaler),
        ema=ModelEMA(model, tc.ema_decay) if tc.ema else None,
        distill=getattr(module, "crosskd", None),
    )
    rng_state = None
    if resume:
        path = work_dir / "latest.pth" if resume is True else Path(resume)
        if not path.is_file():
            raise FileNotFoundError(f"cannot resume: checkpoint not found: {path}")
        ckpt = load_checkpoint(path)
        saved_world = (ckpt.get("meta") or {}).get("world_size", world_size)
        if saved_world != world_size:
            log.warning(
                "resuming a run of %d process(es) with %d: the data order and the RNG streams differ "
                "from an uninterrupted run",
                saved_world,
                world_size,
            )
        rng_state = st.load_state_dict(ckpt, rank)
        del ckpt
        log.info(
            "resumed from %s: epoch %d, %d of its %d iterations done (%d in total)",
            path,
            st.pos.epoch + 1,
            st.pos.iter,
            iters_per_epoch,
            st.pos.global_iter,
        )
    ddp_module = wrap_ddp(module, device) if world_size > 1 else module

    meta: dict[str, Any] = {k: env[k] for k in ("locdistill_version", "git_rev", "torch", "world_size")}
    meta["class_names"] = class_names
    if getattr(module, "teacher_sha256", None):
        meta["teacher_sha256"] = module.teacher_sha256
    total = tc.epochs * iters_per_epoch
    if tc.max_iters is not None:
        total = min(total, tc.max_iters)
    # The bar shows on an interactive terminal; the log lines carry the ETA everywhere.
    bar = tqdm(
        total=total,
        initial=min(st.pos.global_iter, total),
        unit="it",
        dynamic_ncols=True,
        disable=rank != 0 or not sys.stderr.isatty(),
    )
    run = Run(
        cfg,
        device,
        use_amp,
        amp_dtype,
        world_size,
        iters_per_epoch,
        MetricsWriter(work_dir, rank),
        bar,
        _Clock(st.pos.global_iter, total),
    )
    final = work_dir / "latest.pth"

    def save(name: str, ckpt: dict[str, Any]) -> Path:
        path = save_checkpoint(work_dir / name, ckpt)
        link_or_copy(path, work_dir / "latest.pth")
        prune_checkpoints(work_dir, tc.keep_last, iters_per_epoch)
        log.info("checkpoint saved: %s", path)
        return path

    for epoch in range(st.pos.epoch, tc.epochs):
        set_epoch(train_loader, epoch)
        start = st.pos.iter if epoch == st.pos.epoch else 0
        # RNG states saved at an epoch end precede that epoch's loader iterator (whose creation may draw
        # from the global RNG); states saved inside an epoch follow it.
        if rng_state is not None and start == 0:
            set_rng_state(rng_state)
            rng_state = None
        batches = iter(skip_batches(train_loader, start))
        if rng_state is not None:
            set_rng_state(rng_state)
            rng_state = None
        bar.set_description(f"epoch {epoch + 1}/{tc.epochs}")
        ddp_module.train()
        if train_one_epoch(run, st, ddp_module, batches, epoch, start):  # stopped by train.max_iters
            ckpt = st.state_dict(cfg, meta)
            if rank == 0:
                final = save(f"iter_{st.pos.global_iter}.pth", ckpt)
            log.info("stopped after train.max_iters=%d iterations", tc.max_iters)
            break

        # Epoch end: evaluate, then checkpoint (so that the saved RNG state follows the evaluation).
        st.pos = Position(epoch + 1, 0, st.pos.global_iter)
        done, improved = epoch + 1, False
        eval_due = tc.eval_interval > 0 and done % tc.eval_interval == 0  # as mmdetection's EvalHook
        if val_loader is not None and eval_due:
            from locdistill.engine.evaluate import evaluate

            eval_model = st.ema.module if st.ema is not None else model
            results, table, _ = evaluate(
                eval_model,
                val_loader,
                val_set,
                cfg.metric,
                device,
                amp=use_amp,
                amp_dtype=amp_dtype,
                progress=False,
            )
            log.info("evaluation after epoch %d (%s weights):\n%s", done, "EMA" if st.ema else "live", table)
            run.metrics.write({"type": "val", "epoch": done, "global_iter": st.pos.global_iter, **results})
            value, best = results.get(MAIN_METRIC), st.best["value"]
            if value is not None and math.isfinite(value) and (best is None or value > best):
                st.best.update(value=float(value), epoch=done)
                improved = True
        due = done % max(tc.checkpoint_interval, 1) == 0 or done == tc.epochs
        if due or improved:
            ckpt = st.state_dict(cfg, meta)
            if rank == 0 and due:
                final = save(f"epoch_{done}.pth", ckpt)
            if rank == 0 and improved:
                if due:
                    link_or_copy(final, work_dir / "best.pth")
                else:
                    save_checkpoint(work_dir / "best.pth", ckpt)
                log.info("new best %s %.4f at epoch %d: best.pth", MAIN_METRIC, st.best["value"], done)
            del ckpt
    bar.close()
    log.info("training finished: %s", final)
    return final


def train_one_epoch(
    run: Run, st: TrainState, module: nn.Module, batches: Any, epoch: int, start: int
) -> bool:
    """Iterations ``start .. iters_per_epoch-1`` of ``epoch``; ``True`` when ``train.max_iters`` stops it."""
    tc, device = run.cfg.train, run.device
    params = [p for group in st.optimizer.param_groups for p in group["params"]]
    meters: dict[str, Tensor] = {}
    steps, iter_time, data_time = 0, 0.0, 0.0
    t_end = time.perf_counter()
    for i in range(start, run.iters_per_epoch):
        batch: Batch = next(batches).to(device, non_blocking=True)
        t_data = time.perf_counter()
        if tc.channels_last:
            batch.images = batch.images.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=run.amp_dtype, enabled=run.amp):
            losses = module(batch)
        loss: Tensor = sum(losses.values())  # type: ignore[assignment]
        if not bool(torch.isfinite(loss)):  # the one host sync per step
            bad = [f"{k}={v.item():.4g}" for k, v in losses.items() if not bool(torch.isfinite(v))]
            raise NonFiniteLossError(
                f"non-finite loss at epoch {epoch + 1}, iteration {i + 1} "
                f"({st.pos.global_iter + 1} in total): "
                f"{', '.join(bad) or f'total={loss.item()}'}; lower train.optim.lr, set "
                "train.optim.grad_clip or check the data"
            )
        lr = st.optimizer.param_groups[0]["lr"]
        st.optimizer.zero_grad(set_to_none=True)
        st.scaler.scale(loss).backward()
        if tc.optim.grad_clip:
            st.scaler.unscale_(st.optimizer)
            clip_grad_norm(params, tc.optim.grad_clip)
        st.scaler.step(st.optimizer)
        st.scaler.update()
        st.scheduler.step()
        if st.ema is not None:
            st.ema.update(st.model)
        st.pos = Position(epoch, i + 1, st.pos.global_iter + 1)

        for k, v in losses.items():
            meters[k] = meters[k] + v.detach().float() if k in meters else v.detach().float()
        steps += 1
        now = time.perf_counter()
        iter_time, data_time, t_end = iter_time + now - t_end, data_time + t_data - t_end, now
        run.bar.update(1)
        stop = tc.max_iters is not None and st.pos.global_iter >= tc.max_iters
        if st.pos.global_iter % max(tc.log_interval, 1) == 0 or i + 1 == run.iters_per_epoch or stop:
            record = {
                "type": "train",
                "epoch": epoch + 1,
                "iter": i + 1,
                "global_iter": st.pos.global_iter,
                "lr": lr,
                **_reduce_meters(meters, steps, run.world_size),
                "time": iter_time / steps,
                "data_time": data_time / steps,
                **_memory(device),
                "eta_s": run.clock.eta(st.pos.global_iter),
                **getattr(getattr(module, "module", module), "log_stats", dict)(),  # e.g. teacher-cache hits
            }
            run.metrics.write(record)
            run.bar.set_postfix(loss=f"{record['loss']:.4f}", lr=f"{lr:.3g}")
            terms = " ".join(f"{k} {record[k]:.4f}" for k in [*sorted(meters), "loss"])
            cache = (
                f" cache hits {record['cache_hits']:.0f} misses {record['cache_misses']:.0f}"
                if "cache_hits" in record
                else ""
            )
            logger.info(
                "epoch %d iter %d/%d lr %.4g %s time %.3fs data %.3fs eta %s%s",
                epoch + 1,
                i + 1,
                run.iters_per_epoch,
                lr,
                terms,
                record["time"],
                record["data_time"],
                _hms(record["eta_s"]),
                cache,
            )
            meters, steps, iter_time, data_time = {}, 0, 0.0, 0.0
        if stop:
            if i + 1 == run.iters_per_epoch:  # stopped exactly at an epoch end
                st.pos = Position(epoch + 1, 0, st.pos.global_iter)
            return True
    return False


# ----------------------------------------------------------------------------------------- helpers
class _Clock:
    """ETA from the mean time per iteration since this process started training."""

    def __init__(self, start_iter: int, total_iters: int) -> None:
        self.t0, self.start_iter, self.total = time.perf_counter(), start_iter, total_iters

    def eta(self, global_iter: int) -> float:
        rate = (time.perf_counter() - self.t0) / max(global_iter - self.start_iter, 1)
        return round(rate * max(self.total - global_iter, 0), 1)


def _check_classes(dataset: Any, num_classes: int) -> list[str]:
    """The training data's class names; an error when their number is not the head's."""
    names = [str(n) for n in getattr(dataset, "class_names", [])]
    if names and len(names) != num_classes:
        shown = ", ".join(names[:5]) + (", ..." if len(names) > 5 else "")
        raise ValueError(
            f"model.head.num_classes is {num_classes} but the training data has {len(names)} classes "
            f"({shown}); set model.head.num_classes={len(names)} or pick classes with data.train.classes"
        )
    return names


def _hms(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def _reduce_meters(meters: dict[str, Tensor], steps: int, world_size: int) -> dict[str, float]:
    """Loss means over the interval, averaged over ranks with one all-reduce; plus their sum ``loss``."""
    names = sorted(meters)
    values = (all_reduce_sum(torch.stack([meters[k] for k in names]) / steps) / world_size).tolist()
    out = dict(zip(names, values))
    out["loss"] = float(sum(values))
    return out


def _memory(device: torch.device) -> dict[str, float]:
    if device.type == "cuda":
        return {"memory_mb": torch.cuda.max_memory_allocated(device) / 2**20}
    try:
        import resource

        return {"memory_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    except ImportError:  # pragma: no cover - Windows
        return {}
