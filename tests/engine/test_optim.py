"""The optimiser and lr schedule of the seed (mmdetection's SGD, warm-up and steps)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from locdistill.config import OptimConfig
from locdistill.engine.checkpoint import (
    load_checkpoint,
    save_checkpoint,
)
from locdistill.engine.optim import build_optimizer, build_scheduler, lr_factor, scaled_lr


def test_lr_rule_of_the_seed() -> None:
    assert scaled_lr(0.01, 6) == pytest.approx(0.00375)  # the seed README's 2 GPUs x 3 images
    assert scaled_lr(0.01, 16) == pytest.approx(0.01)
    assert scaled_lr(0.01, 2) == pytest.approx(0.00125)
    assert scaled_lr(0.01, 6, scale=False) == 0.01


def test_warmup_and_step_factors_follow_mmdetection_2x() -> None:
    """``warmup_style: mmcv``: mmcv's ``LrUpdaterHook`` (the seed's mmdetection 2.10); the default,
    mmdetection 3.x's, is pinned to its recorded values in ``test_schedule_parity.py``."""
    kw: dict[str, Any] = {
        "warmup_style": "mmcv",
        "iters_per_epoch": 100,
        "steps": [8, 11],
        "gamma": 0.1,
        "warmup_iters": 500,
        "warmup_ratio": 0.001,
    }
    assert lr_factor(0, **kw) == pytest.approx(0.001)
    assert lr_factor(250, **kw) == pytest.approx(1 - 0.5 * 0.999)
    assert lr_factor(499, **kw) == pytest.approx(1 - (1 / 500) * 0.999)
    assert lr_factor(500, **kw) == 1.0
    assert lr_factor(799, **kw) == 1.0  # epoch 7 (0-based) is the 8th: still the full lr
    assert lr_factor(800, **kw) == pytest.approx(0.1)  # "step at epoch 8": after 8 epochs
    assert lr_factor(1099, **kw) == pytest.approx(0.1)
    assert lr_factor(1100, **kw) == pytest.approx(0.01)
    # warm-up multiplies the regular (stepped) lr, as mmcv's LrUpdaterHook does
    short = {**kw, "iters_per_epoch": 10}
    assert lr_factor(85, **short) == pytest.approx(0.1 * (1 - (1 - 85 / 500) * 0.999))


def test_scheduler_sets_per_iteration_lr_and_resumes(tmp_path: Path) -> None:
    cfg = OptimConfig(lr=0.01, warmup_iters=5, warmup_ratio=0.1, steps=[1, 2])
    model = nn.Linear(2, 2)
    opt = build_optimizer(model, cfg, 0.02)
    sched = build_scheduler(opt, cfg, iters_per_epoch=4)
    seen = []
    for _ in range(12):
        seen.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    expected = [0.02 * lr_factor(i, 4, [1, 2], 0.1, 5, 0.1) for i in range(12)]
    assert seen == pytest.approx(expected)
    assert seen[3] == pytest.approx(0.02 * (0.1 + 0.9 * 3 / 4))  # still warming up (mmengine: over 5 - 1)
    assert seen[4] == pytest.approx(0.02 * 0.1)  # epoch 1, warm-up over

    # a fresh scheduler loaded from the state continues the same sequence (weights_only round trip)
    save_checkpoint(tmp_path / "s.pth", {"optimizer": opt.state_dict(), "scheduler": sched.state_dict()})
    state = load_checkpoint(tmp_path / "s.pth")
    model2 = nn.Linear(2, 2)
    opt2 = build_optimizer(model2, cfg, 0.02)
    sched2 = build_scheduler(opt2, cfg, iters_per_epoch=4)
    opt2.load_state_dict(state["optimizer"])
    sched2.load_state_dict(state["scheduler"])
    assert opt2.param_groups[0]["lr"] == pytest.approx(0.02 * lr_factor(12, 4, [1, 2], 0.1, 5, 0.1))
    sched2.step()
    assert opt2.param_groups[0]["lr"] == pytest.approx(0.02 * lr_factor(13, 4, [1, 2], 0.1, 5, 0.1))


def test_optimizer_is_sgd_with_weight_decay_on_every_trainable_parameter() -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Linear(4, 2))
    model[0].weight.requires_grad_(False)  # a frozen parameter stays out
    opt = build_optimizer(model, OptimConfig(momentum=0.9, weight_decay=1e-4), 0.005)
    assert isinstance(opt, torch.optim.SGD)
    assert len(opt.param_groups) == 1
    group = opt.param_groups[0]
    assert group["weight_decay"] == 1e-4 and group["momentum"] == 0.9 and group["lr"] == 0.005
    ids = {id(p) for p in group["params"]}
    assert id(model[0].weight) not in ids
    assert {id(model[1].weight), id(model[1].bias), id(model[0].bias)} <= ids  # norms and biases decay too


def test_bias_lr_and_decay_mults_apply_to_non_norm_biases_only() -> None:
    """FCOS's paramwise settings (mmcv): conv biases get lr x2 and no weight decay; GroupNorm's bias and
    every weight keep the base values."""
    from torch import nn

    from locdistill.config import OptimConfig
    from locdistill.engine.optim import build_optimizer

    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.GroupNorm(4, 8), nn.Conv2d(8, 2, 1))
    opt = build_optimizer(model, OptimConfig(weight_decay=1e-4, bias_lr_mult=2.0, bias_decay_mult=0.0), 0.01)
    assert len(opt.param_groups) == 2
    base, bias = opt.param_groups
    assert {id(p) for p in bias["params"]} == {id(model[0].bias), id(model[2].bias)}
    assert bias["lr"] == 0.02 and bias["weight_decay"] == 0.0
    assert base["lr"] == 0.01 and base["weight_decay"] == 1e-4
    assert id(model[1].bias) in {id(p) for p in base["params"]}
    plain = build_optimizer(model, OptimConfig(), 0.01)
    assert len(plain.param_groups) == 1
