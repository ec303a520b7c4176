"""``locdistill predict``: run a detector on images, folders, globs and videos; draw the boxes; write
``detections.json``.

Images and video frames go through exactly the test pipeline of ``locdistill test``
(:mod:`locdistill.data`): keep-ratio resize into ``data.img_scale``, normalisation with the model's
mean/std (or ``data.mean/std``), zero padding to ``data.size_divisor``.

Nothing the user did not name as output is written over: output names never land on an input (with
``--out`` the input folder, ``a.jpg`` is drawn into ``a_det.jpg``), and two inputs never share an
output (``a.png`` -> ``a.png``, ``a.bmp`` -> ``a_bmp.png``, a second ``a.png`` from another folder ->
``a_det.png``). An unreadable input does not stop the others: ``detections.json`` lists every input
that was read, then :class:`PredictError` names the ones that were not.
"""

from __future__ import annotations

import glob
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch import Tensor, nn
from torchvision.utils import draw_bounding_boxes

from locdistill.config import Config
from locdistill.data import build_transforms, collate, resolve_mean_std
from locdistill.data.image_io import BadImageError, read_image
from locdistill.data.video import VideoError, VideoWriter, is_video, read_video_frames, video_fps
from locdistill.models.from_checkpoint import class_names_for
from locdistill.structures import Batch, Detections, ImageMeta, Targets

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif", ".pgm", ".ppm"}
)
DRAWN_SUFFIXES = frozenset({".jpg", ".jpeg", ".png"})


class PredictError(RuntimeError):
    """Some inputs could not be read; the others' results were written. The message names the bad ones."""


# ------------------------------------------------------------------------------------------ inputs
def _is_media(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES or is_video(path)


def collect_inputs(items: Sequence[str | Path]) -> list[Path]:
    """The image and video files named by ``items``: files as given, folders (their image and video
    files, sorted, not recursive) and glob patterns (``photos/*.jpg``, ``data/**/*.png``). Duplicates
    are dropped, the order kept.

    Raises:
        FileNotFoundError: an item that is no file or folder and no glob pattern that matches a file,
            or a folder without images or videos (naming it).
    """
    found: list[Path] = []
    for item in items:
        path = Path(item)
        if path.is_file():
            found.append(path)
        elif path.is_dir():
            files = sorted(p for p in path.iterdir() if p.is_file() and _is_media(p))
            if not files:
                raise FileNotFoundError(f"no image or video files in folder {path}")
            found += files
        elif glob.has_magic(str(item)):
            files = sorted(Path(p) for p in glob.glob(str(item), recursive=True))
            files = [p for p in files if p.is_file() and _is_media(p)]
            if not files:
                raise FileNotFoundError(f"no image or video files match {item}")
            found += files
        else:
            raise FileNotFoundError(f"input not found: {item}")
    unique: dict[Path, Path] = {}
    for p in found:
        unique.setdefault(p.resolve(), p)
    return list(unique.values())


def output_paths(inputs: Sequence[Path], out_dir: Path) -> list[Path]:
    """One output file in ``out_dir`` per input: unique (case-insensitively) and never an input file.

    Images keep their name when it ends in .jpg/.jpeg/.png, else become ``<stem>_<suffix>.png``;
    videos become ``<stem>.mp4`` (``<stem>_<suffix>.mp4`` for other containers). A name already taken,
    or one that is an input (same file, also through links), gets ``_det``, ``_det2``, ... appended.
    """
    input_ids = set()
    for p in inputs:
        st = p.stat()
        input_ids.add((st.st_dev, st.st_ino))
    taken: set[str] = set()
    out: list[Path] = []
    for src in inputs:
        suffix = src.suffix.lower()
        if is_video(src):
            stem, ext = (src.stem if suffix == ".mp4" else f"{src.stem}_{suffix[1:]}"), ".mp4"
        elif suffix in DRAWN_SUFFIXES:
            stem, ext = src.stem, src.suffix
        else:
            stem, ext = (f"{src.stem}_{suffix[1:]}" if suffix else src.stem), ".png"
        candidate, k = out_dir / f"{stem}{ext}", 0
        while candidate.name.lower() in taken or _is_one_of(candidate, input_ids):
            k += 1
            candidate = out_dir / f"{stem}_det{k if k > 1 else ''}{ext}"
        taken.add(candidate.name.lower())
        out.append(candidate)
    return out


def _is_one_of(path: Path, ids: set[tuple[int, int]]) -> bool:
    try:
        st = path.stat()
    except OSError:
        return False
    return (st.st_dev, st.st_ino) in ids


# ----------------------------------------------------------------------------------------- running
def prepare_tensor(
    image: Tensor,
    cfg: Config,
    mean: Sequence[float],
    std: Sequence[float],
    image_id: int = 0,
    file_name: str = "",
) -> Batch:
    """A one-image Batch of a ``uint8 [3, H, W]`` RGB image through the test pipeline (resize into
    ``data.img_scale``, normalise, pad to ``data.size_divisor``); its meta maps back to ``image``."""
    m, s = resolve_mean_std(cfg.data, mean, std)
    return prepare_scaled(image, cfg.data.img_scale, cfg.data.size_divisor, m, s, image_id, file_name)


def prepare_scaled(
    image: Tensor,
    img_scale: Sequence[int],
    size_divisor: int,
    mean: Sequence[float],
    std: Sequence[float],
    image_id: int = 0,
    file_name: str = "",
) -> Batch:
    """:func:`prepare_tensor` with the settings given: keep-ratio resize into ``img_scale``
    ``(long, short)``, normalisation with ``mean``/``std`` (``[0, 1]`` units), zero padding to
    ``size_divisor`` (the recipe of :mod:`locdistill.export.preprocess`)."""
    transform = build_transforms(train=False, img_scale=img_scale, mean=mean, std=std)
    shape = (int(image.shape[1]), int(image.shape[2]))
    meta = ImageMeta(
        image_id=image_id, file_name=file_name, ori_shape=shape, img_shape=shape, pad_shape=shape
    )
    sample = transform(image, Targets(), meta)
    return collate([sample], size_divisor)


def prepare_image(
    path: Path, cfg: Config, mean: Sequence[float], std: Sequence[float], image_id: int = 0
) -> tuple[Tensor, Batch]:
    """``(uint8 image [3, H, W], one-image Batch)`` of an image file through the test pipeline."""
    image = read_image(path)
    return image, prepare_tensor(image, cfg, mean, std, image_id, str(path))


class _Drawer:
    """Detect on one ``uint8 [3, H, W]`` image and draw the boxes above ``score_thr``."""

    def __init__(
        self, model: nn.Module, cfg: Config, names: list[str], score_thr: float, device: Any
    ) -> None:
        self.model, self.cfg, self.names, self.score_thr, self.device = model, cfg, names, score_thr, device

    def __call__(self, image: Tensor, image_id: int, name: str) -> tuple[Tensor, list[dict[str, Any]]]:
        model = self.model
        batch = prepare_tensor(image, self.cfg, model.mean, model.std, image_id, name)  # type: ignore[arg-type]
        outputs = model(batch.images.to(self.device))
        det: Detections = model.predict(outputs, batch.metas, rescale=True)[0].to("cpu")  # type: ignore[operator]
        keep = det.scores >= self.score_thr
        boxes, scores, labels = det.boxes[keep], det.scores[keep], det.labels[keep]
        texts = [f"{self.names[int(c)]} {float(s):.2f}" for c, s in zip(labels, scores)]
        drawn = image
        if len(boxes):
            colors = [_color(int(c)) for c in labels]
            drawn = draw_bounding_boxes(image, boxes, labels=texts, colors=colors, width=2)  # type: ignore[arg-type]
        records = [
            {
                "box": [round(v, 2) for v in b],
                "score": round(float(s), 4),
                "label": int(c),
                "class": self.names[int(c)],
            }
            for b, s, c in zip(boxes.tolist(), scores.tolist(), labels.tolist())
        ]
        return drawn, records


@torch.inference_mode()
def predict_files(
    model: nn.Module,
    cfg: Config,
    inputs: Sequence[Path],
    out_dir: Path,
    score_thr: float = 0.3,
    device: torch.device | None = None,
    class_names: Sequence[str] | None = None,
) -> list[Path]:
    """Detect on each image and video of ``inputs`` (see :func:`collect_inputs`); write the drawn
    images / annotated videos to ``out_dir`` (names from :func:`output_paths`) and ``detections.json``.

    ``detections.json`` is a list with one entry per input read: images ``{"image", "output", "height",
    "width", "detections": [{"box" (xyxy pixels), "score", "label", "class"}]}``, videos ``{"video",
    "output", "height", "width", "fps", "frames": [{"frame", "detections"}]}``.

    Returns the files written (drawn images and videos). Raises :class:`PredictError` naming every input
    that could not be read, after writing the results of the others.
    """
    device = device or next(model.parameters()).device
    if out_dir.exists() and not out_dir.is_dir():
        raise FileExistsError(f"--out {out_dir} is a file, not a folder")
    targets = output_paths(inputs, out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    draw = _Drawer(model, cfg, class_names_for(cfg, int(model.num_classes), class_names), score_thr, device)  # type: ignore[arg-type]
    records: list[dict[str, Any]] = []
    written: list[Path] = []
    failed: list[str] = []
    model.eval()
    for index, (path, target) in enumerate(zip(inputs, targets)):
        try:
            if is_video(path):
                records.append(_predict_video(draw, path, target))
            else:
                image = read_image(path)
                drawn, dets = draw(image, index, str(path))
                Image.fromarray(drawn.permute(1, 2, 0).contiguous().numpy()).save(target, quality=95)
                h, w = int(image.shape[1]), int(image.shape[2])
                records.append(
                    {"image": str(path), "output": str(target), "height": h, "width": w, "detections": dets}
                )
            written.append(target)
        except (BadImageError, VideoError) as e:
            logger.error("skipped: %s", e)
            failed.append(str(e))
    _write_json(out_dir / "detections.json", records)
    if failed:
        more = f" (and {len(failed) - 1} more)" if len(failed) > 1 else ""
        raise PredictError(
            f"{len(failed)} of {len(inputs)} input(s) could not be read, e.g. {failed[0]}{more}; the "
            f"results of the other {len(records)} are in {out_dir / 'detections.json'}"
        )
    return written


def _predict_video(draw: _Drawer, path: Path, target: Path) -> dict[str, Any]:
    fps = video_fps(path)
    frames: list[dict[str, Any]] = []
    size = (0, 0)
    with VideoWriter(target, fps) as writer:
        for k, frame in enumerate(read_video_frames(path)):
            drawn, dets = draw(frame, k, f"{path}#{k}")
            writer.write(drawn)
            frames.append({"frame": k, "detections": dets})
            size = (int(frame.shape[1]), int(frame.shape[2]))
    if not frames:
        raise VideoError(f"video file {path} has no frames")
    return {
        "video": str(path),
        "output": str(target),
        "height": size[0],
        "width": size[1],
        "fps": fps,
        "frames": frames,
    }


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=1), encoding="utf-8")
    os.replace(tmp, path)


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
