"""ONNX export of a trained GFL detector: network plus decoding, optionally post-processing and NMS,
for any input size.

The graph takes the image exactly as ``locdistill predict`` prepares it (the recipe:
:mod:`locdistill.export.preprocess`, stored in the metadata key ``preprocess``, see ``docs/export.md``):

* ``images [B, 3, H, W]`` float32, ``H`` and ``W`` dynamic (multiples of 32 by the recipe): keep-ratio
  resize into ``data.img_scale``, normalisation, zero padding at the bottom and right;
* ``img_shape [B, 2]`` int64 ``(h, w)`` of the resized image inside the padding (boxes are clipped to it);
* ``ori_shape [B, 2]`` int64 ``(h, w)`` of the original image (boxes are divided by
  ``img_shape / ori_shape``, as ``predict`` does); pass ``ori_shape = img_shape`` for input pixels.

The anchors are computed inside the graph from the feature-map sizes; the batch ``B`` is dynamic (one
padded size per batch). Outputs, boxes in original-image pixels:

* without NMS: ``boxes [B, A, 4]`` and ``scores [B, A, C]`` (sigmoid / joint scores) for all ``A``
  anchors (``A`` follows the input size);
* with NMS: ``boxes [B, D, 4]``, ``scores [B, D]``, ``labels [B, D]`` (int64, ``-1`` in padding) and
  ``num_dets [B]``, ``D = max_per_img``: ``model.test`` post-processing with the configured
  ``model.test.nms.type`` (class-aware NMS or Score-voting Cluster-DIoU-NMS) in fixed-shape matrix form
  (:mod:`locdistill.export.nms`).

The metadata also holds the class names, mean/std and the test settings as JSON. When onnxruntime is
installed the export is checked before the file is written (:mod:`locdistill.export.check`):
onnxruntime fed the recipe must give ``predict``'s detections on non-square images of two sizes
(scores within 1e-4, boxes within 0.1 px); a mismatch fails the export and leaves no file. Exported
with the TorchScript-based exporter (``dynamo=False``).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from locdistill.export.check import ExportParityError, default_check_images, parity_check
from locdistill.export.family_onnx import export_family_onnx
from locdistill.export.graph import ExportableGFL
from locdistill.export.metadata import add_metadata
from locdistill.export.preprocess import Recipe, preprocess
from locdistill.models.detectors.family import FamilyDetector
from locdistill.models.detectors.gfl import GFL, require_gfl
from locdistill.utils.atomic_write import atomic_write

logger = logging.getLogger(__name__)

__all__ = ["ExportParityError", "ExportableGFL", "export_onnx", "run_export"]
INPUT_NAMES = ["images", "img_shape", "ori_shape"]


def export_onnx(
    model: GFL,
    out: str | Path,
    recipe: Recipe | None = None,
    with_nms: bool = False,
    opset: int = 17,
    class_names: list[str] | None = None,
    check: bool | None = None,
    nms_topk: int = 1000,
    nms_iters: int = 32,
    check_images: Sequence[np.ndarray] | None = None,
) -> Path:
    """Write ``model`` as ONNX to ``out`` (atomically); returns the path.

    Args:
        recipe: how ``predict`` prepares images for this model (default: ``img_scale (1333, 800)``,
            ``size_divisor 32``, the backbone's mean/std); stored in the metadata.
        class_names: stored in the metadata (default ``class_0 ..``).
        check: run the onnxruntime check against ``predict`` (``None``: when onnxruntime is installed).
        check_images: ``uint8 [H, W, 3]`` RGB images for the check (default: synthetic non-square ones).

    Raises:
        ValueError: an NMS type that cannot be exported, wrong class names (nothing written).
        ExportParityError: onnxruntime disagrees with ``predict`` (nothing written).
    """
    model = model.eval()
    if recipe is None:
        recipe = Recipe((1333, 800), 32, model.mean, model.std)
    wrapper = ExportableGFL(model, with_nms, nms_topk=nms_topk, nms_iters=nms_iters).eval()
    names = ["boxes", "scores", "labels", "num_dets"] if with_nms else ["boxes", "scores"]
    num_classes = int(model.num_classes)  # type: ignore[arg-type]
    names_meta = list(class_names) if class_names else [f"class_{i}" for i in range(num_classes)]
    if len(names_meta) != num_classes:
        raise ValueError(f"{len(names_meta)} class names for a model with {num_classes} classes")
    images = list(check_images) if check_images else default_check_images()
    example = preprocess(images[0], recipe)
    dynamic: dict[str, dict[int, str]] = {name: {0: "batch"} for name in INPUT_NAMES + names}
    dynamic["images"] = {0: "batch", 2: "height", 3: "width"}
    if not with_nms:
        dynamic["boxes"] = dynamic["scores"] = {0: "batch", 1: "anchors"}

    def write(tmp: str) -> None:
        with torch.no_grad(), warnings.catch_warnings():
            # group_norm's batch-size check reads a traced size; the graph does not depend on it
            warnings.filterwarnings("ignore", message="Converting a tensor to a Python boolean")
            torch.onnx.export(
                wrapper,
                tuple(torch.from_numpy(example[name]) for name in INPUT_NAMES),
                tmp,
                input_names=INPUT_NAMES,
                output_names=names,
                dynamic_axes=dynamic,  # type: ignore[arg-type]
                opset_version=opset,
                dynamo=False,
            )
        add_metadata(tmp, _metadata(model, recipe, names_meta, with_nms))
        if check is not False:
            try:
                parity_check(tmp, model, wrapper, recipe, images, required=bool(check))
            except ExportParityError as e:
                raise ExportParityError(f"{e}. Nothing was written.") from None

    return atomic_write(out, write)


def recipe_for(
    img_scale: Sequence[int], size_divisor: int, mean: Sequence[float], std: Sequence[float]
) -> Recipe:
    """A :class:`Recipe` from config values (``mean``/``std`` in ``[0, 1]`` units)."""
    m = [float(v) for v in mean]
    s = [float(v) for v in std]
    return Recipe(
        (int(max(img_scale)), int(min(img_scale))), int(size_divisor), (m[0], m[1], m[2]), (s[0], s[1], s[2])
    )


def _metadata(model: GFL, recipe: Recipe, class_names: list[str], with_nms: bool) -> dict[str, str]:
    cfg = model.test_cfg
    test = {
        "score_thr": cfg.score_thr,
        "nms_pre": cfg.nms_pre,
        "nms_type": cfg.nms_type if with_nms else None,
        "iou_threshold": cfg.iou_threshold,
        "max_per_img": cfg.max_per_img,
    }
    from locdistill import __version__

    return {
        "class_names": json.dumps(class_names),
        "mean": json.dumps(list(recipe.mean)),
        "std": json.dumps(list(recipe.std)),
        "preprocess": recipe.to_json(),
        "inputs": "images [B, 3, H, W] float32 (the recipe in 'preprocess'), img_shape [B, 2] int64 "
        "(h, w) resized before padding, ori_shape [B, 2] int64 (h, w) original",
        "outputs": "boxes, scores, labels, num_dets (padded, best first)" if with_nms else "boxes, scores",
        "box_units": "original-image pixels (x1, y1, x2, y2): clipped to img_shape, divided by "
        "img_shape / ori_shape",
        "test_cfg": json.dumps(test),
        "producer": f"locdistill {__version__}",
    }


def run_export(args: argparse.Namespace) -> int:
    """``locdistill export [CONFIG] CKPT --format onnx --out FILE [--with-nms] [--img-size H W]
    [--check-image IMG ...]``."""
    from locdistill.data import resolve_mean_std
    from locdistill.data.image_io import read_image
    from locdistill.models.from_checkpoint import build_detector_from_checkpoint

    if args.format != "onnx":
        raise ValueError(f"unsupported export format {args.format!r} (supported: onnx)")
    built, info = build_detector_from_checkpoint(
        args.checkpoint, args.config, getattr(args, "set", None) or []
    )
    cfg = info.config
    if isinstance(built, FamilyDetector):  # fixed input size (export/family_onnx.py)
        if args.img_size:
            size = (int(args.img_size[0]), int(args.img_size[1]))
        else:
            long_side, short_side = cfg.data.img_scale
            size = (-(-short_side // 32) * 32, -(-long_side // 32) * 32)
        path = export_family_onnx(built, args.out, size, args.with_nms, class_names=info.class_names)
        print(
            f"exported {cfg.source} with {args.checkpoint} to {path} (input Bx3x{size[0]}x{size[1]}, "
            f"dynamic batch, fixed size; nms={cfg.model.test.nms.type if args.with_nms else 'none'})"
        )
        return 0
    model = require_gfl(built, "locdistill export")
    scale = [int(v) for v in args.img_size] if args.img_size else list(cfg.data.img_scale)
    recipe = recipe_for(scale, cfg.data.size_divisor, *resolve_mean_std(cfg.data, model.mean, model.std))
    paths = getattr(args, "check_image", None) or []
    images = [read_image(p).permute(1, 2, 0).numpy() for p in paths] or None
    # show the check's summary line (and its warning) on the console
    check_log = logging.getLogger("locdistill.export.check")
    handler, level = logging.StreamHandler(sys.stdout), check_log.level
    check_log.addHandler(handler)
    check_log.setLevel(logging.INFO)
    try:
        path = export_onnx(
            model, args.out, recipe, args.with_nms, class_names=info.class_names, check_images=images
        )
    finally:
        check_log.removeHandler(handler)
        check_log.setLevel(level)
    nms = cfg.model.test.nms.type if args.with_nms else "none"
    print(
        f"exported {cfg.source} with {args.checkpoint} to {path} (inputs images Bx3xHxW, img_shape, "
        f"ori_shape; dynamic batch and size; resize into {recipe.img_scale[0]}x{recipe.img_scale[1]}, "
        f"pad to {recipe.size_divisor}: see docs/export.md; nms={nms})"
    )
    return 0
