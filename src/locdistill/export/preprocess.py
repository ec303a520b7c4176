"""How to feed an exported ONNX model: the test pipeline of ``locdistill predict`` in numpy and PIL only.

No torch here, so that a deployment can copy this file (or its logic). :func:`preprocess` turns a
``uint8 [H, W, 3]`` RGB image into exactly the tensor ``predict`` feeds the network (bit for bit, on
CPUs where PyTorch resizes uint8 images natively: x86 with AVX2 or AVX-512, ARM; see
:func:`resize_bilinear_uint8`), plus the ``img_shape`` and ``ori_shape`` inputs of the graph:

1. Keep-ratio resize into ``img_scale = (long, short)``:
   ``factor = min(long / max(h, w), short / min(h, w))``, ``new_h = int(h * factor + 0.5)``,
   ``new_w = int(w * factor + 0.5)`` (float64); skipped when the size does not change.
2. Bilinear interpolation of the uint8 image, half-pixel centres, *no antialiasing*, the result
   rounded to uint8 (:func:`resize_bilinear_uint8`). OpenCV's ``cv2.resize(INTER_LINEAR)`` has the same
   kernel but rounds its own way (values may differ by 1); PIL's ``resize(BILINEAR)`` differs more: it
   antialiases when shrinking.
3. Normalise in float32: ``(x - float32(255 * mean)) / float32(255 * std)`` per RGB channel (mean/std in
   [0, 1] units, the products taken in float64).
4. Pad with zeros *after* normalisation (zero is the mean colour) at the bottom and right, to the next
   multiples of ``size_divisor`` (32).
5. Channels first, batch axis: ``float32 [1, 3, H_pad, W_pad]``, RGB order.

The graph then needs ``img_shape = [[new_h, new_w]]`` (int64; boxes are clipped to it) and
``ori_shape = [[h, w]]`` (int64; boxes come back in original-image pixels). The recipe's numbers are
stored in the ONNX file's metadata under ``preprocess`` (:meth:`Recipe.from_metadata`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image


@dataclass(frozen=True)
class Recipe:
    """The preprocessing numbers of one model (``predict``'s test pipeline).

    Attributes:
        img_scale: ``(long, short)`` sides of the keep-ratio resize (the config's ``data.img_scale``).
        size_divisor: padded height and width are multiples of it (``data.size_divisor``).
        mean / std: per RGB channel in [0, 1] units.
    """

    img_scale: tuple[int, int]
    size_divisor: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    def to_json(self) -> str:
        """The recipe as stored in the ONNX metadata key ``preprocess`` (with the fixed rules spelt out)."""
        return json.dumps(
            {
                "img_scale": [max(self.img_scale), min(self.img_scale)],
                "keep_ratio": True,
                "resize_rule": "factor = min(long / max(h, w), short / min(h, w)); "
                "new_h = int(h * factor + 0.5); new_w = int(w * factor + 0.5) (float64)",
                "interpolation": "bilinear, half-pixel centres (align_corners=False), on uint8, "
                "rounded to uint8",
                "antialias": False,
                "mean": list(self.mean),
                "std": list(self.std),
                "normalize": "(x - float32(255 * mean)) / float32(255 * std) in float32, after the resize",
                "size_divisor": self.size_divisor,
                "pad": "bottom and right, value 0 after normalisation (the mean colour)",
                "channel_order": "RGB",
                "layout": "NCHW",
                "dtype": "float32",
                "img_shape": "int64 [B, 2]: (new_h, new_w), the resized image before padding",
                "ori_shape": "int64 [B, 2]: (h, w), the original image",
                "reference": "locdistill.export.preprocess.preprocess",
            }
        )

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, str]) -> Recipe:
        """The recipe stored in an exported file's metadata (``{key: value}`` of ``metadata_props``,
        e.g. ``onnxruntime.InferenceSession(path).get_modelmeta().custom_metadata_map``)."""
        if "preprocess" not in metadata:
            raise KeyError("no 'preprocess' key in the ONNX metadata: exported by an older locdistill")
        d = json.loads(metadata["preprocess"])
        return cls(
            (int(d["img_scale"][0]), int(d["img_scale"][1])),
            int(d["size_divisor"]),
            (float(d["mean"][0]), float(d["mean"][1]), float(d["mean"][2])),
            (float(d["std"][0]), float(d["std"][1]), float(d["std"][2])),
        )


def rescale_size(height: int, width: int, scale: Sequence[int]) -> tuple[int, int]:
    """``(new_h, new_w)`` of the keep-ratio resize into ``scale = (long, short)`` (either order)."""
    long_side, short_side = max(scale), min(scale)
    factor = min(long_side / max(height, width), short_side / min(height, width))
    return int(height * factor + 0.5), int(width * factor + 0.5)


def _axis_weights(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Taps of a bilinear, non-antialiased resize of one axis: ``(first [out] int64, weights [out, 2]
    int64, precision)``. Weights in float64 (half-pixel centres, normalised per output pixel), then
    fixed point: ``round(w * 2**precision)`` with the largest precision that keeps them below 2**15."""
    scale = in_size / out_size
    first = np.zeros(out_size, np.int64)
    weights = np.zeros((out_size, 2), np.float64)
    for i in range(out_size):
        center = scale * (i + 0.5)
        # support 1 (no antialiasing); int() truncates towards zero, as C's cast
        lo = max(int(center - 1.0 + 0.5), 0)
        taps = min(max(min(int(center + 1.0 + 0.5), in_size) - lo, 0), 2)
        w = [max(0.0, 1.0 - abs(j + lo - center + 0.5)) for j in range(taps)]
        total = sum(w)
        first[i] = lo
        weights[i, :taps] = [v / total for v in w] if total != 0.0 else w
    largest = float(weights.max())
    precision = 0
    while precision < 22 and int(0.5 + largest * (1 << (precision + 1))) < (1 << 15):
        precision += 1
    fixed = np.trunc(weights * (1 << precision) + 0.5).astype(np.int64)  # weights are >= 0
    return first, fixed, precision


def _resize_axis(image: np.ndarray, axis: int, out_size: int) -> np.ndarray:
    in_size = image.shape[axis]
    first, fixed, precision = _axis_weights(in_size, out_size)
    x = np.moveaxis(image, axis, 0).astype(np.int64)
    second = np.minimum(first + 1, in_size - 1)  # its weight is 0 where it would leave the image
    shape = (out_size,) + (1,) * (x.ndim - 1)
    acc = fixed[:, 0].reshape(shape) * x[first] + fixed[:, 1].reshape(shape) * x[second]
    out = np.clip((acc + (1 << (precision - 1))) >> precision, 0, 255).astype(np.uint8)
    return np.moveaxis(out, 0, axis)


def resize_bilinear_uint8(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``uint8 [H, W, C]`` -> ``uint8 [h, w, C]``, ``size = (h, w)``: bilinear, half-pixel centres, no
    antialiasing, exactly as PyTorch's native uint8 kernel (``torch.nn.functional.interpolate`` /
    torchvision ``resize(antialias=False)`` on a uint8 CPU tensor, on x86 with AVX2 or AVX-512 and on ARM):
    the width pass, rounded to uint8, then the height pass, in fixed point (:func:`_axis_weights`).
    Elsewhere torchvision interpolates in float32 and rounds, which differs by 1 on a few pixels."""
    if image.dtype != np.uint8 or image.ndim != 3:
        raise ValueError(
            f"resize_bilinear_uint8 needs a uint8 [H, W, C] array, got {image.dtype} {image.shape}"
        )
    h, w = int(size[0]), int(size[1])
    if h <= 0 or w <= 0:
        raise ValueError(f"resize_bilinear_uint8: bad output size {size}")
    if w != image.shape[1]:
        image = _resize_axis(image, 1, w)
    if h != image.shape[0]:
        image = _resize_axis(image, 0, h)
    return image


def normalize(image: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """``uint8 [h, w, 3]`` RGB -> ``float32 [3, h, w]``:
    ``(x - float32(255 * mean)) / float32(255 * std)``."""
    m = (np.asarray(mean, np.float64) * 255).astype(np.float32).reshape(3, 1, 1)
    s = (np.asarray(std, np.float64) * 255).astype(np.float32).reshape(3, 1, 1)
    x = image.transpose(2, 0, 1).astype(np.float32)
    return (x - m) / s


def pad_to_multiple(x: np.ndarray, divisor: int) -> np.ndarray:
    """``[3, h, w]`` -> ``[3, H, W]``, ``H``/``W`` rounded up to multiples of ``divisor``, zeros at the
    bottom and right."""
    c, h, w = x.shape
    out = np.zeros((c, -(-h // divisor) * divisor, -(-w // divisor) * divisor), dtype=x.dtype)
    out[:, :h, :w] = x
    return out


def preprocess(image: np.ndarray, recipe: Recipe) -> dict[str, np.ndarray]:
    """One ``uint8 [H, W, 3]`` RGB image -> the inputs of the exported graph, as ``predict`` prepares it:
    ``{"images": float32 [1, 3, H_pad, W_pad], "img_shape": int64 [1, 2], "ori_shape": int64 [1, 2]}``.

    Images of equal padded size can be batched by concatenating each input along axis 0."""
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"preprocess needs a uint8 [H, W, 3] RGB array, got {image.dtype} {image.shape}")
    h, w = int(image.shape[0]), int(image.shape[1])
    new_h, new_w = rescale_size(h, w, recipe.img_scale)
    if (new_h, new_w) != (h, w):
        image = resize_bilinear_uint8(image, (new_h, new_w))
    x = pad_to_multiple(normalize(image, recipe.mean, recipe.std), recipe.size_divisor)
    return {
        "images": x[None],
        "img_shape": np.array([[new_h, new_w]], dtype=np.int64),
        "ori_shape": np.array([[h, w]], dtype=np.int64),
    }


def read_rgb(path: str | Path) -> np.ndarray:
    """``uint8 [H, W, 3]`` RGB pixels of an image file as stored (no EXIF rotation, as ``predict``).
    For 8-bit images (JPEG, PNG, palette, grey) this is what ``predict`` reads; 16-bit and float images
    are scaled differently by ``predict`` (:func:`locdistill.data.image_io.to_rgb8`)."""
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"), dtype=np.uint8).copy()


def batch_inputs(inputs: Sequence[Mapping[str, Any]]) -> dict[str, np.ndarray]:
    """Several :func:`preprocess` results of one padded size as one batch."""
    shapes = {tuple(i["images"].shape) for i in inputs}
    if len(shapes) != 1:
        raise ValueError(f"batch_inputs: padded sizes differ {sorted(shapes)}; run them separately")
    return {k: np.concatenate([i[k] for i in inputs]) for k in ("images", "img_shape", "ori_shape")}
