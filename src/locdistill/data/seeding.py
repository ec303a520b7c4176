"""Per-sample random seeds for training augmentation, the same in any process.

The random choices of the training pipeline (flip, multi-scale size, and any ``random`` / ``numpy`` use
in user transforms) for dataset index ``i`` in epoch ``e`` come from one seed,
``sample_seed(seed, e, i)``. The main process computes it (:class:`SeededBatchSampler` yields
``(index, seed)`` pairs) and :class:`SeededDataset` seeds the global RNGs with it right before loading
the sample, in whichever process loads it. So the batches depend only on ``(seed, epoch)``: not on
``data.workers_per_gpu``, nor on which worker loads a batch, nor on how many batches a worker loaded
before (a resumed run's workers start fresh). In the main process (``workers_per_gpu=0``) the global
RNG states are put back afterwards, so loading leaves the training RNG untouched.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler, get_worker_info


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """A 32-bit seed for sample ``index`` of ``epoch`` (``numpy.random.SeedSequence`` mixing)."""
    words = [seed & 0xFFFFFFFF, (seed >> 32) & 0xFFFFFFFF, epoch, index]
    return int(np.random.SeedSequence(words).generate_state(1)[0])


class SeededBatchSampler(Sampler[list[tuple[int, int]]]):
    """Batches of ``batch_size`` indices of ``sampler``, each paired with its :func:`sample_seed`.

    ``set_epoch(e)`` sets the epoch of the seeds and of ``sampler`` (whose order also depends on it);
    ``seed`` may be changed between epochs (a resumed run restores the one it started with).
    """

    def __init__(self, sampler: Sampler[int], batch_size: int, seed: int) -> None:
        self.sampler, self.batch_size, self.seed, self.epoch = sampler, batch_size, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        if hasattr(self.sampler, "set_epoch"):
            self.sampler.set_epoch(epoch)

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        batch: list[tuple[int, int]] = []
        for index in self.sampler:
            batch.append((index, sample_seed(self.seed, self.epoch, index)))
            if len(batch) == self.batch_size:
                yield batch
                batch = []
        if batch:
            yield batch

    def __len__(self) -> int:
        n = len(self.sampler)  # type: ignore[arg-type]
        return (n + self.batch_size - 1) // self.batch_size


class SeededDataset(Dataset[Any]):
    """``dataset`` indexed by ``(index, seed)``: the global RNGs are seeded with ``seed`` first.

    Attributes other than indexing (``class_names``, ``num_skipped``...) are those of ``dataset``.
    """

    def __init__(self, dataset: Dataset[Any]) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getattr__(self, name: str) -> Any:
        if name == "dataset":  # not set yet (unpickling)
            raise AttributeError(name)
        return getattr(self.dataset, name)

    def __getitem__(self, item: tuple[int, int]) -> Any:
        index, seed = item
        if get_worker_info() is not None:  # a worker process: its RNGs serve only the data
            _seed_all(seed)
            return self.dataset[index]
        saved = (torch.get_rng_state(), random.getstate(), np.random.get_state())
        try:
            _seed_all(seed)
            return self.dataset[index]
        finally:
            torch.set_rng_state(saved[0])
            random.setstate(saved[1])
            np.random.set_state(saved[2])


def _seed_all(seed: int) -> None:
    torch.random.default_generator.manual_seed(seed)
    random.seed(seed)
    np.random.seed(seed)
