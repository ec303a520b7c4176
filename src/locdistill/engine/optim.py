"""SGD, the seed's learning-rate rule, and mmdetection's warm-up + step schedule.

* ``lr = cfg.lr * total_batch / 16`` where ``total_batch = images_per_gpu * world_size`` (the seed's
  README: "lr = (samples_per_gpu * num_gpu) / 16 * 0.01").
* One parameter group: weight decay and momentum apply to every trainable parameter, norms, biases and
  ``Scale`` included (mmdetection's GFL / LD configs set no ``paramwise_cfg``), unless ``bias_lr_mult`` /
  ``bias_decay_mult`` differ from 1 (the FCOS configs: x2 and 0): then the biases of layers that are not
  normalisation layers form a second group with ``lr * bias_lr_mult`` and ``weight_decay *
  bias_decay_mult`` (mmcv's ``paramwise_cfg``). mmdetection's group
  also lists the frozen parameters, which never get a gradient and so never move; ours leaves them out.
* Schedule: the regular lr of epoch ``e`` (0-based) is ``base * gamma ** #{s in steps: s <= e}``
  (mmengine ``MultiStepLR(by_epoch=True, milestones=steps)``, stepped after each epoch; mmcv
  ``LrUpdaterHook(policy='step')``). During the warm-up it is multiplied by a factor that grows
  linearly from ``warmup_ratio`` at global iteration 0 to 1:

  - ``warmup_style: mmengine`` (mmdetection 3.x, ``LinearLR(start_factor=warmup_ratio, by_epoch=False,
    begin=0, end=warmup_iters)``): ``ratio + (1 - ratio) * i / (warmup_iters - 1)``, 1 from iteration
    ``warmup_iters - 1`` on. (With ``warmup_iters = 1`` mmengine keeps the lr at ``ratio`` for good,
    a degenerate case; here there is then no warm-up.)
  - ``warmup_style: mmcv`` (mmdetection 2.x, the seed's ``warmup='linear'``):
    ``1 - (1 - i / warmup_iters) * (1 - ratio)``, 1 from iteration ``warmup_iters`` on.

  ``tests/engine/test_schedule_parity.py`` pins the ``mmengine`` values at every iteration of the 1x,
  2x, LD and VOC schedules to mmdetection 3.3.0's own runner (``tests/refs/mmdet_schedules``). It is
  a per-iteration :class:`LambdaLR`, so ``scheduler.step()`` is called after every optimiser step and
  its state resumes exactly.
"""

from __future__ import annotations

import bisect
import logging
import math
from collections.abc import Callable, Iterable

import torch
from torch import nn
from torch.optim import SGD, Optimizer
from torch.optim.lr_scheduler import LambdaLR

from locdistill.config import OptimConfig

logger = logging.getLogger(__name__)


def scaled_lr(base_lr: float, total_batch: int, scale: bool = True) -> float:
    """The seed's rule: the config's lr is for a total batch of 16. An lr that is not a finite positive
    number after scaling (``1e308`` times a large batch overflows to ``inf``) is a ``ValueError``."""
    lr = base_lr * (total_batch / 16) if scale else base_lr  # same bits as base_lr * total_batch / 16
    if not math.isfinite(lr) or lr <= 0:
        raise ValueError(
            f"train.optim.lr={base_lr!r} scaled to the total batch of {total_batch} gives lr={lr!r}; "
            "it must be a finite number above 0"
        )
    return lr


FUSED_DEVICES = ("cpu", "cuda")
"""Where ``implementation: auto`` picks the fused SGD kernel."""


def build_optimizer(params: Iterable[nn.Parameter] | nn.Module, cfg: OptimConfig, lr: float) -> SGD:
    """SGD over the trainable parameters (``requires_grad``) with momentum and weight decay on all.

    ``cfg.implementation`` picks PyTorch's kernels: ``for-loop`` (one op per parameter), ``foreach``
    (multi-tensor ops), ``fused`` (one fused kernel) or ``auto`` (the default: ``fused`` when every
    parameter is on a CPU or CUDA device, else PyTorch's own choice). The updates are the same to
    float32 rounding. On CPU, for GFL R18 (``benchmarks/bench_sgd.py``), the fused step takes 0.46x the
    for-loop's time (1.0x with channels-last parameters) and the foreach step 1.9x.
    """
    bias_group: list[nn.Parameter] = []
    if isinstance(params, nn.Module):
        bias_group = _non_norm_biases(params, cfg)
        params = params.parameters()
    in_bias = {id(p) for p in bias_group}
    trainable = [p for p in params if p.requires_grad and id(p) not in in_bias]
    if not trainable:
        raise ValueError("the model has no trainable parameters")
    impl = getattr(cfg, "implementation", "auto")
    if impl == "auto":
        impl = "fused" if all(p.device.type in FUSED_DEVICES for p in trainable) else "default"
    foreach = {"for-loop": False, "foreach": True}.get(impl)  # None: PyTorch's choice
    fused = True if impl == "fused" else None
    groups: list[dict] = [{"params": trainable}]
    if bias_group:
        groups.append(
            {
                "params": bias_group,
                "lr": lr * cfg.bias_lr_mult,
                "weight_decay": cfg.weight_decay * cfg.bias_decay_mult,
            }
        )
    return SGD(
        groups, lr=lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay, foreach=foreach, fused=fused
    )


WARMUP_STYLES = ("mmengine", "mmcv")


def warmup_factor(iteration: int, warmup_iters: int, warmup_ratio: float, style: str = "mmengine") -> float:
    """Warm-up multiplier at global iteration ``iteration`` (0-based); 1 after the warm-up."""
    if style == "mmengine":
        last = warmup_iters - 1  # mmengine's LinearLR reaches its end factor at step end - begin - 1
        if iteration >= last:
            return 1.0
        return warmup_ratio + (1.0 - warmup_ratio) * iteration / last
    if style == "mmcv":
        if iteration >= warmup_iters:
            return 1.0
        return 1.0 - (1.0 - iteration / warmup_iters) * (1.0 - warmup_ratio)
    raise ValueError(f"train.optim.warmup_style must be one of {WARMUP_STYLES}, got {style!r}")


NORM_LAYERS = (
    nn.modules.batchnorm._BatchNorm,
    nn.GroupNorm,
    nn.LayerNorm,
    nn.modules.instancenorm._InstanceNorm,
)


def _non_norm_biases(module: nn.Module, cfg: OptimConfig) -> list[nn.Parameter]:
    """The trainable ``bias`` parameters of non-normalisation layers, when the config treats biases
    specially (mmcv applies ``bias_lr_mult`` / ``bias_decay_mult`` to exactly these); else none."""
    if getattr(cfg, "bias_lr_mult", 1.0) == 1.0 and getattr(cfg, "bias_decay_mult", 1.0) == 1.0:
        return []
    out: list[nn.Parameter] = []
    seen: set[int] = set()
    for m in module.modules():
        bias = getattr(m, "bias", None)
        if not isinstance(bias, nn.Parameter) or isinstance(m, NORM_LAYERS):
            continue
        if bias.requires_grad and id(bias) not in seen:
            seen.add(id(bias))
            out.append(bias)
    return out


def lr_factor(
    iteration: int,
    iters_per_epoch: int,
    steps: list[int],
    gamma: float = 0.1,
    warmup_iters: int = 0,
    warmup_ratio: float = 0.001,
    warmup_style: str = "mmengine",
) -> float:
    """Multiplier of the base lr at global iteration ``iteration`` (0-based), mmdetection semantics."""
    epoch = iteration // max(iters_per_epoch, 1)
    factor = gamma ** bisect.bisect_right(sorted(steps), epoch)
    if warmup_iters > 0:
        factor *= warmup_factor(iteration, warmup_iters, warmup_ratio, warmup_style)
    return factor


def make_lr_lambda(cfg: OptimConfig, iters_per_epoch: int) -> Callable[[int], float]:
    """A plain function (so :class:`LambdaLR` does not try to save it) computing :func:`lr_factor`."""
    steps, gamma = list(cfg.steps), cfg.gamma
    warmup_iters, warmup_ratio, style = cfg.warmup_iters, cfg.warmup_ratio, cfg.warmup_style
    if style not in WARMUP_STYLES:
        raise ValueError(f"train.optim.warmup_style must be one of {WARMUP_STYLES}, got {style!r}")

    def fn(iteration: int) -> float:
        return lr_factor(iteration, iters_per_epoch, steps, gamma, warmup_iters, warmup_ratio, style)

    return fn


def build_scheduler(optimizer: Optimizer, cfg: OptimConfig, iters_per_epoch: int) -> LambdaLR:
    """Per-iteration warm-up + epoch steps; the lr of iteration ``i`` is set after ``i`` ``step()`` calls."""
    return LambdaLR(optimizer, make_lr_lambda(cfg, iters_per_epoch))


def clip_grad_norm(params: Iterable[nn.Parameter], max_norm: float | None) -> torch.Tensor | None:
    """Clip the total L2 gradient norm to ``max_norm`` (mmcv ``grad_clip``); ``None`` does nothing."""
    if max_norm is None or max_norm <= 0:
        return None
    grads = [p for p in params if p.grad is not None]
    if not grads:
        return None
    return torch.nn.utils.clip_grad_norm_(grads, max_norm=max_norm, norm_type=2.0)
