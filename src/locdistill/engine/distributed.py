"""Distributed helpers: ``torchrun`` initialisation, rank queries, reductions and object gathering.

Everything degrades to a single-process no-op when ``torch.distributed`` is not initialised, so the
same code runs under ``python -m locdistill`` and ``torchrun -m locdistill``. The model code imports
:func:`reduce_mean` from :mod:`locdistill.utils.dist` (no engine import); it is re-exported here so
that there is exactly one implementation.
"""

from __future__ import annotations

import datetime
import os
from typing import Any

import torch
import torch.distributed as dist

from locdistill.utils.dist import get_rank, get_world_size, is_distributed, reduce_mean

__all__ = [
    "all_gather_object",
    "all_reduce_sum",
    "barrier",
    "broadcast_object",
    "cleanup_distributed",
    "get_local_rank",
    "get_rank",
    "get_world_size",
    "init_distributed",
    "is_distributed",
    "is_main_process",
    "reduce_mean",
]


def is_main_process() -> bool:
    return get_rank() == 0


def get_local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", 0)) if is_distributed() else 0


def init_distributed(timeout_minutes: float = 30.0) -> tuple[int, int, int]:
    """Initialise the default process group from the ``torchrun`` environment variables.

    Returns ``(rank, local_rank, world_size)``; ``(0, 0, 1)`` without ``WORLD_SIZE`` > 1 (nothing is
    initialised then). The backend is NCCL when CUDA is available, else gloo; with CUDA the current
    device is set to ``local_rank``. Calling it again when already initialised is harmless.
    """
    if is_distributed():
        return get_rank(), get_local_rank(), get_world_size()
    world_size = int(os.environ.get("WORLD_SIZE", 1))
    if world_size <= 1:
        return 0, 0, 1
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank)
        backend = "nccl"
    else:
        backend = "gloo"
    dist.init_process_group(
        backend=backend,
        init_method="env://",
        world_size=world_size,
        rank=rank,
        timeout=datetime.timedelta(minutes=timeout_minutes),
    )
    return rank, local_rank, world_size


def cleanup_distributed() -> None:
    """Destroy the default process group if there is one."""
    if is_distributed():
        dist.destroy_process_group()


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum of ``tensor`` over ranks (a copy; identity without distributed training)."""
    if not is_distributed():
        return tensor
    tensor = tensor.clone()
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def all_gather_object(obj: Any) -> list[Any]:
    """``[obj of rank 0, obj of rank 1, ...]`` (picklable objects; ``[obj]`` without distributed)."""
    if not is_distributed():
        return [obj]
    out: list[Any] = [None] * get_world_size()
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """``obj`` of rank ``src`` on every rank."""
    if not is_distributed():
        return obj
    box = [obj if get_rank() == src else None]
    dist.broadcast_object_list(box, src=src)
    return box[0]
