"""Image + box transforms, mmdetection 2.x semantics, on ``torchvision.transforms.v2.functional``.

Every transform is a callable ``(image [3,H,W], targets, meta) -> (image, targets, meta)``. Boxes are
plain ``[n, 4]`` xyxy tensors changed with explicit arithmetic (so each rule below is visible and exact);
images go through ``torchvision.transforms.v2.functional``.

* :class:`Resize` (mmcv ``imrescale`` + mmdet ``Resize(keep_ratio=True)``): for a scale ``(long, short)``,
  ``factor = min(long / max(h, w), short / min(h, w))``, ``new_w = int(w * factor + 0.5)``,
  ``new_h = int(h * factor + 0.5)``; the recorded ``scale_factor`` is ``(new_w / w, new_h / h)`` and boxes
  are multiplied by it (``box_resized == box * scale_factor`` in float32) and clipped to the new image.
  Multi-scale (mmdet ``multiscale_mode='range'``): the long and short sides are drawn uniformly as
  integers in their ranges (both ends included), once per image. The image is resized as uint8 with
  bilinear interpolation, half-pixel centres and no antialiasing, rounded back to uint8: the same
  kernel as OpenCV's ``INTER_LINEAR`` that mmdetection uses (values may differ by 1 from OpenCV's
  fixed-point rounding: about a fifth of them on coco128, ``benchmarks/bench_loader.py``). Decoded
  images arrive channels-last in memory, which torch's uint8 AVX2 kernel reads without repacking (the
  same pixels as from ``[3, H, W]`` memory, 3x faster).
* :class:`RandomHorizontalFlip`: ``x1' = w - x2``, ``x2' = w - x1`` (mmdet ``bbox_flip``).
* :class:`Normalize`: uint8 -> float32, ``(x - 255 * mean) / (255 * std)`` with mean/std in ``[0, 1]``
  RGB units (the backbone's), equal to mmdet's ``(x - mean) / std`` with 0-255 values. A training run
  leaves it out (``build_transforms(normalize=False)``): its batches stay uint8 and
  :meth:`locdistill.structures.Batch.to` normalises them on the device, to the same values.
* Padding to the size divisor happens in :func:`locdistill.data.collate.collate`.

Randomness comes from torch's global generator (seeded per DataLoader worker by torch), so a run with
``workers=0`` is reproduced by restoring ``torch.get_rng_state()``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace

import torch
from torch import Tensor
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from locdistill.data.dataset import Sample, Transform
from locdistill.structures import ImageMeta, Targets

logger = logging.getLogger(__name__)


def rescale_size(height: int, width: int, scale: Sequence[int]) -> tuple[int, int]:
    """``(new_h, new_w)`` of a keep-ratio resize into ``scale = (long, short)`` (mmcv ``rescale_size``)."""
    long_side, short_side = max(scale), min(scale)
    factor = min(long_side / max(height, width), short_side / min(height, width))
    return int(height * factor + 0.5), int(width * factor + 0.5)


def clip_and_filter(boxes: Tensor, height: int, width: int) -> tuple[Tensor, Tensor]:
    """Clip ``[n, 4]`` xyxy boxes to a ``height`` x ``width`` image; ``keep`` marks non-degenerate ones."""
    boxes = (
        torch.stack(
            [
                boxes[:, 0].clamp(0, width),
                boxes[:, 1].clamp(0, height),
                boxes[:, 2].clamp(0, width),
                boxes[:, 3].clamp(0, height),
            ],
            dim=1,
        )
        if boxes.numel()
        else boxes.reshape(0, 4)
    )
    keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    return boxes, keep


class Compose:
    """Apply transforms in order."""

    def __init__(self, transforms: Sequence[Transform]) -> None:
        self.transforms = list(transforms)

    def __call__(self, image: Tensor, targets: Targets, meta: ImageMeta) -> Sample:
        for t in self.transforms:
            image, targets, meta = t(image, targets, meta)
        return image, targets, meta

    def __repr__(self) -> str:
        return "Compose(" + ", ".join(repr(t) for t in self.transforms) + ")"


class Resize:
    """Keep-ratio resize to ``scale = (long, short)``, or to a scale drawn per image from
    ``scale_range = ((long_min, short_min), (long_max, short_max))`` (mmdet 'range' mode).

    Boxes that become degenerate after resizing and clipping are dropped; :attr:`num_dropped` counts
    them and a warning names the image file.
    """

    def __init__(
        self,
        scale: Sequence[int] | None = None,
        scale_range: Sequence[Sequence[int]] | None = None,
    ) -> None:
        if (scale is None) == (scale_range is None):
            raise ValueError(
                "Resize needs exactly one of scale=(long, short) or scale_range=((l, s), (l, s))"
            )
        if scale is not None and (len(scale) != 2 or min(scale) <= 0):
            raise ValueError(f"Resize scale must be two positive sides (long, short), got {list(scale)}")
        if scale_range is not None and (
            len(scale_range) != 2 or any(len(s) != 2 or min(s) <= 0 for s in scale_range)
        ):
            raise ValueError(f"Resize scale_range must be [[long, short], [long, short]], got {scale_range}")
        self.scale = tuple(scale) if scale is not None else None
        self.scale_range = [tuple(s) for s in scale_range] if scale_range is not None else None
        self.num_dropped = 0

    def sample_scale(self) -> tuple[int, int]:
        """``(long, short)`` for the next image."""
        if self.scale is not None:
            return max(self.scale), min(self.scale)
        assert self.scale_range is not None
        longs = [max(s) for s in self.scale_range]
        shorts = [min(s) for s in self.scale_range]
        long_side = int(torch.randint(min(longs), max(longs) + 1, ()).item())
        short_side = int(torch.randint(min(shorts), max(shorts) + 1, ()).item())
        return long_side, short_side

    def __call__(self, image: Tensor, targets: Targets, meta: ImageMeta) -> Sample:
        height, width = image.shape[-2:]
        new_h, new_w = rescale_size(height, width, self.sample_scale())
        if (new_h, new_w) != (height, width):
            image = F.resize(
                image, [new_h, new_w], interpolation=v2.InterpolationMode.BILINEAR, antialias=False
            )
        w_scale, h_scale = new_w / width, new_h / height
        factor = torch.tensor([w_scale, h_scale, w_scale, h_scale], dtype=torch.float32)
        boxes, keep = clip_and_filter(targets.boxes * factor, new_h, new_w)
        ignore, keep_ignore = clip_and_filter(targets.ignore_boxes * factor, new_h, new_w)
        dropped = int((~keep).sum())
        if dropped:
            self.num_dropped += dropped
            bad = (~keep).nonzero().flatten().tolist()
            logger.warning(
                "%s: %d box(es) (#%s) degenerate after resizing to %dx%d dropped",
                meta.file_name,
                dropped,
                ", #".join(map(str, bad)),
                new_w,
                new_h,
            )
        targets = Targets(boxes=boxes[keep], labels=targets.labels[keep], ignore_boxes=ignore[keep_ignore])
        meta = replace(
            meta, img_shape=(new_h, new_w), pad_shape=(new_h, new_w), scale_factor=(w_scale, h_scale)
        )
        return image, targets, meta

    def __repr__(self) -> str:
        return f"Resize(scale={self.scale}, scale_range={self.scale_range})"


def flip_boxes(boxes: Tensor, width: int) -> Tensor:
    """Horizontally flip ``[n, 4]`` xyxy boxes in an image ``width`` pixels wide: ``x1' = w - x2``."""
    if boxes.numel() == 0:
        return boxes.reshape(0, 4)
    return torch.stack([width - boxes[:, 2], boxes[:, 1], width - boxes[:, 0], boxes[:, 3]], dim=1)


class RandomHorizontalFlip:
    """Flip image and boxes with probability ``prob``; ``meta.flipped`` records it."""

    def __init__(self, prob: float = 0.5) -> None:
        if not 0.0 <= prob <= 1.0:
            raise ValueError(f"flip probability must be in [0, 1], got {prob}")
        self.prob = prob

    def __call__(self, image: Tensor, targets: Targets, meta: ImageMeta) -> Sample:
        if self.prob <= 0.0 or (self.prob < 1.0 and float(torch.rand(())) >= self.prob):
            return image, targets, meta
        return hflip(image, targets, meta)

    def __repr__(self) -> str:
        return f"RandomHorizontalFlip(prob={self.prob})"


def hflip(image: Tensor, targets: Targets, meta: ImageMeta) -> Sample:
    """Deterministic horizontal flip of an image and its targets."""
    width = image.shape[-1]
    targets = Targets(
        boxes=flip_boxes(targets.boxes, width),
        labels=targets.labels,
        ignore_boxes=flip_boxes(targets.ignore_boxes, width),
    )
    return F.horizontal_flip(image), targets, replace(meta, flipped=not meta.flipped)


class Normalize:
    """uint8 RGB -> float32 ``(x / 255 - mean) / std`` per channel; ``mean``/``std`` in ``[0, 1]`` units."""

    def __init__(self, mean: Sequence[float] | Tensor, std: Sequence[float] | Tensor) -> None:
        mean_t = torch.as_tensor(mean, dtype=torch.float64).flatten()
        std_t = torch.as_tensor(std, dtype=torch.float64).flatten()
        if mean_t.numel() != 3 or std_t.numel() != 3 or bool((std_t <= 0).any()):
            raise ValueError(
                f"Normalize needs 3 means and 3 positive stds, got {mean_t.tolist()}, {std_t.tolist()}"
            )
        self.mean = mean_t.tolist()
        self.std = std_t.tolist()
        self._mean255 = (mean_t * 255).to(torch.float32).view(3, 1, 1)
        self._std255 = (std_t * 255).to(torch.float32).view(3, 1, 1)

    @property
    def pixel_norm(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """``(mean, std)`` in 0-255 units, the float32 values used here (for a device-side normalisation,
        :meth:`locdistill.structures.Batch.to`)."""
        return tuple(self._mean255.flatten().tolist()), tuple(self._std255.flatten().tolist())

    def __call__(self, image: Tensor, targets: Targets, meta: ImageMeta) -> Sample:
        # One float32 [3, h, w] buffer, two passes: uint8 - mean promotes to float32 exactly, so this is
        # bit for bit ``(image.float() - mean) / std`` without the two temporaries (any input layout).
        out = torch.empty(image.shape, dtype=torch.float32, device=image.device)
        torch.sub(image, self._mean255.to(image.device), out=out)
        return out.div_(self._std255.to(image.device)), targets, meta

    def __repr__(self) -> str:
        return f"Normalize(mean={self.mean}, std={self.std})"


def build_transforms(
    train: bool,
    img_scale: Sequence[int],
    mean: Sequence[float] | Tensor,
    std: Sequence[float] | Tensor,
    multiscale: Sequence[Sequence[int]] | None = None,
    flip_prob: float = 0.5,
    normalize: bool = True,
) -> Compose:
    """The mmdetection pipeline: Resize (multi-scale range in training when given) -> flip (training)
    -> Normalize (unless ``normalize`` is false: uint8 out, normalised later on the device). Padding is
    done by the collate function."""
    steps: list[Transform] = []
    if train and multiscale:
        steps.append(Resize(scale_range=multiscale))
    else:
        steps.append(Resize(scale=img_scale))
    if train and flip_prob > 0:
        steps.append(RandomHorizontalFlip(flip_prob))
    if normalize:
        steps.append(Normalize(mean, std))
    return Compose(steps)
