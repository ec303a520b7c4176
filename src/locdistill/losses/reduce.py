"""Weighted reduction with an average factor, exactly as mmdetection's ``weight_reduce_loss``."""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

EPS32 = float(torch.finfo(torch.float32).eps)


def weight_reduce(
    loss: Tensor,
    weight: Tensor | None = None,
    reduction: Literal["none", "mean", "sum"] = "mean",
    avg_factor: float | Tensor | None = None,
) -> Tensor:
    """Apply element weights, then reduce.

    With ``avg_factor`` and ``reduction='mean'`` the result is ``sum(loss * weight) / (avg_factor + eps)``
    where eps is float32's machine epsilon (mmdetection adds it so that a zero factor does not divide
    by zero); without it, ``mean``/``sum`` are the plain reductions.
    """
    if weight is not None:
        loss = loss * weight
    if avg_factor is None:
        if reduction == "mean":
            return loss.mean()
        if reduction == "sum":
            return loss.sum()
        return loss
    if reduction == "mean":
        return loss.sum() / (avg_factor + EPS32)
    if reduction == "none":
        return loss
    raise ValueError("avg_factor can not be used with reduction='sum'")
