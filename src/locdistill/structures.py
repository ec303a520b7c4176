"""Plain data structures passed between datasets, models, losses and evaluators.

Conventions used everywhere in locdistill:

* Boxes are ``(x1, y1, x2, y2)`` float32 in pixels. Nothing adds or subtracts 1 from a width.
* Shapes are ``(h, w)``; a scale factor is ``(w_scale, h_scale)`` (mmdetection's order) and maps
  original-image pixels to network-input pixels: ``x_input = x_original * w_scale``.
* Labels are int64 in ``[0, num_classes)``; there is no background class in the labels.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import torch
from torch import Tensor


def _empty_boxes() -> Tensor:
    return torch.zeros((0, 4), dtype=torch.float32)


def _empty_labels() -> Tensor:
    return torch.zeros((0,), dtype=torch.int64)


@dataclass
class ImageMeta:
    """Geometry of one image as it went through the pipeline.

    Attributes:
        image_id: dataset-wide id (the COCO image id for COCO data, the index otherwise).
        file_name: path of the image file (for messages and drawing).
        ori_shape: ``(h, w)`` of the original image, pixels.
        img_shape: ``(h, w)`` after resizing, before padding, pixels.
        pad_shape: ``img_shape`` rounded up to the size divisor (32). The batch tensor may be larger
            still; anchors beyond this image's own ``pad_shape`` are invalid for it.
        scale_factor: ``(w_scale, h_scale)``: input pixels per original pixel.
        flipped: whether a horizontal flip was applied (boxes are already flipped).
    """

    image_id: int
    file_name: str
    ori_shape: tuple[int, int]
    img_shape: tuple[int, int]
    pad_shape: tuple[int, int]
    scale_factor: tuple[float, float] = (1.0, 1.0)
    flipped: bool = False


@dataclass
class Targets:
    """Ground truth of one image in network-input pixels.

    Attributes:
        boxes: ``[n, 4]`` float32 xyxy.
        labels: ``[n]`` int64 in ``[0, num_classes)``.
        ignore_boxes: ``[m, 4]`` float32 regions that are neither positive nor negative
            (COCO ``iscrowd``); the GFL configs do not use them in assignment (as mmdetection).
    """

    boxes: Tensor = field(default_factory=_empty_boxes)
    labels: Tensor = field(default_factory=_empty_labels)
    ignore_boxes: Tensor = field(default_factory=_empty_boxes)

    def to(self, device: torch.device | str) -> Targets:
        return replace(
            self,
            boxes=self.boxes.to(device),
            labels=self.labels.to(device),
            ignore_boxes=self.ignore_boxes.to(device),
        )

    def __len__(self) -> int:
        return int(self.boxes.shape[0])


@dataclass
class Detections:
    """Detections of one image.

    Attributes:
        boxes: ``[k, 4]`` float32 xyxy pixels (original-image pixels when rescaled).
        scores: ``[k]`` float32 in ``[0, 1]``, descending.
        labels: ``[k]`` int64.
    """

    boxes: Tensor
    scores: Tensor
    labels: Tensor

    def to(self, device: torch.device | str) -> Detections:
        return Detections(self.boxes.to(device), self.scores.to(device), self.labels.to(device))

    def __len__(self) -> int:
        return int(self.boxes.shape[0])


@dataclass
class Batch:
    """A collated mini-batch.

    Attributes:
        images: ``[B, 3, H, W]`` float32, normalised, zero-padded to a common multiple of 32; or, when
            ``pixel_norm`` is set (a training loader's batch), the uint8 RGB pixels, padded, whose
            normalisation :meth:`to` does on the device (4x fewer bytes through the loader's shared
            memory, pinned memory and the host-to-device copy; the same float32 values).
        targets: one :class:`Targets` per image.
        metas: one :class:`ImageMeta` per image.
        pixel_norm: ``(mean, std)`` per RGB channel in 0-255 units (float32 values) for uint8
            ``images``; ``None`` when ``images`` are normalised already.
    """

    images: Tensor
    targets: list[Targets]
    metas: list[ImageMeta]
    pixel_norm: tuple[tuple[float, ...], tuple[float, ...]] | None = None

    def to(self, device: torch.device | str, non_blocking: bool = False) -> Batch:
        """The batch on ``device``, its images normalised there if they were not yet (see ``images``)."""
        images = self.images.to(device, non_blocking=non_blocking)
        if self.pixel_norm is not None:
            images = normalize_padded(images, self.metas, *self.pixel_norm)
        return Batch(images=images, targets=[t.to(device) for t in self.targets], metas=self.metas)

    def pin_memory(self) -> Batch:
        """The batch with its images in page-locked memory: what ``DataLoader(pin_memory=True)`` calls
        (it pins only tensors, containers and objects with this method), so that ``to(device,
        non_blocking=True)`` copies the images asynchronously. Targets stay as they are (a few boxes)."""
        return replace(self, images=self.images.pin_memory())

    def __len__(self) -> int:
        return int(self.images.shape[0])


def normalize_padded(
    images: Tensor, metas: list[ImageMeta], mean: Sequence[float], std: Sequence[float]
) -> Tensor:
    """float32 ``(images - mean) / std`` of uint8 ``[B, 3, H, W]`` on their device, each image's padding
    (beyond its ``meta.img_shape``) zero: bit for bit what ``Normalize`` and ``collate`` give on the
    CPU (one subtraction and one division, each correctly rounded in float32 on any device)."""
    device = images.device
    out = torch.empty(images.shape, dtype=torch.float32, device=device)
    torch.sub(images, torch.tensor(mean, dtype=torch.float32, device=device).view(-1, 1, 1), out=out)
    out.div_(torch.tensor(std, dtype=torch.float32, device=device).view(-1, 1, 1))
    for image, meta in zip(out, metas):
        h, w = meta.img_shape
        image[:, h:, :].zero_()
        image[:, :h, w:].zero_()
    return out


def targets_look_valid(targets: list[Targets], num_classes: int | None = None) -> bool:
    """Whether every box of every image is finite with positive size and every label in range: the
    checks of :func:`check_targets` for a whole batch with one host sync (call ``check_targets`` per
    image for the message when this is ``False``)."""
    bad = []
    for t in targets:
        boxes, labels = t.boxes, t.labels
        if boxes.ndim != 2 or boxes.shape[-1] != 4 or labels.shape != boxes.shape[:1]:
            return False
        if boxes.numel():
            finite = torch.isfinite(boxes).all(dim=1)
            positive = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
            bad.append(~(finite & positive))
            if num_classes is not None:
                bad.append((labels < 0) | (labels >= num_classes))
    return not bad or not bool(torch.cat([b.to(bad[0].device) for b in bad]).any())


def check_targets(targets: Targets, meta: ImageMeta | None = None, num_classes: int | None = None) -> None:
    """Raise ``ValueError`` naming the offending box when ``targets`` are malformed.

    Checks shapes, finiteness, positive width/height and the label range.
    """
    where = f" in image {meta.file_name!r}" if meta is not None else ""
    boxes, labels = targets.boxes, targets.labels
    if boxes.ndim != 2 or boxes.shape[-1] != 4:
        raise ValueError(f"target boxes{where} must have shape [n, 4], got {tuple(boxes.shape)}")
    if labels.shape != boxes.shape[:1]:
        raise ValueError(
            f"target labels{where} must have shape [{boxes.shape[0]}], got {tuple(labels.shape)}"
        )
    if boxes.numel():
        finite = torch.isfinite(boxes).all(dim=1)
        positive = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        bad = (~(finite & positive)).nonzero().flatten()
        if bad.numel():
            i = int(bad[0])
            raise ValueError(
                f"invalid box #{i}{where}: {boxes[i].tolist()} (boxes must be finite xyxy with x2 > x1 and "
                f"y2 > y1); {bad.numel()} invalid box(es) in total"
            )
    if num_classes is not None and labels.numel():
        bad = ((labels < 0) | (labels >= num_classes)).nonzero().flatten()
        if bad.numel():
            i = int(bad[0])
            raise ValueError(f"label {int(labels[i])} of box #{i}{where} is outside [0, {num_classes})")
