"""Reading image files: pixels (:func:`read_image`) or just the size from the header
(:func:`read_image_size`). A bad file raises :class:`BadImageError` naming it. Modes 8-bit RGB cannot
hold (16-bit PNGs, CMYK...) are converted as :func:`to_rgb8` says, with a warning.

JPEG files of one (grey) or three channels are decoded by ``torchvision.io.decode_jpeg`` (libjpeg-turbo,
the same pixels as PIL's decoder, checked on every coco128 photo, in about 30-45 % less time: PIL decodes
into 4 bytes a pixel and repacks); every other file (PNG, BMP..., CMYK JPEGs) by PIL. torchvision 0.29
deprecated its image decoders (for TorchCodec); its warning is silenced here, and where a torchvision has
none (:data:`TORCHVISION_JPEG` false) PIL decodes JPEGs too, to the same pixels."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor

logger = logging.getLogger(__name__)

try:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from torchvision.io import ImageReadMode, decode_jpeg, read_file
        from torchvision.io.image import _has_image_ops

    TORCHVISION_JPEG = bool(_has_image_ops())
except ImportError:  # a torchvision without image decoders
    TORCHVISION_JPEG = False

JPEG_MAGIC = (0xFF, 0xD8, 0xFF)
"""The first three bytes of every JPEG file (SOI marker and the next marker's prefix)."""


class BadImageError(RuntimeError):
    """An image file that is missing, cannot be decoded, or does not match its annotation."""


def read_image(path: str | Path) -> Tensor:
    """Decode an image file to ``uint8 [3, H, W]`` RGB. No EXIF rotation is applied: annotation sizes
    refer to the stored pixels.

    The tensor is laid out channels-last in memory (strides ``(1, 3 W, 3)``, the ``[H, W, 3]`` array
    the decoders write): the resize kernel reads that layout without a copy. Call ``.contiguous()``
    where ``[3, H, W]`` memory is needed.

    Raises:
        BadImageError: naming ``path`` when the file is missing, empty, truncated or not an image.
    """
    path = Path(path)
    if not path.is_file():
        raise BadImageError(f"image file not found: {path}")
    try:
        if TORCHVISION_JPEG:
            image = _decode_jpeg(path)
            if image is not None:
                return image
        with Image.open(path) as im:
            rgb = to_rgb8(im, path)
    except Exception as e:  # PIL and torchvision raise many exception types for bad files
        raise BadImageError(f"cannot decode image file {path}: {e}") from None
    return torch.from_numpy(rgb).permute(2, 0, 1)


def _decode_jpeg(path: Path) -> Tensor | None:
    """``uint8 [3, H, W]`` (channels-last memory) of a grey or colour JPEG file; ``None`` for other
    files and JPEG modes (CMYK, YCCK), which PIL decodes."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        data = read_file(str(path))
        if tuple(data[:3].tolist()) != JPEG_MAGIC:
            return None
        image = decode_jpeg(data, mode=ImageReadMode.UNCHANGED)
    if image.shape[0] == 3:
        return image
    if image.shape[0] == 1:  # grey: the value in all three channels, as PIL's L -> RGB
        return image.permute(1, 2, 0).expand(-1, -1, 3).contiguous().permute(2, 0, 1)
    return None


EXACT_MODES = frozenset({"1", "L", "P", "RGB", "RGBA", "RGBX", "RGBa", "LA", "La", "PA"})
"""PIL modes whose 8-bit RGB conversion keeps every colour value (alpha is dropped)."""
_warned_modes: set[str] = set()


def to_rgb8(im: Image.Image, path: str | Path = "") -> np.ndarray:
    """``uint8 [H, W, 3]`` RGB of a PIL image. 8-bit modes convert exactly; 16-bit grey (``I;16*``,
    16-bit PNGs) is scaled ``v / 257`` to 0-255, 32-bit integer (``I``) kept when its values fit 0-255,
    else scaled as 16-bit, float (``F``) from 0-1 when the values lie there, else clipped to 0-255;
    other modes (CMYK, YCbCr, LAB, HSV...) by PIL's approximate conversion. Every conversion that is
    not exact is reported once per mode and process with a warning naming the file.
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
    path = Path(path)
    if not path.is_file():
        raise BadImageError(f"image file not found: {path}")
    try:
        with Image.open(path) as im:
            width, height = im.size
    except Exception as e:
        raise BadImageError(f"cannot read image file {path}: {e}") from None
    return int(height), int(width)
