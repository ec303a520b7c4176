"""DataLoaders for training and evaluation, one process or many (``torch.distributed``).

Training batches depend only on ``(seed, epoch)``: call ``loader.batch_sampler.set_epoch(epoch)`` before
each epoch. The order comes from the index sampler (``loader.batch_sampler.sampler``), the augmentation
randomness of each sample from a per-sample seed (:mod:`locdistill.data.seeding`), so a resumed run,
or one with another number of workers, sees the same batches. Under
``torch.distributed`` the training sampler is ``DistributedSampler`` (each rank a disjoint share,
padded with repeats to equal length); the test sampler gives rank ``r`` the indices ``r, r + world, ...``
with no padding, so the gathered predictions cover every image exactly once.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sized
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler

from locdistill.data.collate import Collate
from locdistill.data.seeding import SeededBatchSampler, SeededDataset


class EpochShuffleSampler(Sampler[int]):
    """A random permutation of ``range(len(dataset))`` drawn from ``seed + epoch`` (single process)."""

    def __init__(self, dataset: Sized, seed: int = 0) -> None:
        self.num_samples = len(dataset)
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        g = torch.Generator().manual_seed(self.seed + self.epoch)
        return iter(torch.randperm(self.num_samples, generator=g).tolist())

    def __len__(self) -> int:
        return self.num_samples


class ShardSampler(Sampler[int]):
    """Indices ``rank, rank + world_size, ...`` of ``range(len(dataset))``, in order, without padding."""

    def __init__(self, dataset: Sized, rank: int = 0, world_size: int = 1) -> None:
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} not in [0, {world_size})")
        self.indices = list(range(rank, len(dataset), world_size))
        self.rank, self.world_size = rank, world_size

    def set_epoch(self, epoch: int) -> None:  # the order does not depend on the epoch
        pass

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


def seed_worker(worker_id: int) -> None:
    """Seed ``random`` and ``numpy`` in a worker from torch's per-worker seed (for user transforms)."""
    seed = torch.initial_seed() % 2**32
    random.seed(seed)
    np.random.seed(seed)


def _distributed(distributed: bool) -> bool:
    return distributed and dist.is_available() and dist.is_initialized()


def _loader(
    dataset: Dataset,
    images_per_gpu: int,
    sampler: Sampler[int],
    workers: int,
    size_divisor: int | None,
    pin_memory: bool | None,
    seed: int | None = None,
) -> DataLoader:
    """The DataLoader both builders make: :class:`Collate` batches (padding multiple ``size_divisor``,
    else the dataset's), persistent workers seeded by :func:`seed_worker`, nothing dropped, and a
    generator of its own (so creating an iterator leaves the global RNG alone).

    A dataset with ``pixel_norm`` (uint8 samples, training only) gives uint8 batches that
    :meth:`~locdistill.structures.Batch.to` normalises on the device.

    With ``seed`` (training) the samples are drawn as ``(index, seed)`` pairs of a
    :class:`~locdistill.data.seeding.SeededBatchSampler` from a
    :class:`~locdistill.data.seeding.SeededDataset`: augmentation randomness per sample, the same in
    any worker."""
    if images_per_gpu < 1:
        raise ValueError(f"images_per_gpu must be at least 1, got {images_per_gpu}")
    divisor = size_divisor if size_divisor is not None else int(getattr(dataset, "size_divisor", 32))
    pixel_norm = getattr(dataset, "pixel_norm", None)
    if pixel_norm is not None and seed is None:
        raise ValueError(
            f"{dataset!r} leaves its images uint8 for the training loader to normalise on the device "
            "(built with normalize_on_device=True); an evaluation loader needs normalised images"
        )
    common: dict[str, Any] = {
        "num_workers": workers,
        "collate_fn": Collate(divisor, pixel_norm),
        "pin_memory": torch.cuda.is_available() if pin_memory is None else pin_memory,
        "persistent_workers": workers > 0,
        "worker_init_fn": seed_worker,
        "generator": torch.Generator().manual_seed(seed if seed is not None else 0),
    }
    if seed is not None:
        batches = SeededBatchSampler(sampler, images_per_gpu, seed)
        return DataLoader(SeededDataset(dataset), batch_sampler=batches, **common)
    return DataLoader(dataset, batch_size=images_per_gpu, sampler=sampler, drop_last=False, **common)


def build_train_loader(
    dataset: Dataset,
    images_per_gpu: int,
    workers: int,
    seed: int = 0,
    distributed: bool = False,
    *,
    size_divisor: int | None = None,
    pin_memory: bool | None = None,
) -> DataLoader:
    """Shuffled loader of :class:`~locdistill.structures.Batch` es of ``images_per_gpu`` images.

    ``loader.dataset`` is ``dataset`` wrapped in a :class:`~locdistill.data.seeding.SeededDataset`;
    ``loader.batch_sampler`` a :class:`~locdistill.data.seeding.SeededBatchSampler` over the index
    sampler (``EpochShuffleSampler``, or ``DistributedSampler`` under ``torch.distributed``).

    Args:
        dataset: a detection dataset (``size_divisor`` is read from it unless given).
        images_per_gpu: images per batch on this process.
        workers: worker processes (0: load in the main process); workers are persistent.
        seed: shuffling and augmentation seed (with the epoch given to ``loader.batch_sampler.set_epoch``)
            and base seed of the loader's generator.
        distributed: use ``DistributedSampler`` when ``torch.distributed`` is initialised.
    """
    sampler: Sampler[int]
    if _distributed(distributed):
        sampler = DistributedSampler(dataset, shuffle=True, seed=seed, drop_last=False)  # type: ignore[arg-type]
    else:
        sampler = EpochShuffleSampler(dataset, seed)  # type: ignore[arg-type]
    return _loader(dataset, images_per_gpu, sampler, workers, size_divisor, pin_memory, seed)


def build_test_loader(
    dataset: Dataset,
    images_per_gpu: int = 1,
    workers: int = 0,
    distributed: bool = False,
    *,
    size_divisor: int | None = None,
    pin_memory: bool | None = None,
) -> DataLoader:
    """Sequential loader; under ``torch.distributed`` rank ``r`` gets images ``r::world_size``."""
    if _distributed(distributed):
        sampler = ShardSampler(dataset, dist.get_rank(), dist.get_world_size())  # type: ignore[arg-type]
    else:
        sampler = ShardSampler(dataset, 0, 1)  # type: ignore[arg-type]
    return _loader(dataset, images_per_gpu, sampler, workers, size_divisor, pin_memory)
