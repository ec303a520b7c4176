"""YOLO text-label datasets (Ultralytics layout).

* Images: a folder (searched recursively for image files, sorted by path) or a list file with one image
  path per line (absolute, relative to the data root, or ``./``-relative to the list file).
* Labels: the image path with its last ``/images/`` replaced by ``/labels/`` and the suffix by ``.txt``
  (Ultralytics ``img2label_paths``). A missing label file means an image without objects.
* Each label line is ``<class> <cx> <cy> <w> <h>``, normalised to ``[0, 1]`` by the image width/height;
  a longer line ``<class> x1 y1 x2 y2 ...`` is a polygon (Ultralytics segments) and gives its bounding box.
  Boxes in pixels: ``x1 = (cx - w / 2) * W``, ``x2 = (cx + w / 2) * W`` (computed in float64).
* Classes: ``classes.txt`` (one name per line, line i = label i) next to the data, or given explicitly.
* The image size is read from the file header when the dataset is built (no decoding).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from locdistill.data.dataset import DatasetOptions, DetectionDataset
from locdistill.data.image_io import BadImageError, read_image_size
from locdistill.data.list_files import read_list_file, resolve_listed_path
from locdistill.data.records import DataFormatError, ImageRecord, IssueLog, make_record

if TYPE_CHECKING:
    from typing_extensions import Unpack

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


def label_path_of(image_path: Path) -> Path:
    """Ultralytics' label path of an image: last ``/images/`` -> ``/labels/``, suffix -> ``.txt``."""
    s = str(image_path)
    a, b = f"{os.sep}images{os.sep}", f"{os.sep}labels{os.sep}"
    if a in s:
        s = b.join(s.rsplit(a, 1))
    return Path(s).with_suffix(".txt")


def read_class_names(path: Path) -> list[str]:
    """Class names, one per line (blank lines skipped)."""
    if not path.is_file():
        raise DataFormatError(f"class names file not found: {path}")
    names = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not names:
        raise DataFormatError(f"{path}: no class names")
    if len(set(names)) != len(names):
        raise DataFormatError(f"{path}: duplicate class names")
    return names


def parse_yolo_labels(
    path: Path, num_classes: int, width: int, height: int
) -> tuple[list[list[float]], list[int]]:
    """Boxes (xyxy pixels of a ``width`` x ``height`` image) and labels of one label file."""
    if not path.is_file():
        return [], []
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise DataFormatError(f"{path}: cannot read label file: {e}") from None
    boxes, labels = [], []
    for line_no, line in enumerate(text.splitlines(), start=1):
        parts = line.split()
        if not parts:
            continue
        where = f"{path}: line {line_no}"
        if len(parts) < 5 or (len(parts) > 5 and len(parts) % 2 == 0):
            raise DataFormatError(
                f"{where}: expected 'class cx cy w h' (5 numbers) or a polygon, got {line.strip()!r}"
            )
        try:
            cls_f = float(parts[0])
            values = [float(v) for v in parts[1:]]
        except ValueError:
            raise DataFormatError(f"{where}: not numbers: {line.strip()!r}") from None
        if not cls_f.is_integer() or not 0 <= cls_f < num_classes:
            raise DataFormatError(f"{where}: class index {parts[0]} is not an integer in [0, {num_classes})")
        if not all(np.isfinite(values)):
            raise DataFormatError(f"{where}: coordinates must be finite: {line.strip()!r}")
        if len(values) == 4:
            cx, cy, w, h = values
            box = [(cx - w / 2) * width, (cy - h / 2) * height, (cx + w / 2) * width, (cy + h / 2) * height]
        else:
            xs, ys = values[0::2], values[1::2]
            box = [min(xs) * width, min(ys) * height, max(xs) * width, max(ys) * height]
        boxes.append(box)
        labels.append(int(cls_f))
    return boxes, labels


def list_images(source: Path, root: Path) -> list[Path]:
    """Image paths of a folder (recursive, sorted) or of a list file."""
    if source.is_dir():
        return sorted(p for p in source.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if source.is_file():
        return [resolve_listed_path(entry, root, source) for entry in read_list_file(source)]
    raise DataFormatError(f"image folder or list file not found: {source}")


class YoloDataset(DetectionDataset):
    """Images of a folder or list file with Ultralytics YOLO labels.

    Args:
        images: image folder or list file.
        root: data root (list entries are relative to it; ``file_name`` is relative to it).
        classes: class names; default: read from ``classes_file``.
        classes_file: default ``root/classes.txt``.
        transform, skip_bad, filter_empty_gt, min_size: see :class:`DetectionDataset`. With
            ``skip_bad``, an image whose header cannot be read is left out (warned, counted in
            :attr:`num_skipped`) instead of raising.
    """

    def __init__(
        self,
        images: str | Path,
        root: str | Path | None = None,
        *,
        classes: Sequence[str] | None = None,
        classes_file: str | Path | None = None,
        **options: Unpack[DatasetOptions],
    ) -> None:
        images = Path(images)
        root_path = Path(root) if root is not None else (images if images.is_dir() else images.parent)
        names = (
            list(classes) if classes else read_class_names(Path(classes_file or root_path / "classes.txt"))
        )
        source = str(images)
        issues = IssueLog(source)
        records: list[ImageRecord] = []
        skipped = 0
        for path in list_images(images, root_path):
            try:
                height, width = read_image_size(path)
            except BadImageError as e:
                if not options.get("skip_bad", False):
                    raise
                logger.warning("%s: leaving out an unreadable image: %s", source, e)
                skipped += 1
                continue
            label_file = label_path_of(path)
            boxes, labels = parse_yolo_labels(label_file, len(names), width, height)
            try:
                file_name = str(path.relative_to(root_path))
            except ValueError:
                file_name = str(path)
            records.append(
                make_record(
                    len(records), file_name, path, height, width, boxes, labels, str(label_file), issues
                )
            )
        super().__init__(
            records,
            names,
            source=source,
            **options,
            issues=issues,
            num_skipped=skipped,
        )
