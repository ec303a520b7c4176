"""Write the `locdistill demo` synthetic set out as COCO json + lossless PNG images.

    python experiments/e2e_mmdet/write_demo_coco.py OUT [--seed 0] [--num-train 400] [--num-val 100] \
        [--size 192]

OUT receives ``train/train_000000.png ...``, ``val/val_000000.png ...`` and
``annotations/instances_{train,val}.json``. The images and boxes are exactly those of
:class:`locdistill.data.synthetic.SyntheticDataset` with the demo's settings (configs/demo/demo_base.yaml:
400 training and 100 validation images of 192 px, data seed 0): the pixels are the uint8 array the demo
renders in memory, PNG keeps them bit for bit. Boxes are written as COCO ``[x, y, w, h]`` with
``x2 = x + w`` (no +1), which is what both locdistill's and mmdetection's COCO readers undo.
Category ids are 1..5 in the order of ``SHAPE_CLASSES`` (labels 0..4 on both sides).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from PIL import Image

from locdistill.data.synthetic import SHAPE_CLASSES, SyntheticDataset, render_scene


def coco_dict(dataset: SyntheticDataset, folder: str) -> dict[str, Any]:
    """The COCO json content of ``dataset`` with images under ``folder/``."""
    images, annotations = [], []
    for record in dataset.records:
        images.append(
            {
                "id": int(record.image_id) + 1,
                "file_name": f"{folder}/{record.file_name}",
                "height": int(record.height),
                "width": int(record.width),
            }
        )
        for box, label in zip(record.boxes.tolist(), record.labels.tolist()):
            x1, y1, x2, y2 = box
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": int(record.image_id) + 1,
                    "category_id": int(label) + 1,
                    "bbox": [x1, y1, x2 - x1, y2 - y1],
                    "area": (x2 - x1) * (y2 - y1),
                    "iscrowd": 0,
                }
            )
    categories = [{"id": i + 1, "name": name} for i, name in enumerate(SHAPE_CLASSES)]
    return {"images": images, "annotations": annotations, "categories": categories}


def write_split(out: Path, dataset: SyntheticDataset, split: str) -> Path:
    """PNG images of ``dataset`` under ``out/split`` and its json under ``out/annotations``."""
    (out / split).mkdir(parents=True, exist_ok=True)
    (out / "annotations").mkdir(parents=True, exist_ok=True)
    for index, record in enumerate(dataset.records):
        path = out / split / record.file_name
        Image.fromarray(render_scene(dataset.scene(index))).save(path, format="PNG", compress_level=1)
    ann = out / "annotations" / f"instances_{split}.json"
    ann.write_text(json.dumps(coco_dict(dataset, split)))
    return ann


def write_demo_coco(
    out: Path, seed: int = 0, num_train: int = 400, num_val: int = 100, size: int = 192
) -> None:
    """Both splits of the demo's synthetic set (same generator arguments as ``locdistill demo``)."""
    write_split(out, SyntheticDataset(num_train, size, seed, train=True), "train")
    write_split(out, SyntheticDataset(num_val, size, seed, train=False), "val")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out", type=Path)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--num-train", type=int, default=400)
    p.add_argument("--num-val", type=int, default=100)
    p.add_argument("--size", type=int, default=192)
    a = p.parse_args()
    write_demo_coco(a.out, a.seed, a.num_train, a.num_val, a.size)
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
