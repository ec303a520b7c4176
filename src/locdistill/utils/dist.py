"""Minimal distributed helpers the model code needs (no engine import)."""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def get_world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def get_rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def reduce_mean(tensor: Tensor) -> Tensor:
    """Average ``tensor`` over all ranks (identity without distributed training), as mmdet's
    ``reduce_mean``: used for the loss normalisers so that every rank divides by the same number."""
    if not is_distributed():
        return tensor
    tensor = tensor.clone()
    dist.all_reduce(tensor.div_(get_world_size()), op=dist.ReduceOp.SUM)
    return tensor


def as_tensor(value: float | Tensor, like: Tensor) -> Tensor:
    if isinstance(value, Tensor):
        return value.to(device=like.device, dtype=torch.float32)
    return torch.tensor(float(value), device=like.device, dtype=torch.float32)
