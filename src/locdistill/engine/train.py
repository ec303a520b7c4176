"""The training loop: plain GFL or LD, one process or many under ``torchrun``.

Short and explicit on purpose::

    for epoch ...:
        for batch ...:                            # train_one_epoch
            losses = module(batch)                # DetectorLoss or Distiller (DDP-wrapped when distributed)
            loss = sum(losses.values())           # one isfinite() sync per step: abort naming the term
            scaler.scale(loss).backward(); clip; scaler.step(optimizer); scheduler.step(); ema.update()
        end_of_epoch: checkpoint every checkpoint_interval epochs and at the end, then evaluate every
        eval_interval epochs (best.pth on a new best)

What is trained is built in :mod:`locdistill.engine.build`; the checkpointed state and resume are
:mod:`locdistill.engine.state`. Resume is exact: the batches already done in an epoch are skipped
without being loaded (the sampler order depends only on seed and epoch) and every rank's RNG state is
restored. The augmentation randomness of each sample comes from a seed of its own
(:mod:`locdistill.data.seeding`), so a resumed run is bit-identical to an uninterrupted one on CPU with
any ``data.workers_per_gpu``, also inside an epoch (``train.checkpoint_iters``).

Nothing is lost to ordinary mistakes: the work dir is checked first (:mod:`locdistill.engine.workdir`:
no fresh run over another run's files without ``overwrite``), the validation images are checked before
the first iteration (:mod:`locdistill.data.check`), and each epoch's checkpoint is written before the
evaluation, so an evaluation error keeps the epoch (a resumed run then finishes that evaluation).
"""

from __future__ import annotations

import logging
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from tqdm import tqdm

from locdistill.config import Config, check_values
from locdistill.data.check import check_image_files, check_image_sizes, smallest_scale
from locdistill.engine.build import build_data, build_module, check_classes, wrap_ddp
from locdistill.engine.checkpoint import (
    link_or_copy,
    load_checkpoint,
    prune_checkpoints,
    save_checkpoint,
    set_rng_state,
)
from locdistill.engine.device import amp_settings, pick_device
from locdistill.engine.distributed import init_distributed
from locdistill.engine.ema import ModelEMA
from locdistill.engine.evaluate import evaluate
from locdistill.engine.kill_point import kill_point
from locdistill.engine.loader import data_seed, set_data_seed, set_epoch, skip_batches
from locdistill.engine.logger import EtaClock, MetricsWriter, hms, memory_record, reduce_meters, setup_logger
from locdistill.engine.optim import build_optimizer, build_scheduler, clip_grad_norm, scaled_lr
from locdistill.engine.performance import compile_training_module, set_mkldnn_fp32_precision
from locdistill.engine.runinfo import environment_info, seed_everything, write_run_info
from locdistill.engine.state import MAIN_METRIC, Position, TrainState, resume_path, resume_state
from locdistill.engine.workdir import prepare_work_dir
from locdistill.structures import Batch

logger = logging.getLogger(__name__)


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite; the message names the term(s) and the iteration."""


@dataclass
class Run:
    """What the loop needs besides the state: settings, device, data to evaluate on, and where
    progress and checkpoints go."""

    cfg: Config
    work_dir: Path
    rank: int
    device: torch.device
    amp: bool
    amp_dtype: torch.dtype
    world_size: int
    iters_per_epoch: int
    metrics: MetricsWriter
    bar: Any
    clock: EtaClock
    meta: dict[str, Any]
    val_set: Any = None
    val_loader: Any = None
    final: Path | None = None

    def save(self, name: str, ckpt: dict[str, Any]) -> Path:
        """Write ``work_dir/name``, point ``latest.pth`` at it, prune old ones (main process only)."""
        path = save_checkpoint(self.work_dir / name, ckpt)
        link_or_copy(path, self.work_dir / "latest.pth")
        prune_checkpoints(self.work_dir, self.cfg.train.keep_last, self.iters_per_epoch, current=path)
        logger.info("checkpoint saved: %s", path)
        self.final = path
        kill_point(path.name)  # test-only: dies here when LOCDISTILL_TEST_KILL_AFTER names this file
        return path

    def checkpoint(self, st: TrainState, name: str) -> None:
        """:meth:`save` ``st`` as ``name`` (collective: every rank calls it, the main process writes)."""
        ckpt = st.state_dict(self.cfg, self.meta)
        if self.rank == 0:
            self.save(name, ckpt)


def train(
    cfg: Config, work_dir: str | Path, resume: str | bool | None = None, overwrite: bool = False
) -> Path:
    """Train ``cfg`` in ``work_dir`` and return the last checkpoint written (``latest.pth`` links to it).

    Args:
        cfg: the resolved config (``distill`` set: LD from the frozen teacher; else plain GFL).
        work_dir: run folder: config.yaml, env.json, git_rev.txt, train.log, metrics.jsonl, checkpoints.
        resume: ``True``: ``work_dir/latest.pth``; a path: that checkpoint; ``None``/``False``: start fresh.
        overwrite: start fresh even where ``work_dir`` holds a run (its files are removed); without it
            that is a :class:`~locdistill.engine.workdir.WorkDirError`.
    """
    check_values(cfg)
    rank, _, world_size = init_distributed()
    work_dir = Path(work_dir)
    prepare_work_dir(work_dir, resume, overwrite)
    setup_logger(work_dir, rank)
    tc = cfg.train
    device = pick_device()
    seed_everything(tc.seed + rank, tc.deterministic)
    env = write_run_info(cfg, work_dir, world_size) if rank == 0 else environment_info(world_size)
    if rank == 0:
        for stale in work_dir.glob(".*.tmp"):  # left by a run killed while writing a checkpoint
            stale.unlink(missing_ok=True)
    logger.info(
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
    class_names = check_classes(train_set, int(model.num_classes))  # type: ignore[arg-type]
    # Before the first iteration, not hours later: images the resize cannot handle, bad validation files
    check_image_sizes(train_set, smallest_scale(cfg.data.img_scale, cfg.data.multiscale), "training data")
    if val_set is not None:
        check_image_files(val_set, cfg.data.img_scale, "validation data (data.val)")
    iters_per_epoch = len(train_loader)
    if iters_per_epoch == 0:
        raise ValueError(f"the training set at {cfg.data.train.root!r} gives no batches (is it empty?)")

    total_batch = cfg.data.images_per_gpu * world_size
    lr = scaled_lr(tc.optim.lr, total_batch, tc.optim.scale_lr)
    logger.info(
        "lr scaled to %g for total batch %d (%d GPU(s) x %d images; config lr %g is for batch 16)",
        lr,
        total_batch,
        world_size,
        cfg.data.images_per_gpu,
        tc.optim.lr,
    )
    use_amp, amp_dtype, use_scaler = amp_settings(cfg, device)
    if tc.amp and not use_amp:
        logger.info(
            "train.amp is ignored on %s (float16 AMP runs on CUDA only; bfloat16 also on CPU)", device.type
        )
    # The student's parameters, then any trainable distillation modules (CrossKD's adapters); the frozen
    # teacher has none.
    optimizer = build_optimizer(module, tc.optim, lr)
    st = TrainState(
        model=model,
        optimizer=optimizer,
        scheduler=build_scheduler(optimizer, tc.optim, iters_per_epoch),
        scaler=torch.amp.GradScaler(device.type, enabled=use_scaler),
        ema=ModelEMA(model, tc.ema_decay) if tc.ema else None,
        data_seed=data_seed(train_loader),
        distill=getattr(module, "crosskd", None),
    )
    rng_state, eval_pending = None, False
    if resume:
        rng_state, eval_pending = resume_state(st, resume, work_dir, world_size, rank, iters_per_epoch)
        if st.data_seed is not None and st.data_seed != data_seed(train_loader):
            logger.info("data order and augmentation seeded as the run was: %d", st.data_seed)
            set_data_seed(train_loader, st.data_seed)
    set_mkldnn_fp32_precision(tc.mkldnn_fp32_precision)
    if tc.compile:  # after the EMA copy and the resume: those see the plain modules
        compile_training_module(module, tc.compile_dynamic)
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
        work_dir,
        rank,
        device,
        use_amp,
        amp_dtype,
        world_size,
        iters_per_epoch,
        MetricsWriter(work_dir, rank, tensorboard=cfg.train.tensorboard),
        bar,
        EtaClock(st.pos.global_iter, total),
        meta,
        val_set,
        val_loader,
    )
    if eval_pending and val_loader is not None:  # the run resumed from stopped while evaluating
        logger.info("evaluating epoch %d, which the interrupted run did not finish evaluating", st.pos.epoch)
        path = resume_path(resume, work_dir)  # type: ignore[arg-type]
        evaluate_epoch(run, st, st.pos.epoch, load_checkpoint(path) if st.pos.epoch < tc.epochs else None)

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
            run.checkpoint(st, f"iter_{st.pos.global_iter}.pth")
            logger.info("stopped after train.max_iters=%d iterations", tc.max_iters)
            break
        end_of_epoch(run, st, epoch)
    bar.close()
    final = run.final or work_dir / "latest.pth"
    logger.info("training finished: %s", final)
    return final


def end_of_epoch(run: Run, st: TrainState, epoch: int) -> None:
    """After epoch ``epoch`` (0-based): checkpoint when due, then evaluate when due. The checkpoint comes
    first so that an evaluation error never costs the epoch; evaluating leaves the global RNG alone, so
    the RNG state saved before it is also the one after it."""
    tc = run.cfg.train
    st.pos = Position(epoch + 1, 0, st.pos.global_iter)
    done = epoch + 1
    due = done % max(tc.checkpoint_interval, 1) == 0 or done == tc.epochs
    eval_due = run.val_loader is not None and tc.eval_interval > 0 and done % tc.eval_interval == 0
    ckpt = st.state_dict(run.cfg, run.meta) if due else None
    if ckpt is not None:
        ckpt["eval_pending"] = eval_due  # a run resumed from it evaluates the epoch if this one could not
        if run.rank == 0:
            run.save(f"epoch_{done}.pth", ckpt)
    if eval_due:  # as mmdetection's EvalHook
        evaluate_epoch(run, st, done, ckpt)


def evaluate_epoch(run: Run, st: TrainState, done: int, ckpt: dict[str, Any] | None) -> None:
    """Evaluate after epoch ``done`` (1-based), log it, track the best; ``ckpt`` (the epoch's checkpoint,
    ``None`` when the epoch has none) is saved again with the result, and linked as ``best.pth`` on a
    new best (without one, ``best.pth`` is written from ``st``)."""
    eval_model = st.ema.module if st.ema is not None else st.model
    results, table, _ = evaluate(
        eval_model,
        run.val_loader,
        run.val_set,
        run.cfg.metric,
        run.device,
        amp=run.amp,
        amp_dtype=run.amp_dtype,
        progress=False,
        coco_backend=run.cfg.evaluation.coco_backend,
    )
    logger.info("evaluation after epoch %d (%s weights):\n%s", done, "EMA" if st.ema else "live", table)
    run.metrics.write({"type": "val", "epoch": done, "global_iter": st.pos.global_iter, **results})
    value, best = results.get(MAIN_METRIC), st.best["value"]
    improved = value is not None and math.isfinite(value) and (best is None or value > best)
    if improved:
        st.best.update(value=float(value), epoch=done)  # type: ignore[arg-type]
    if ckpt is not None:
        ckpt.update(best=dict(st.best), eval_pending=False)
        if run.rank == 0:
            path = run.save(f"epoch_{done}.pth", ckpt)
            if improved:
                link_or_copy(path, run.work_dir / "best.pth")
    elif improved:
        best_ckpt = st.state_dict(run.cfg, run.meta)
        if run.rank == 0:
            save_checkpoint(run.work_dir / "best.pth", best_ckpt)
    if improved:
        logger.info("new best %s %.4f at epoch %d: best.pth", MAIN_METRIC, st.best["value"], done)


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
                **reduce_meters(meters, steps, run.world_size),
                "time": iter_time / steps,
                "data_time": data_time / steps,
                **memory_record(device),
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
                hms(record["eta_s"]),
                cache,
            )
            meters, steps, iter_time, data_time = {}, 0, 0.0, 0.0
        if stop:
            if i + 1 == run.iters_per_epoch:  # stopped exactly at an epoch end
                st.pos = Position(epoch + 1, 0, st.pos.global_iter)
            return True
        every = tc.checkpoint_iters
        if every > 0 and st.pos.global_iter % every == 0 and i + 1 < run.iters_per_epoch:
            run.checkpoint(st, f"iter_{st.pos.global_iter}.pth")
    return False
