"""Shared helpers of the data tests: small image files and annotation folders written on the fly."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from locdistill.structures import ImageMeta, Targets

BCCD_CLASSES = ["RBC", "WBC", "Platelets"]


MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


def make_sample(h: int, w: int, boxes: list[list[float]]) -> tuple[torch.Tensor, Targets, ImageMeta]:
    g = torch.Generator().manual_seed(h * 1000 + w)
    image = torch.randint(0, 256, (3, h, w), dtype=torch.uint8, generator=g)
    t = torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)
    targets = Targets(boxes=t, labels=torch.arange(len(t)), ignore_boxes=t[:1].clone())
    return image, targets, ImageMeta(0, "x.jpg", (h, w), (h, w), (h, w))


def write_jpeg(path: Path, h: int = 48, w: int = 64, value: int = 120) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((h, w, 3), value, dtype=np.uint8)).save(path, quality=90)


def coco_dir(tmp_path: Path, n: int = 4) -> tuple[Path, Path]:
    img_dir = tmp_path / "images"
    images, anns = [], []
    for i in range(n):
        write_jpeg(img_dir / f"{i}.jpg", value=40 * i)
        images.append({"id": i + 1, "file_name": f"{i}.jpg", "height": 48, "width": 64})
        anns.append(
            {
                "id": 10 + i,
                "image_id": i + 1,
                "category_id": 3,
                "bbox": [5, 6, 20, 10],
                "area": 200,
                "iscrowd": 0,
            }
        )
    ann_file = tmp_path / "annotations.json"
    ann_file.write_text(
        json.dumps(
            {
                "images": images,
                "annotations": anns,
                "categories": [{"id": 3, "name": "c"}, {"id": 1, "name": "a"}],
            }
        )
    )
    return ann_file, img_dir


def voc_dir(
    root: Path, items: list[tuple[str, list[tuple[str, tuple[int, int, int, int]]]]], difficult: bool = False
) -> Path:
    (root / "ImageSets/Main").mkdir(parents=True)
    (root / "Annotations").mkdir()
    for img_id, objects in items:
        write_jpeg(root / "JPEGImages" / f"{img_id}.jpg")
        objs = "".join(
            f"<object><name>{name}</name><difficult>{int(difficult)}</difficult><bndbox><xmin>{b[0]}</xmin>"
            f"<ymin>{b[1]}</ymin><xmax>{b[2]}</xmax><ymax>{b[3]}</ymax></bndbox></object>"
            for name, b in objects
        )
        (root / "Annotations" / f"{img_id}.xml").write_text(
            f"<annotation><size><width>64</width><height>48</height><depth>3</depth></size>{objs}</annotation>"
        )
    (root / "ImageSets/Main/train.txt").write_text("".join(f"{i}\n" for i, _ in items))
    return root
