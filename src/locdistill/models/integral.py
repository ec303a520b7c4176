"""Integral: the expected value of a discrete distribution over bins ``0..reg_max``."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class Integral(nn.Module):
    """Softmax over the ``reg_max + 1`` bins of each side, dot with ``[0, 1, ..., reg_max]``.

    Input ``[..., 4*(reg_max+1)]`` logits laid out side-major (``channel = side*(reg_max+1) + bin``,
    sides left, top, right, bottom); output ``[..., 4]`` float32 distances in bin (= stride) units.
    """

    project: Tensor

    def __init__(self, reg_max: int = 16) -> None:
        super().__init__()
        self.reg_max = reg_max
        self.register_buffer("project", torch.linspace(0, reg_max, reg_max + 1), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        shape = x.shape[:-1]
        # In float32 also under autocast, which would run the linear in 16 bits (0.06-bin steps at 16).
        with torch.autocast(x.device.type, enabled=False):
            prob = F.softmax(x.reshape(-1, self.reg_max + 1).float(), dim=1)
            return F.linear(prob, self.project.to(prob.dtype)).reshape(*shape, 4)
