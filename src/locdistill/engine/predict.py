"""``locdistill predict``: run a detector on image files, draw the boxes, write ``detections.json``.

Images go through exactly the test pipeline of ``locdistill test`` (:mod:`locdistill.data`): keep-ratio
resize into ``data.img_scale``, normalisation with the model's mean/std (or ``data.mean/std``), zero
padding to ``data.size_divisor``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path

import torch
from PIL import Image
from torch import nn
from torchvision.utils import draw_bounding_boxes

from locdistill.config import Config
from locdistill.data import build_transforms, collate, read_image, resolve_mean_std
from locdistill.models.from_checkpoint import class_names_for
from locdistill.structures import Batch, Detections, ImageMeta, Targets

logger = logging.getLogger(__name__)


def prepare_image(
    path: Path, cfg: Config, mean: Sequence[float], std: Sequence[float], image_id: int = 0
) -> tuple[torch.Tensor, Batch]:
    """``(uint8 image [3, H, W], one-image Batch)`` of an image file through the test pipeline."""
    image = read_image(path)
    return image, prepare_tensor(image, cfg, mean, std, image_id, str(path))


def prepare_tensor(
    image: torch.Tensor,
    cfg: Config,
    mean: Sequence[float],
    std: Sequence[float],
    image_id: int = 0,
    file_name: str = "",
) -> Batch:
    """A one-image Batch of a ``uint8 [3, H, W]`` RGB image through the test pipeline (resize into
    ``data.img_scale``, normalise, pad to ``data.size_divisor``); its meta maps back to ``image``."""
    m, s = resolve_mean_std(cfg.data, mean, std)
    transform = build_transforms(train=False, img_scale=cfg.data.img_scale, mean=m, std=s)
    shape = (int(image.shape[1]), int(image.shape[2]))
    meta = ImageMeta(
        image_id=image_id, file_name=file_name, ori_shape=shape, img_shape=shape, pad_shape=shape
    )
    sample = transform(image, Targets(), meta)
    return collate([sample], cfg.data.size_divisor)


@torch.inference_mode()
def predict_images(
    model: nn.Module,
    cfg: Config,
    images: Sequence[Path],
    out_dir: Path,
    score_thr: float = 0.3,
    device: torch.device | None = None,
    class_names: Sequence[str] | None = None,
) -> list[Path]:
    """Detect on each image, write ``out_dir/<name>`` with the boxes drawn and ``detections.json``."""
    device = device or next(model.parameters()).device
    out_dir.mkdir(parents=True, exist_ok=True)
    names = class_names_for(cfg, int(model.num_classes), class_names)  # type: ignore[arg-type]
    records, written, used = [], [], set()
    model.eval()
    for index, path in enumerate(images):
        if not Path(path).is_file():
            raise FileNotFoundError(f"image not found: {path}")
        image, batch = prepare_image(Path(path), cfg, model.mean, model.std, index)  # type: ignore[arg-type]
        outputs = model(batch.images.to(device))
        det: Detections = model.predict(outputs, batch.metas, rescale=True)[0].to("cpu")  # type: ignore[operator]
        keep = det.scores >= score_thr
        boxes, scores, labels = det.boxes[keep], det.scores[keep], det.labels[keep]
        texts = [f"{names[int(c)]} {float(s):.2f}" for c, s in zip(labels, scores)]
        drawn = draw_bounding_boxes(
            image, boxes, labels=texts, colors=[_color(int(c)) for c in labels], width=2
        )
        name = Path(path).name
        if name in used:
            name = f"{Path(path).stem}_{index}{Path(path).suffix}"
        used.add(name)
        target = out_dir / name
        if target.suffix.lower() not in (".jpg", ".jpeg", ".png"):
            target = target.with_suffix(".png")
        Image.fromarray(drawn.permute(1, 2, 0).contiguous().numpy()).save(target, quality=95)
        written.append(target)
        records.append(
            {
                "image": str(path),
                "output": str(target),
                "height": int(image.shape[1]),
                "width": int(image.shape[2]),
                "detections": [
                    {
                        "box": [round(v, 2) for v in b],
                        "score": round(float(s), 4),
                        "label": int(c),
                        "class": names[int(c)],
                    }
                    for b, s, c in zip(boxes.tolist(), scores.tolist(), labels.tolist())
                ],
            }
        )
    (out_dir / "detections.json").write_text(json.dumps(records, indent=1), encoding="utf-8")
    return written


def _color(label: int) -> tuple[int, int, int]:
    palette = [
        (230, 25, 75),
        (60, 180, 75),
        (255, 225, 25),
        (0, 130, 200),
        (245, 130, 48),
        (145, 30, 180),
        (70, 240, 240),
        (240, 50, 230),
        (210, 245, 60),
        (250, 190, 212),
        (0, 128, 128),
        (170, 110, 40),
    ]
    return palette[label % len(palette)]
