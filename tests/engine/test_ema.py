"""Model EMA as mmdetection's ExpMomentumEMA."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from locdistill.engine.ema import ModelEMA


def test_ema_momentum_warms_up_like_mmdetection() -> None:
    ema = ModelEMA(nn.Linear(2, 2), decay=0.9998, warmup_iters=2000)
    m0 = ema.momentum(0)
    assert m0 == pytest.approx(0.9998 * np.exp(-1 / 2000) + 0.0002)
    assert ema.momentum(100_000) == pytest.approx(0.0002, rel=1e-6)


def test_ema_update_and_state() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 3), nn.BatchNorm1d(3))
    ema = ModelEMA(model, decay=0.9, warmup_iters=0)
    before = {k: v.clone() for k, v in ema.module.state_dict().items()}
    with torch.no_grad():
        model[0].weight.add_(1.0)  # type: ignore[operator]
    ema.update(model)
    live = model.state_dict()
    after = ema.module.state_dict()
    assert torch.allclose(after["0.weight"], 0.9 * before["0.weight"] + 0.1 * live["0.weight"])
    assert not any(p.requires_grad for p in ema.module.parameters())
    assert ema.updates == 1
    other = ModelEMA(model, decay=0.9, warmup_iters=0)
    other.load_state_dict(ema.state_dict())
    assert other.updates == 1 and torch.equal(other.module.state_dict()["0.weight"], after["0.weight"])
