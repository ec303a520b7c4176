"""A dataset repeated ``times`` times per epoch (mmdetection ``RepeatDataset``; VOC trains with 3)."""

from __future__ import annotations

from torch.utils.data import Dataset

from locdistill.data.dataset import DetectionDataset, Sample


class RepeatDataset(Dataset[Sample]):
    """``dataset`` seen ``times`` times per epoch: index ``i`` is ``dataset[i % len(dataset)]``.

    The class names, category ids, size divisor and skip count of the wrapped dataset are exposed;
    the evaluation API (image ids, annotations) belongs to ``.dataset``.
    """

    def __init__(self, dataset: DetectionDataset, times: int) -> None:
        if times < 1:
            raise ValueError(f"repeat must be at least 1, got {times}")
        self.dataset = dataset
        self.times = times

    @property
    def class_names(self) -> list[str]:
        return self.dataset.class_names

    @property
    def category_ids(self) -> list[int]:
        return self.dataset.category_ids

    @property
    def num_classes(self) -> int:
        return self.dataset.num_classes

    @property
    def size_divisor(self) -> int:
        return self.dataset.size_divisor

    @property
    def pixel_norm(self) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
        return self.dataset.pixel_norm

    @property
    def num_skipped(self) -> int:
        return self.dataset.num_skipped

    def __len__(self) -> int:
        return self.times * len(self.dataset)

    def __getitem__(self, index: int) -> Sample:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for a dataset of {len(self)} samples")
        return self.dataset[index % len(self.dataset)]

    def __repr__(self) -> str:
        return f"RepeatDataset({self.dataset!r}, times={self.times})"
