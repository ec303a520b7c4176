"""A deterministic synthetic detection dataset, generated in memory (what ``locdistill demo`` trains on).

Each image is ``image_size`` x ``image_size`` RGB: a textured background (a colour, a linear gradient,
low-frequency colour blotches, distractor lines that are not objects) with 1-8 objects of 5 shape classes
(``rectangle``, ``ellipse``, ``triangle``, ``cross``, ``ring``), rotated, in random colours, sized from
8 px to about half the image (log-uniform), overlapping a little, then pixel noise over everything.
Colour says nothing about the class; shape does. Boxes are tight around each shape's pixels:
``x1 = first column``, ``x2 = last column + 1`` (pixel edges), even where a later shape hides a part.

Everything about image ``i`` comes from ``numpy.random.default_rng([seed, split, i])`` (split 0 for
training, 1 otherwise), so a dataset is the same for a seed on every machine and the training and
validation splits differ even with the same seed. The layouts (shape masks and boxes) are made when the
dataset is built; pixels are rendered when an image is loaded (about 2 ms for 320 x 320).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

from locdistill.data.dataset import DatasetOptions, DetectionDataset
from locdistill.data.records import ImageRecord

if TYPE_CHECKING:
    from typing_extensions import Unpack

SHAPE_CLASSES: tuple[str, ...] = ("rectangle", "ellipse", "triangle", "cross", "ring")

PALETTE = np.array([
    (230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48), (145, 30, 180),
    (70, 240, 240), (240, 50, 230), (250, 250, 250), (20, 20, 20), (128, 128, 0), (170, 110, 40),
], dtype=np.float64)  # fmt: skip


@dataclass
class SyntheticShape:
    """One object: ``mask`` (bool ``[h, w]``, tight: its first/last rows and columns hold a pixel)
    placed with its top-left pixel at ``(x0, y0)``, painted ``color`` (RGB 0-255)."""

    label: int
    x0: int
    y0: int
    mask: np.ndarray
    color: tuple[float, float, float]

    @property
    def box(self) -> tuple[float, float, float, float]:
        h, w = self.mask.shape
        return float(self.x0), float(self.y0), float(self.x0 + w), float(self.y0 + h)


@dataclass
class SyntheticScene:
    """The layout of one image: background colour, shapes (in paint order), seed of texture and noise."""

    size: int
    background: tuple[float, float, float]
    shapes: list[SyntheticShape]
    render_seed: list[int]


def shape_mask(kind: int, size: float, rng: np.random.Generator) -> np.ndarray:
    """Tight bool mask of one shape of class ``kind`` whose largest extent is about ``size`` pixels."""
    side = int(math.ceil(size * 1.5)) + 2
    c = (np.arange(side, dtype=np.float64) + 0.5) - side / 2
    v, u = np.meshgrid(c, c, indexing="ij")  # v: rows (y), u: columns (x)
    theta = rng.uniform(0, 2 * math.pi)
    cos, sin = math.cos(theta), math.sin(theta)
    ur, vr = cos * u + sin * v, -sin * u + cos * v
    r = size / 2
    name = SHAPE_CLASSES[kind]
    if name == "rectangle":
        aspect = rng.uniform(0.35, 1.0)
        mask = (np.abs(ur) <= r) & (np.abs(vr) <= r * aspect)
    elif name == "ellipse":
        aspect = rng.uniform(0.4, 1.0)
        mask = (ur / r) ** 2 + (vr / (r * aspect)) ** 2 <= 1.0
    elif name == "triangle":
        angles = np.array([90.0, 210.0, 330.0]) + rng.uniform(-20, 20, size=3)
        pts = np.stack([np.cos(np.radians(angles)), np.sin(np.radians(angles))], axis=1) * r
        mask = np.ones_like(u, dtype=bool)
        for a in range(3):
            (x1, y1), (x2, y2) = pts[a], pts[(a + 1) % 3]
            mask &= (x2 - x1) * (vr - y1) - (y2 - y1) * (ur - x1) >= 0
    elif name == "cross":
        t = r * rng.uniform(0.25, 0.45)
        mask = ((np.abs(ur) <= r) & (np.abs(vr) <= t)) | ((np.abs(vr) <= r) & (np.abs(ur) <= t))
    else:  # ring
        inner = rng.uniform(0.45, 0.7)
        d2 = u**2 + v**2
        mask = (d2 <= r * r) & (d2 >= (r * inner) ** 2)
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return np.zeros((0, 0), dtype=bool)
    return mask[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]


def _iou(a: Sequence[float], b: Sequence[float]) -> tuple[float, float]:
    """IoU of boxes a and b, and the fraction of b covered by a."""
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    area_a = (a[2] - a[0]) * (a[3] - a[1])
    area_b = (b[2] - b[0]) * (b[3] - b[1])
    return inter / (area_a + area_b - inter), inter / area_b


def make_scene(
    seed: int,
    split: int,
    index: int,
    size: int,
    max_objects: int = 8,
    min_object: float = 8.0,
    max_object_frac: float = 0.55,
) -> SyntheticScene:
    """The deterministic layout of image ``index``: 1..``max_objects`` shapes of ``min_object`` px to
    ``max_object_frac * size`` px, fully inside the image, box IoU with earlier ones < 0.3 and none
    covering more than half of an earlier one's box."""
    rng = np.random.default_rng([seed, split, index])
    background = rng.uniform(0, 255, size=3)
    shapes: list[SyntheticShape] = []
    n = int(rng.integers(1, max_objects + 1))
    for _ in range(n):
        kind = int(rng.integers(len(SHAPE_CLASSES)))
        extent = math.exp(rng.uniform(math.log(min_object), math.log(max_object_frac * size)))
        mask = shape_mask(kind, extent, rng)
        h, w = mask.shape
        if h == 0 or w == 0 or h > size or w > size:
            continue
        for _attempt in range(20):
            x0, y0 = int(rng.integers(0, size - w + 1)), int(rng.integers(0, size - h + 1))
            box = (x0, y0, x0 + w, y0 + h)
            overlaps = [_iou(box, s.box) for s in shapes]
            if all(iou < 0.3 and covered < 0.5 for iou, covered in overlaps):
                break
        else:
            continue
        for _attempt in range(10):  # a colour that stands out from the background
            color = PALETTE[int(rng.integers(len(PALETTE)))] + rng.uniform(-25, 25, size=3)
            if np.abs(color - background).sum() > 150:
                break
        shapes.append(SyntheticShape(kind, x0, y0, mask, tuple(float(c) for c in np.clip(color, 0, 255))))  # type: ignore[arg-type]
    if not shapes:  # always at least one object
        mask = shape_mask(0, size / 4, rng)
        shapes.append(
            SyntheticShape(
                0,
                (size - mask.shape[1]) // 2,
                (size - mask.shape[0]) // 2,
                mask,
                (255.0 - background[0], 255.0 - background[1], 255.0 - background[2]),
            )
        )
    bg = (float(background[0]), float(background[1]), float(background[2]))
    return SyntheticScene(size, bg, shapes, [seed, split, index, int(rng.integers(2**31))])


def _linear_weights(n: int, size: int) -> np.ndarray:
    """``[size, n]`` weights of linear interpolation from ``n`` to ``size`` samples (half-pixel centres)."""
    pos = np.clip((np.arange(size, dtype=np.float32) + 0.5) * n / size - 0.5, 0, n - 1)
    lo = np.minimum(np.floor(pos).astype(np.int64), n - 2)
    frac = pos - lo
    w = np.zeros((size, n), dtype=np.float32)
    w[np.arange(size), lo] = 1 - frac
    w[np.arange(size), lo + 1] = frac
    return w


def render_scene(scene: SyntheticScene) -> np.ndarray:
    """``uint8 [H, W, 3]`` pixels of ``scene``."""
    rng = np.random.default_rng(scene.render_seed)
    s = scene.size
    f32 = np.float32
    # background: colour + linear gradient + low-frequency colour blotches
    base = np.asarray(scene.background, dtype=f32)
    ramp = np.linspace(0, 1, s, dtype=f32)
    direction = rng.uniform(-60, 60, size=(2, 3)).astype(f32)
    grid = rng.normal(0, 30, size=(5, 5, 3)).astype(f32)
    weights = _linear_weights(5, s)  # [s, 5]: bilinear upsampling as two small matrix products
    rows = (weights @ grid.reshape(5, 15)).reshape(s, 5, 3)  # [y, j, c]
    img = np.ascontiguousarray((rows.transpose(0, 2, 1) @ weights.T).transpose(0, 2, 1)) + base  # [y, x, c]
    img += ramp[None, :, None] * direction[0] + ramp[:, None, None] * direction[1]
    # distractor lines (not objects), drawn inside their own bounding region only
    for _ in range(int(rng.integers(0, 4))):
        p, q = rng.uniform(0, s - 1, size=2), rng.uniform(0, s - 1, size=2)
        width = rng.uniform(0.5, 2.0)
        color = rng.uniform(0, 255, size=3).astype(f32)
        x0, x1 = int(max(0, min(p[0], q[0]) - 3)), int(min(s, max(p[0], q[0]) + 4))
        y0, y1 = int(max(0, min(p[1], q[1]) - 3)), int(min(s, max(p[1], q[1]) + 4))
        yy, xx = np.mgrid[y0:y1, x0:x1].astype(f32)
        d = q - p
        t = np.clip(((xx - p[0]) * d[0] + (yy - p[1]) * d[1]) / max(float(d @ d), 1.0), 0, 1)
        near = np.hypot(xx - (p[0] + t * d[0]), yy - (p[1] + t * d[1])) <= width
        img[y0:y1, x0:x1][near] = color
    # objects, shaded by a gentle gradient across each shape
    for shape in scene.shapes:
        h, w = shape.mask.shape
        region = img[shape.y0 : shape.y0 + h, shape.x0 : shape.x0 + w]
        shade = (
            1.0
            + rng.uniform(-0.15, 0.15) * np.linspace(-1, 1, w, dtype=f32)[None, :]
            + rng.uniform(-0.15, 0.15) * np.linspace(-1, 1, h, dtype=f32)[:, None]
        )
        region[shape.mask] = (np.asarray(shape.color, dtype=f32) * shade[..., None])[shape.mask]
    noise = rng.standard_normal(size=img.shape, dtype=f32)
    noise *= f32(rng.uniform(4, 14))
    img += noise
    img += f32(0.5)
    np.clip(img, 0, 255, out=img)
    return img.astype(np.uint8)


class SyntheticDataset(DetectionDataset):
    """``num_images`` generated images of ``image_size`` x ``image_size`` pixels.

    Args:
        num_images: how many images.
        image_size: side of the square images, pixels.
        seed: generator seed.
        train: which split (the same seed gives different training and validation images).
        transform, filter_empty_gt, min_size: see :class:`DetectionDataset` (every image has objects).
        root: only used in file names (nothing is written).
    """

    images_from_files = False

    def __init__(
        self,
        num_images: int,
        image_size: int = 320,
        seed: int = 0,
        *,
        train: bool = True,
        root: str | Path = "synthetic",
        **options: Unpack[DatasetOptions],
    ) -> None:
        if num_images <= 0:
            raise ValueError(f"synthetic dataset: num_images must be positive, got {num_images}")
        if image_size < 32:
            raise ValueError(f"synthetic dataset: image_size must be at least 32, got {image_size}")
        split = 0 if train else 1
        split_name = "train" if train else "val"
        self.scenes = [make_scene(seed, split, i, image_size) for i in range(num_images)]
        records = []
        for i, scene in enumerate(self.scenes):
            file_name = f"{split_name}_{i:06d}.png"
            records.append(
                ImageRecord(
                    image_id=i,
                    file_name=file_name,
                    path=Path(root) / file_name,
                    height=image_size,
                    width=image_size,
                    boxes=np.array([s.box for s in scene.shapes], dtype=np.float32).reshape(-1, 4),
                    labels=np.array([s.label for s in scene.shapes], dtype=np.int64),
                    ignore=np.zeros(len(scene.shapes), dtype=bool),
                    difficult=np.zeros(len(scene.shapes), dtype=bool),
                )
            )
        super().__init__(
            records,
            SHAPE_CLASSES,
            source=f"synthetic(seed={seed}, split={split_name})",
            **options,
        )
        self._scene_of = {r.image_id: i for i, r in enumerate(self.records)}

    def scene(self, index: int) -> SyntheticScene:
        """The layout of image ``index`` (shapes with their masks)."""
        return self.scenes[self._scene_of[self.records[index].image_id]]

    def load_image(self, index: int) -> Tensor:
        return torch.from_numpy(render_scene(self.scene(index))).permute(2, 0, 1).contiguous()
