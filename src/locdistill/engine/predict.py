"""``locdistill predict``: run a detector on image files, draw the boxes, write ``detections.json``.

The test pipeline is mmdetection's: keep-ratio resize into ``data.img_scale`` (long, short), bilinear;
normalise with the model's mean/std (RGB in [0, 1]); zero-pad to a multiple of ``data.size_divisor``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from locdistill.structures import Batch, Detections, ImageMeta

logger = logging.getLogger("locdistill")


def rescale_size(h: int, w: int, scale: Sequence[int]) -> tuple[int, int, float]:
    """mmcv ``rescale_size`` (keep ratio): ``(new_h, new_w, factor)`` fitting ``scale = (long, short)``."""
    long_max, short_max = max(scale), min(scale)
    factor = min(long_max / max(h, w), short_max / min(h, w))
    return int(h * factor + 0.5), int(w * factor + 0.5), factor


def load_image(path: Path) -> Tensor:
    """``[3, H, W]`` uint8 RGB (EXIF orientation ignored, as mmdetection's default loader)."""
    from PIL import Image

    with Image.open(path) as im:
        rgb = im.convert("RGB")
        data = torch.frombuffer(bytearray(rgb.tobytes()), dtype=torch.uint8)
        return data.reshape(rgb.height, rgb.width, 3).permute(2, 0, 1).contiguous()


def preprocess(
    image: Tensor,
    img_scale: Sequence[int],
    mean: Sequence[float],
    std: Sequence[float],
    size_divisor: int = 32,
    image_id: int = 0,
    file_name: str = "",
) -> tuple[Tensor, ImageMeta]:
    """uint8 ``[3, H, W]`` -> normalised, padded ``[3, H', W']`` float tensor and its :class:`ImageMeta`."""
    h, w = int(image.shape[1]), int(image.shape[2])
    new_h, new_w, _ = rescale_size(h, w, img_scale)
    x = image.float().unsqueeze(0) / 255.0
    if (new_h, new_w) != (h, w):
        x = F.interpolate(x, size=(new_h, new_w), mode="bilinear", align_corners=False)
    x = (x[0] - torch.tensor(mean).view(3, 1, 1)) / torch.tensor(std).view(3, 1, 1)
    pad_h = -(-new_h // size_divisor) * size_divisor
    pad_w = -(-new_w // size_divisor) * size_divisor
    x = F.pad(x, (0, pad_w - new_w, 0, pad_h - new_h))
    meta = ImageMeta(
        image_id=image_id,
        file_name=file_name,
        ori_shape=(h, w),
        img_shape=(new_h, new_w),
        pad_shape=(pad_h, pad_w),
        scale_factor=(new_w / w, new_h / h),
    )
    return x, meta


def class_names(cfg: Any, num_classes: int) -> list[str]:
    """Class names from the config's datasets, else COCO's 80 when the model has 80 classes, else numbers."""
    for split in (cfg.data.train, cfg.data.val, cfg.data.test):
        if split is not None and len(split.classes) == num_classes:
            return list(split.classes)
    if num_classes == 80:
        try:
            from locdistill.data import COCO_CLASSES  # type: ignore[attr-defined]

            return list(COCO_CLASSES)
        except ImportError:
            pass
    return [f"class_{i}" for i in range(num_classes)]


@torch.inference_mode()
def predict_images(
    model: nn.Module,
    cfg: Any,
    images: Sequence[Path],
    out_dir: Path,
    score_thr: float = 0.3,
    device: torch.device | None = None,
) -> list[Path]:
    """Detect on each image, write ``out_dir/<name>`` with the boxes drawn and ``detections.json``."""
    from torchvision.io import write_jpeg, write_png
    from torchvision.utils import draw_bounding_boxes

    device = device or next(model.parameters()).device
    out_dir.mkdir(parents=True, exist_ok=True)
    names = class_names(cfg, int(model.num_classes))  # type: ignore[arg-type]
    mean, std = cfg.data.mean or model.mean, cfg.data.std or model.std
    records, written, used = [], [], set()
    model.eval()
    for index, path in enumerate(images):
        if not Path(path).is_file():
            raise FileNotFoundError(f"image not found: {path}")
        image = load_image(Path(path))
        x, meta = preprocess(image, cfg.data.img_scale, mean, std, cfg.data.size_divisor, index, str(path))
        batch = Batch(x.unsqueeze(0), [], [meta])
        outputs = model(batch.images.to(device))
        det: Detections = model.predict(outputs, batch.metas, rescale=True)[0].to("cpu")  # type: ignore[operator]
        keep = det.scores >= score_thr
        boxes, scores, labels = det.boxes[keep], det.scores[keep], det.labels[keep]
        texts = [f"{names[int(c)]} {float(s):.2f}" for c, s in zip(labels, scores)]
        drawn = draw_bounding_boxes(image, boxes, labels=texts, colors=[_color(int(c)) for c in labels], width=2)
        name = Path(path).name
        if name in used:
            name = f"{Path(path).stem}_{index}{Path(path).suffix}"
        used.add(name)
        target = out_dir / name
        if target.suffix.lower() in (".jpg", ".jpeg"):
            write_jpeg(drawn, str(target), quality=95)
        else:
            target = target.with_suffix(".png")
            write_png(drawn, str(target))
        written.append(target)
        records.append({
            "image": str(path),
            "output": str(target),
            "height": int(image.shape[1]),
            "width": int(image.shape[2]),
            "detections": [
                {"box": [round(v, 2) for v in b], "score": round(float(s), 4), "label": int(c), "class": names[int(c)]}
                for b, s, c in zip(boxes.tolist(), scores.tolist(), labels.tolist())
            ],
        })
    (out_dir / "detections.json").write_text(json.dumps(records, indent=1), encoding="utf-8")
    return written


def _color(label: int) -> tuple[int, int, int]:
    palette = [(230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48), (145, 30, 180),
               (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212), (0, 128, 128), (170, 110, 40)]
    return palette[label % len(palette)]
