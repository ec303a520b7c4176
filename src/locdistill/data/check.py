"""Check a dataset's image files up front, before training spends hours on the way to them.

:func:`check_image_files` opens every image of a dataset (several at a time) and reports, in one error
naming the files, those that are missing, cannot be decoded (truncated or not an image), do not have
the size their annotation says, or are so elongated that the test pipeline's keep-ratio resize into
``img_scale`` would give them a side under one pixel. JPEGs are decoded at 1/8 scale (libjpeg still
reads every byte, so a truncated file is caught) and PNGs are verified chunk by chunk (CRCs), which
keeps the check at about 2 ms per image. :func:`check_image_sizes` does the elongation check alone,
from the annotated sizes (no file is opened), for training sets of any size and for datasets whose
images are rendered rather than read (``images_from_files = False``: synthetic data).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from locdistill.data.image_io import BadImageError
from locdistill.data.records import ImageRecord
from locdistill.data.transforms import rescale_size

logger = logging.getLogger(__name__)

MAX_LISTED = 5


def check_record(record: ImageRecord, img_scale: Sequence[int] | None = None) -> str | None:
    """What is wrong with the image file of ``record`` (a sentence naming the file), or ``None``."""
    from PIL import Image

    path = record.path
    if not path.is_file():
        return f"{path}: file not found"
    try:
        with Image.open(path) as im:
            width, height = im.size
            if im.format == "PNG":
                im.verify()  # every chunk and its CRC: a truncated file fails here
            else:
                if im.format == "JPEG":
                    im.draft("RGB", (max(width // 8, 1), max(height // 8, 1)))
                im.load()
    except Exception as e:  # PIL raises many exception types for bad files
        return f"{path}: cannot decode ({' '.join(str(e).split()) or type(e).__name__})"
    if (height, width) != (record.height, record.width):
        said = f"{record.width}x{record.height}"
        return f"{path}: the file is {width}x{height} (w x h) but its annotation says {said}"
    if img_scale is not None:
        return _elongation(record, img_scale)
    return None


def _elongation(record: ImageRecord, scale: Sequence[int]) -> str | None:
    new_h, new_w = rescale_size(record.height, record.width, scale)
    if min(new_h, new_w) >= 1:
        return None
    return (
        f"{record.path}: {record.width}x{record.height} (w x h) is too elongated: resized into "
        f"{list(scale)} it would be {new_w}x{new_h}"
    )


def smallest_scale(img_scale: Sequence[int], multiscale: Sequence[Sequence[int]] | None) -> list[int]:
    """The smallest ``(long, short)`` resize limits the training pipeline can draw."""
    if multiscale:
        return [min(max(s) for s in multiscale), min(min(s) for s in multiscale)]
    return [max(img_scale), min(img_scale)]


def check_image_sizes(dataset: Any, scale: Sequence[int], what: str = "data") -> None:
    """Raise :class:`BadImageError` naming the images of ``dataset`` that a keep-ratio resize into
    ``scale`` would give a side under one pixel; from the annotated sizes only (no file is opened), so
    cheap enough for any training set."""
    records = dataset_records(dataset)
    _raise(
        dataset, what, [p for p in (_elongation(r, scale) for r in records) if p is not None], len(records)
    )


def _base(dataset: Any) -> Any:
    """The detection dataset inside wrappers (:class:`RepeatDataset`, :class:`SeededDataset`)."""
    while not hasattr(dataset, "records") and hasattr(dataset, "dataset"):
        dataset = dataset.dataset
    return dataset


def dataset_records(dataset: Any) -> list[ImageRecord]:
    """The :class:`ImageRecord` s of a dataset (wrappers such as :class:`RepeatDataset` unwrapped)."""
    return list(_base(dataset).records)


def check_image_files(
    dataset: Any, img_scale: Sequence[int] | None = None, what: str = "data", workers: int | None = None
) -> None:
    """Raise :class:`BadImageError` naming the unusable image files of ``dataset`` (see the module doc).

    Args:
        dataset: a detection dataset (or a repeat of one).
        img_scale: the test pipeline's ``(long, short)`` resize limits, for the elongation check.
        what: what the data is, for the message (e.g. ``"validation data (data.val)"``).
        workers: threads reading files (default: up to 8, one per CPU).
    """
    records = dataset_records(dataset)
    if not getattr(_base(dataset), "images_from_files", True):  # rendered (synthetic): no files to read
        if img_scale is not None:
            check_image_sizes(dataset, img_scale, what)
        return
    workers = workers or max(1, min(8, os.cpu_count() or 1))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        problems = [p for p in pool.map(lambda r: check_record(r, img_scale), records) if p is not None]
    if not problems:
        logger.info("%s: all %d image files read and match their annotations", what, len(records))
    _raise(dataset, what, problems, len(records))


def _raise(dataset: Any, what: str, problems: list[str], total: int) -> None:
    if not problems:
        return
    shown = "; ".join(problems[:MAX_LISTED])
    more = f"; and {len(problems) - MAX_LISTED} more" if len(problems) > MAX_LISTED else ""
    source = getattr(dataset, "source", "") or getattr(getattr(dataset, "dataset", None), "source", "")
    raise BadImageError(
        f"{what}{f' ({source})' if source else ''}: {len(problems)} of {total} images cannot be "
        f"used: {shown}{more}. Fix or remove them before training"
    )
