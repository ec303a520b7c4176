"""Reading image files: pixels (:func:`read_image`) or just the size from the header
(:func:`read_image_size`). A bad file raises :class:`BadImageError` naming it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor


class BadImageError(RuntimeError):
    """An image file that is missing, cannot be decoded, or does not match its annotation."""


def read_image(path: str | Path) -> Tensor:
    """Decode an image file to ``uint8 [3, H, W]`` RGB with PIL (libjpeg-turbo for JPEG). No EXIF
    rotation is applied: annotation sizes refer to the stored pixels.

    Raises:
        BadImageError: naming ``path`` when the file is missing, empty, truncated or not an image.
    """
    path = Path(path)
    if not path.is_file():
        raise BadImageError(f"image file not found: {path}")
    try:
        with Image.open(path) as im:
            rgb = np.array(im.convert("RGB"))
    except Exception as e:  # PIL raises many exception types for bad files
        raise BadImageError(f"cannot decode image file {path}: {e}") from None
    return torch.from_numpy(rgb).permute(2, 0, 1).contiguous()


def read_image_size(path: str | Path) -> tuple[int, int]:
    """``(height, width)`` from the file header only (PIL does not decode the pixels for this)."""
    path = Path(path)
    if not path.is_file():
        raise BadImageError(f"image file not found: {path}")
    try:
        with Image.open(path) as im:
            width, height = im.size
    except Exception as e:
        raise BadImageError(f"cannot read image file {path}: {e}") from None
    return int(height), int(width)
