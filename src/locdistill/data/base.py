"""The common base of all detection datasets: records, annotations, image reading and bad-input handling.

A dataset is a list of :class:`ImageRecord` (one per image, parsed eagerly when the dataset is built so
that every annotation problem is reported once, up front). ``dataset[i]`` reads and decodes the image,
builds the training :class:`~locdistill.structures.Targets` and applies the dataset's transform::

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
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from locdistill.structures import ImageMeta, Targets

logger = logging.getLogger(__name__)

Sample = tuple[Tensor, Targets, ImageMeta]
"""What ``dataset[i]`` returns: ``(image, targets, meta)``."""

Transform = Callable[[Tensor, Targets, ImageMeta], Sample]
"""``(uint8 image [3,H,W], targets, meta) -> (float image [3,h,w], targets, meta)``."""


class DataFormatError(ValueError):
    """An annotation, list or class file that cannot be used; the message names the file and the item."""


class BadImageError(RuntimeError):
    """An image file that is missing, cannot be decoded, or does not match its annotation."""


# ------------------------------------------------------------------------------------------ records
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


# ------------------------------------------------------------------------------------------- images
def read_image(path: str | Path) -> Tensor:
    """Decode an image file to ``uint8 [3, H, W]`` RGB with PIL (libjpeg-turbo for JPEG). No EXIF
    rotation is applied: annotation sizes refer to the stored pixels.

    Raises:
        BadImageError: naming ``path`` when the file is missing, empty, truncated or not an image.
    """
    from PIL import Image

    path = Path(path)
    if not path.is_file():
        raise BadImageError(f"image file not found: {path}")
    try:
        with Image.open(path) as im:
            rgb = to_rgb8(im, path)
    except Exception as e:  # PIL raises many exception types for bad files
        raise BadImageError(f"cannot decode image file {path}: {e}") from None
    return torch.from_numpy(rgb).permute(2, 0, 1).contiguous()


EXACT_MODES = frozenset({"1", "L", "P", "RGB", "RGBA", "RGBX", "RGBa", "LA", "La", "PA"})
"""PIL modes whose 8-bit RGB conversion keeps every colour value (alpha is dropped)."""
_warned_modes: set[str] = set()


def to_rgb8(im: Any, path: str | Path = "") -> np.ndarray:
    """``uint8 [H, W, 3]`` RGB of a PIL image. 8-bit modes convert exactly; 16-bit grey (``I;16*``,
    16-bit PNGs) is scaled ``v / 257`` to 0-255, 32-bit integer (``I``) by its type's range as far as the
    values reach (0-255 kept, else 16-bit), float (``F``) from 0-1 when the values lie there, else from
    0-255; other modes (CMYK, YCbCr, LAB, HSV...) by PIL's approximate conversion. Every conversion that
    is not exact is reported once per mode and process with a warning naming the file.
    (PIL's own ``convert("RGB")`` clips 16-bit values, so almost every pixel of a 16-bit PNG is white.)
    """
    mode = str(im.mode)
    if mode in EXACT_MODES:
        return np.array(im.convert("RGB"))
    if mode.startswith("I") or mode == "F":
        values = np.asarray(im).astype(np.float64)
        top = float(values.max(initial=0.0))
        if mode.startswith("I;16") or (mode == "I" and top > 255):
            how = "16-bit values scaled to 8 bits (v / 257)"
            scaled = values / 257.0
        elif mode == "F" and top <= 1.0:
            how, scaled = "float values in [0, 1] scaled to 0-255", values * 255.0
        else:
            how, scaled = "values clipped to 0-255", values
        grey = np.clip(np.rint(scaled), 0, 255).astype(np.uint8)
        rgb = np.repeat(grey[..., None], 3, axis=2)
    else:
        how, rgb = "converted to RGB by PIL, approximately", np.array(im.convert("RGB"))
    if mode not in _warned_modes:
        _warned_modes.add(mode)
        logger.warning(
            "image %s has mode %s, which 8-bit RGB cannot hold exactly: %s (further images of this mode "
            "are not reported)",
            path,
            mode,
            how,
        )
    return rgb


def read_image_size(path: str | Path) -> tuple[int, int]:
    """``(height, width)`` from the file header only (PIL does not decode the pixels for this)."""
    from PIL import Image

    path = Path(path)
    if not path.is_file():
        raise BadImageError(f"image file not found: {path}")
    try:
        with Image.open(path) as im:
            width, height = im.size
    except Exception as e:
        raise BadImageError(f"cannot read image file {path}: {e}") from None
    return int(height), int(width)


# ------------------------------------------------------------------------------------------- lists
def read_list_file(path: Path) -> list[str]:
    """Non-empty, non-comment (``#``) lines of a list file, stripped."""
    if not path.is_file():
        raise DataFormatError(f"list file not found: {path}")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise DataFormatError(f"{path}: cannot read list file: {e}") from None
    return [s for s in (line.strip() for line in text.splitlines()) if s and not s.startswith("#")]


def resolve_listed_path(entry: str, root: Path, list_file: Path) -> Path:
    """An image path from a list file: absolute as is; else relative to the data ``root`` when it
    exists there, else relative to the list file's folder (``./x`` always is)."""
    p = Path(entry)
    if p.is_absolute():
        return p
    if entry.startswith("./"):
        return list_file.parent / p
    candidate = root / p
    return candidate if candidate.exists() else list_file.parent / p


# ------------------------------------------------------------------------------------------ dataset
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
    """

    size_divisor: int = 32
    """Padding multiple used by the loaders' collate function (set by :func:`build_dataset`)."""

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
    ) -> None:
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
        self.num_skipped = 0
        self.bad_files: set[str] = set()
        self.issues: dict[str, int] = {}

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


def stack_boxes(rows: list[list[float]]) -> np.ndarray:
    """``[n, 4]`` float64 array from a list of boxes (``[0, 4]`` when empty)."""
    return np.asarray(rows, dtype=np.float64).reshape(-1, 4)


def round_up(value: int, divisor: int) -> int:
    """``value`` rounded up to a multiple of ``divisor``."""
    return int(math.ceil(value / divisor) * divisor) if divisor > 0 else value
