"""Exponential moving average of the student's weights (mmdetection ``ExpMomentumEMAHook``).

After every optimiser step ``ema = (1 - m) * ema + m * weights`` for every floating-point entry of the
state dict (parameters and buffers), with a momentum that starts near 1 and decays to ``1 - decay``:
``m_t = decay_gap * exp(-(1 + t) / warmup_iters) + (1 - decay)`` where ``decay_gap = decay`` and ``t``
is the number of updates done before. Integer buffers are copied.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn


class ModelEMA:
    """EMA copy of ``model`` (kept in eval mode, no gradients), on the model's device."""

    def __init__(self, model: nn.Module, decay: float = 0.9998, warmup_iters: int = 2000) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"train.ema_decay must lie in (0, 1), got {decay}")
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)
        self.decay = decay
        self.warmup_iters = warmup_iters
        self.updates = 0

    def momentum(self, updates: int | None = None) -> float:
        """The weight given to the live model at update number ``updates`` (0-based)."""
        t = self.updates if updates is None else updates
        base = 1.0 - self.decay
        if self.warmup_iters <= 0:
            return base
        return (1.0 - base) * math.exp(-(1 + t) / self.warmup_iters) + base

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        m = self.momentum()
        live = model.state_dict()
        for name, ema_value in self.module.state_dict().items():
            value = live[name].detach()
            if ema_value.dtype.is_floating_point:
                ema_value.mul_(1.0 - m).add_(value.to(ema_value.dtype), alpha=m)
            else:
                ema_value.copy_(value)
        self.updates += 1

    def state_dict(self) -> dict[str, Any]:
        return {"module": self.module.state_dict(), "updates": self.updates}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.module.load_state_dict(state["module"])
        self.updates = int(state["updates"])
