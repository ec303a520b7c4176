"""Loader helpers for exact resume: tell samplers the epoch, and skip the batches already done in an
epoch without loading them (the sampler order depends only on the seed and the epoch)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from torch.utils.data import DataLoader, Sampler


class _SkipBatches(Sampler[list[int]]):
    """The batches of ``batch_sampler`` after the first ``skip`` (only indices are drawn for those)."""

    def __init__(self, batch_sampler: Any, skip: int) -> None:
        self.batch_sampler, self.skip = batch_sampler, skip

    def __iter__(self) -> Iterator[list[int]]:
        for i, indices in enumerate(self.batch_sampler):
            if i >= self.skip:
                yield indices

    def __len__(self) -> int:
        return max(len(self.batch_sampler) - self.skip, 0)


def skip_batches(loader: DataLoader, skip: int) -> DataLoader:
    """``loader`` without its first ``skip`` batches, in the same order, loading none of them."""
    if skip <= 0:
        return loader
    if loader.batch_sampler is None:
        raise ValueError("resuming inside an epoch needs a loader with a batch sampler")
    kwargs: dict[str, Any] = {}
    if loader.num_workers > 0:
        kwargs.update(
            prefetch_factor=loader.prefetch_factor,
            persistent_workers=False,
            multiprocessing_context=loader.multiprocessing_context,
        )
    return DataLoader(
        loader.dataset,
        batch_sampler=_SkipBatches(loader.batch_sampler, skip),
        num_workers=loader.num_workers,
        collate_fn=loader.collate_fn,
        pin_memory=loader.pin_memory,
        worker_init_fn=loader.worker_init_fn,
        generator=loader.generator,
        **kwargs,
    )


def set_epoch(loader: DataLoader, epoch: int) -> None:
    """Tell the loader's sampler(s) the epoch (their shuffling depends on seed and epoch only)."""
    inner = getattr(loader.batch_sampler, "sampler", None)
    objects: tuple[Any, ...] = (loader.sampler, loader.batch_sampler, inner)
    for obj in objects:
        if obj is not None and hasattr(obj, "set_epoch"):
            obj.set_epoch(epoch)


def data_seed(loader: DataLoader) -> int | None:
    """The seed of a training loader's order and augmentation (``None`` for other loaders)."""
    seed = getattr(loader.batch_sampler, "seed", None)
    return int(seed) if seed is not None else None


def set_data_seed(loader: DataLoader, seed: int) -> None:
    """Make a training loader draw its order and augmentation from ``seed`` (a resumed run restores the
    one it started with)."""
    for obj in (loader.batch_sampler, getattr(loader.batch_sampler, "sampler", None)):
        if obj is not None and hasattr(obj, "seed"):
            obj.seed = seed
