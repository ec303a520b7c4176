"""The common base of all detection datasets: samples, the evaluation API and bad-image handling.

A dataset is a list of :class:`~locdistill.data.records.ImageRecord` (one per image, parsed eagerly when
the dataset is built so that every annotation problem is reported once, up front). ``dataset[i]`` reads
and decodes the image, builds the training :class:`~locdistill.structures.Targets` and applies the
dataset's transform::

    image:   uint8 [3, H, W] RGB            (float32 [3, h, w] normalised after the transform)
    targets: Targets in original-image pixels (network-input pixels after the transform)
    meta:    ImageMeta with ori_shape = img_shape = pad_shape = (H, W) before the transform

Training targets: ``Targets.boxes`` hold the normal boxes; COCO crowd regions and VOC ``difficult``
objects go to ``Targets.ignore_boxes`` (mmdetection 2.x puts both in ``gt_bboxes_ignore``). Evaluation
reads :meth:`DetectionDataset.get_annotation`, which keeps every box with its ``ignore`` (crowd) and
``difficult`` flags and never decodes an image.

Bad input: every error names the file and the item. An unreadable image raises :class:`BadImageError`;
with ``skip_bad=True`` (training) the sample is replaced by the next readable one, a warning names the
file (once per file and process) and :attr:`DetectionDataset.num_skipped` counts the replacements.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any, TypedDict

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from locdistill.data.image_io import BadImageError, read_image
from locdistill.data.records import Annotation, DataFormatError, ImageRecord, IssueLog
from locdistill.structures import ImageMeta, Targets

logger = logging.getLogger(__name__)

Sample = tuple[Tensor, Targets, ImageMeta]
"""What ``dataset[i]`` returns: ``(image, targets, meta)``."""

Transform = Callable[[Tensor, Targets, ImageMeta], Sample]
"""``(uint8 image [3,H,W], targets, meta) -> (float image [3,h,w], targets, meta)``."""


class DatasetOptions(TypedDict, total=False):
    """The keyword options every dataset (COCO, VOC, YOLO, synthetic) hands on to
    :class:`DetectionDataset`; see its arguments."""

    transform: Transform | None
    skip_bad: bool
    filter_empty_gt: bool
    min_size: int


class DetectionDataset(Dataset[Sample]):
    """Base of the COCO, VOC, YOLO and synthetic datasets.

    Args:
        records: the images, parsed.
        class_names: name of each label index.
        source: what the data came from (annotation file, list file...), used in messages.
        category_ids: COCO category id of each label (default ``1..C``).
        transform: applied to every sample; ``None`` returns the decoded image and original targets.
        skip_bad: replace unreadable images by the next readable one (warn, count) instead of raising.
        filter_empty_gt: drop images without any box (normal, crowd or difficult), as mmdetection
            does for training.
        min_size: drop images whose shorter side is below this many pixels (mmdetection: 32 in training).
        issues: the recoverable problems found while parsing ``records``: warned here (one line per kind)
            and counted in :attr:`issues`.
        num_skipped: images the reader already left out as unreadable (starts :attr:`num_skipped`).
    """

    size_divisor: int = 32
    """Padding multiple used by the loaders' collate function (set by :func:`build_dataset`)."""
    pixel_norm: tuple[tuple[float, ...], tuple[float, ...]] | None = None
    """``(mean, std)`` in 0-255 units when the transform leaves images uint8 for the training loader to
    normalise on the device (set by :func:`build_dataset` with ``normalize_on_device``), else ``None``."""
    images_from_files: bool = True
    """Whether :meth:`load_image` reads ``record.path`` (``False``: rendered, e.g. synthetic data)."""

    def __init__(
        self,
        records: Sequence[ImageRecord],
        class_names: Sequence[str],
        *,
        source: str,
        category_ids: Sequence[int] | None = None,
        transform: Transform | None = None,
        skip_bad: bool = False,
        filter_empty_gt: bool = False,
        min_size: int = 0,
        issues: IssueLog | None = None,
        num_skipped: int = 0,
    ) -> None:
        if issues is not None:
            issues.emit()
        self.source = source
        self.class_names: list[str] = list(class_names)
        self.category_ids: list[int] = (
            list(category_ids) if category_ids is not None else list(range(1, len(self.class_names) + 1))
        )
        if len(self.category_ids) != len(self.class_names):
            raise ValueError(
                f"{source}: {len(self.category_ids)} category ids for {len(self.class_names)} classes"
            )
        if not records:
            raise DataFormatError(f"{source}: empty dataset (no images listed)")
        kept = list(records)
        if filter_empty_gt:
            kept = [r for r in kept if len(r)]
        if min_size > 0:
            kept = [r for r in kept if min(r.height, r.width) >= min_size]
        if not kept:
            raise DataFormatError(
                f"{source}: empty dataset: none of its {len(records)} images is left after dropping images "
                f"without annotations (filter_empty_gt={filter_empty_gt}) or smaller than {min_size} px"
            )
        if len(kept) < len(records):
            logger.info(
                "%s: %d of %d images kept (filter_empty_gt=%s, min_size=%d)",
                source,
                len(kept),
                len(records),
                filter_empty_gt,
                min_size,
            )
        self.records: list[ImageRecord] = kept
        self.transform = transform
        self.skip_bad = skip_bad
        self.num_skipped = num_skipped
        self.bad_files: set[str] = set()
        self.issues: dict[str, int] = issues.counts() if issues is not None else {}

    # --------------------------------------------------------------------------- evaluation API
    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def image_ids(self) -> list[int]:
        return [r.image_id for r in self.records]

    def __len__(self) -> int:
        return len(self.records)

    def image_info(self, index: int) -> tuple[str, int, int]:
        """``(file_name, height, width)`` of image ``index`` (original size, pixels)."""
        r = self.records[index]
        return r.file_name, r.height, r.width

    def get_annotation(self, index: int) -> Annotation:
        """All boxes of image ``index`` in original pixels with their crowd/difficult flags."""
        r = self.records[index]
        return Annotation(
            boxes=torch.from_numpy(r.boxes.astype(np.float32, copy=True)).reshape(-1, 4),
            labels=torch.from_numpy(r.labels.astype(np.int64, copy=True)),
            ignore=torch.from_numpy(r.ignore.astype(bool, copy=True)),
            difficult=torch.from_numpy(r.difficult.astype(bool, copy=True)),
        )

    def to_coco_dict(self) -> dict[str, Any]:
        """The ground truth as a COCO dict (``images``, ``annotations``, ``categories``).

        Boxes become ``[x, y, w, h]`` with ``area = w * h``; crowd regions and VOC difficult objects get
        ``iscrowd = 1`` (pycocotools then ignores detections matched to them). Image ids are
        :attr:`image_ids`, category ids :attr:`category_ids`. :class:`CocoDataset` overrides this to
        return its original json content.
        """
        images, annotations = [], []
        ann_id = 1
        for r in self.records:
            images.append({"id": r.image_id, "file_name": r.file_name, "height": r.height, "width": r.width})
            for k in range(len(r)):
                x1, y1, x2, y2 = (float(v) for v in r.boxes[k])
                w, h = x2 - x1, y2 - y1
                crowd = bool(r.ignore[k]) or bool(r.difficult[k])
                annotations.append(
                    {
                        "id": ann_id,
                        "image_id": r.image_id,
                        "category_id": self.category_ids[int(r.labels[k])],
                        "bbox": [x1, y1, w, h],
                        "area": w * h,
                        "iscrowd": int(crowd),
                    }
                )
                ann_id += 1
        categories = [{"id": cid, "name": name} for cid, name in zip(self.category_ids, self.class_names)]
        return {"images": images, "annotations": annotations, "categories": categories}

    # ------------------------------------------------------------------------------- samples
    def load_image(self, index: int) -> Tensor:
        """``uint8 [3, H, W]`` RGB of image ``index`` (raises :class:`BadImageError` naming the file)."""
        return read_image(self.records[index].path)

    def get_targets(self, index: int) -> Targets:
        """Training targets of image ``index`` (original pixels); crowd/difficult ones are ignore boxes."""
        ann = self.get_annotation(index)
        special = ann.ignore | ann.difficult
        return Targets(
            boxes=ann.boxes[~special], labels=ann.labels[~special], ignore_boxes=ann.boxes[special]
        )

    def load_sample(self, index: int) -> Sample:
        """Image ``index`` decoded, with its targets and meta, before the transform."""
        r = self.records[index]
        image = self.load_image(index)
        if tuple(image.shape[-2:]) != (r.height, r.width):
            raise BadImageError(
                f"image file {r.path} is {image.shape[-1]}x{image.shape[-2]} (w x h) but its annotation says "
                f"{r.width}x{r.height}"
            )
        shape = (r.height, r.width)
        meta = ImageMeta(
            image_id=r.image_id, file_name=str(r.path), ori_shape=shape, img_shape=shape, pad_shape=shape
        )
        return image, self.get_targets(index), meta

    def __getitem__(self, index: int) -> Sample:
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for a dataset of {len(self)} images")
        sample = self._load_or_skip(index) if self.skip_bad else self.load_sample(index)
        if self.transform is not None:
            sample = self.transform(*sample)
        return sample

    def _load_or_skip(self, index: int) -> Sample:
        n = len(self)
        for step in range(n):
            j = (index + step) % n
            path = str(self.records[j].path)
            if path in self.bad_files:
                self.num_skipped += 1
                continue
            try:
                return self.load_sample(j)
            except BadImageError as e:
                self.bad_files.add(path)
                self.num_skipped += 1
                logger.warning(
                    "%s: skipping an unreadable image (%d sample(s) replaced so far): %s",
                    self.source,
                    self.num_skipped,
                    e,
                )
        raise BadImageError(f"{self.source}: no readable image left ({len(self.bad_files)} unreadable files)")

    def __repr__(self) -> str:
        n_boxes = sum(len(r) for r in self.records)
        return (
            f"{type(self).__name__}({self.source!r}, images={len(self)}, boxes={n_boxes}, "
            f"classes={self.num_classes})"
        )
