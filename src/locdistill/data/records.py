"""What a dataset knows about its images before decoding any: records, annotations and their checks.

An :class:`ImageRecord` per image is parsed eagerly when a dataset is built, so that every annotation
problem is reported once, up front: fatal ones raise :class:`DataFormatError` naming the file and the
item; recoverable ones (boxes sticking out of the image, boxes of no size) go to an :class:`IssueLog`
that warns once per kind. :func:`make_record` is the common tail of the COCO, VOC and YOLO readers.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from torch import Tensor

logger = logging.getLogger(__name__)


class DataFormatError(ValueError):
    """An annotation, list or class file that cannot be used; the message names the file and the item."""


@dataclass
class Annotation:
    """Ground truth of one image in original-image pixels, for evaluation (nothing is decoded).

    Attributes:
        boxes: ``[n, 4]`` float32 xyxy, original-image pixels.
        labels: ``[n]`` int64 in ``[0, num_classes)``.
        ignore: ``[n]`` bool, COCO ``iscrowd`` regions.
        difficult: ``[n]`` bool, VOC ``difficult`` objects.
    """

    boxes: Tensor
    labels: Tensor
    ignore: Tensor
    difficult: Tensor

    def __len__(self) -> int:
        return int(self.boxes.shape[0])


@dataclass
class ImageRecord:
    """One image of a dataset. Boxes are kept as numpy arrays (cheap to hold for 100k+ images).

    Attributes:
        image_id: dataset-wide integer id (the COCO image id for COCO data, the index otherwise).
        file_name: the name as the source lists it (COCO ``file_name``, a path relative to the root...).
        path: where the image file is read from.
        height, width: original image size, pixels.
        boxes: ``[n, 4]`` float32 xyxy original pixels, already clipped to the image and non-degenerate.
        labels: ``[n]`` int64.
        ignore: ``[n]`` bool (crowd).
        difficult: ``[n]`` bool (VOC difficult).
    """

    image_id: int
    file_name: str
    path: Path
    height: int
    width: int
    boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float32))
    labels: np.ndarray = field(default_factory=lambda: np.zeros((0,), np.int64))
    ignore: np.ndarray = field(default_factory=lambda: np.zeros((0,), bool))
    difficult: np.ndarray = field(default_factory=lambda: np.zeros((0,), bool))

    def __len__(self) -> int:
        return int(self.boxes.shape[0])


class IssueLog:
    """Collects recoverable annotation problems while a dataset is parsed and reports them as one
    warning per kind (count and the first examples, each naming the file and the box)."""

    MAX_EXAMPLES = 5

    def __init__(self, source: str) -> None:
        self.source = source
        self.items: dict[str, list[str]] = {}

    def add(self, kind: str, detail: str) -> None:
        self.items.setdefault(kind, []).append(detail)
        logger.debug("%s: %s: %s", self.source, kind, detail)

    def counts(self) -> dict[str, int]:
        return {kind: len(details) for kind, details in self.items.items()}

    def emit(self) -> None:
        for kind, details in self.items.items():
            more = len(details) - self.MAX_EXAMPLES
            examples = "; ".join(details[: self.MAX_EXAMPLES]) + (f"; and {more} more" if more > 0 else "")
            logger.warning("%s: %d %s: %s", self.source, len(details), kind, examples)


CLIPPED = "box(es) outside the image clipped to it"
DEGENERATE = "box(es) of zero or negative size dropped"


def clean_boxes(
    boxes: np.ndarray, width: int, height: int, where: str, issues: IssueLog, tolerance: float = 0.01
) -> tuple[np.ndarray, np.ndarray]:
    """Clip ``boxes`` (``[n, 4]`` xyxy pixels) to the ``width`` x ``height`` image and find degenerate ones.

    Boxes sticking out by more than ``tolerance`` pixels are reported as clipped; boxes with
    ``x2 <= x1`` or ``y2 <= y1`` after clipping are reported as dropped. ``where`` names the file in
    the messages; a box is named by its index in the file. Non-finite coordinates are an error.

    Returns:
        ``(clipped boxes [n, 4] float32, keep [n] bool)``.
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    finite = np.isfinite(boxes).all(axis=1)
    if not finite.all():
        k = int(np.flatnonzero(~finite)[0])
        raise DataFormatError(
            f"{where}: box #{k}: coordinates must be finite numbers, got {boxes[k].tolist()}"
        )
    limits = np.array([width, height, width, height], dtype=np.float64)
    clipped = np.clip(boxes, 0.0, limits)
    degenerate = (clipped[:, 2] <= clipped[:, 0]) | (clipped[:, 3] <= clipped[:, 1])
    moved = (np.abs(clipped - boxes) > tolerance).any(axis=1)
    for k in np.flatnonzero(moved & ~degenerate).tolist():
        issues.add(CLIPPED, f"{where} box #{k} {_fmt(boxes[k])} (image {width}x{height})")
    for k in np.flatnonzero(degenerate).tolist():
        issues.add(DEGENERATE, f"{where} box #{k} {_fmt(boxes[k])}")
    return clipped.astype(np.float32), ~degenerate


def _fmt(box: np.ndarray) -> str:
    return "[" + ", ".join(f"{v:g}" for v in box.tolist()) + "]"


def stack_boxes(rows: Sequence[Sequence[float]]) -> np.ndarray:
    """``[n, 4]`` float64 array from a list of boxes (``[0, 4]`` when empty)."""
    return np.asarray(rows, dtype=np.float64).reshape(-1, 4)


def make_record(
    image_id: int,
    file_name: str,
    path: Path,
    height: int,
    width: int,
    boxes: Sequence[Sequence[float]],
    labels: Sequence[int],
    where: str,
    issues: IssueLog,
    *,
    ignore: Sequence[bool] | None = None,
    difficult: Sequence[bool] | None = None,
) -> ImageRecord:
    """An :class:`ImageRecord` from parsed boxes: clipped to the image by :func:`clean_boxes` (problems
    go to ``issues``, naming ``where``) and with degenerate boxes dropped from every per-box array.

    Args:
        boxes: ``[n]`` xyxy boxes in original-image pixels; labels: ``[n]``.
        ignore, difficult: ``[n]`` flags (crowd, VOC difficult); all ``False`` when not given.
    """
    clipped, keep = clean_boxes(stack_boxes(boxes), width, height, where, issues)
    kept = int(keep.sum())

    def flags(values: Sequence[bool] | None) -> np.ndarray:
        return (
            np.zeros(kept, dtype=bool) if values is None else np.asarray(values, dtype=bool).reshape(-1)[keep]
        )

    return ImageRecord(
        image_id=image_id,
        file_name=file_name,
        path=path,
        height=height,
        width=width,
        boxes=clipped[keep],
        labels=np.asarray(labels, dtype=np.int64).reshape(-1)[keep],
        ignore=flags(ignore),
        difficult=flags(difficult),
    )
