"""The export's own check: onnxruntime, fed images prepared by the documented recipe
(:func:`locdistill.export.preprocess.preprocess`), must give what ``locdistill predict`` gives.

``predict``'s side runs its own pipeline (:func:`locdistill.engine.predict.prepare_scaled`) and
``GFL.predict`` with ``rescale=True``, one image at a time, exactly as the command does. The check
images are non-square, of two sizes (two landscape images as one batch, one portrait image), so that
padding, clipping to the resized image and rescaling to the original all take part.

Tolerances (the product's promise): scores within 1e-4, boxes within 0.1 original-image pixels, labels
and the number of detections equal. Detections whose scores tie within the tolerance may come in
either order.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from locdistill.engine.predict import prepare_scaled
from locdistill.export.preprocess import (
    Recipe,
    batch_inputs,
    preprocess,
    rescale_size,
    resize_bilinear_uint8,
)
from locdistill.models.heads.outputs import flatten_levels
from locdistill.structures import Batch, Detections

if TYPE_CHECKING:
    from locdistill.export.graph import ExportableGFL
    from locdistill.models.detectors.gfl import GFL

logger = logging.getLogger(__name__)

SCORE_TOL = 1e-4
BOX_TOL = 0.1  # original-image pixels


class ExportParityError(ValueError):
    """onnxruntime does not reproduce ``predict`` on the check images."""


def synthetic_image(height: int, width: int, seed: int) -> np.ndarray:
    """A deterministic photo-like ``uint8 [height, width, 3]``: smooth colour blobs and a few solid
    rectangles with soft edges."""
    rng = np.random.default_rng(seed)
    low = rng.integers(0, 256, (max(2, height // 24), max(2, width // 24), 3), dtype=np.uint8)
    image = resize_bilinear_uint8(low, (height, width)).astype(np.int32)
    for _ in range(6):
        y0, x0 = int(rng.integers(0, height * 3 // 4)), int(rng.integers(0, width * 3 // 4))
        y1 = min(height, y0 + int(rng.integers(height // 8, height // 2)))
        x1 = min(width, x0 + int(rng.integers(width // 8, width // 2)))
        image[y0:y1, x0:x1] = rng.integers(0, 256, 3)
    return np.clip(image, 0, 255).astype(np.uint8)


def default_check_images() -> list[np.ndarray]:
    """Two landscape images of one size (checked as one batch) and one portrait image."""
    return [synthetic_image(330, 500, 0), synthetic_image(330, 500, 1), synthetic_image(460, 290, 2)]


def predict_detections(model: GFL, recipe: Recipe, image: np.ndarray) -> tuple[Batch, Detections]:
    """``predict``'s batch and detections (original-image pixels) of one ``uint8 [H, W, 3]`` image."""
    tensor = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))
    batch = prepare_scaled(tensor, recipe.img_scale, recipe.size_divisor, recipe.mean, recipe.std)
    with torch.no_grad():
        dets = model.predict(model(batch.images), batch.metas, rescale=True)
    return batch, dets[0]


@dataclass
class Found:
    """One image's detections from the graph: ``boxes [n, 4]``, ``scores [n]``, ``labels [n]``."""

    boxes: np.ndarray
    scores: np.ndarray
    labels: np.ndarray


def match_detections(what: str, got: Found, expected: Detections, diffs: dict[str, float]) -> None:
    """Pair each detection of ``got`` with one of ``expected`` (best first; label equal, score within
    :data:`SCORE_TOL`, box within :data:`BOX_TOL`), recording the largest differences in ``diffs``.

    Raises:
        ExportParityError: a count, label, score or box that differs, naming ``what`` and the detection.
    """
    ref_boxes, ref_scores = expected.boxes.numpy(), expected.scores.numpy()
    ref_labels = expected.labels.numpy()
    if len(got.scores) != len(ref_scores):
        raise ExportParityError(
            f"export check failed: {what}: {len(got.scores)} detections in onnxruntime and "
            f"{len(ref_scores)} in predict"
        )
    free = np.ones(len(ref_scores), dtype=bool)
    score_err = box_err = 0.0
    for i in range(len(got.scores)):
        box_diff = np.abs(ref_boxes - got.boxes[i]).max(axis=1) if len(ref_scores) else np.zeros(0)
        score_diff = np.abs(ref_scores - got.scores[i])
        ok = free & (ref_labels == got.labels[i]) & (score_diff <= SCORE_TOL) & (box_diff <= BOX_TOL)
        if not ok.any():
            j = i if i < len(ref_scores) else 0
            raise ExportParityError(
                f"export check failed: {what}: detection {i} (label {int(got.labels[i])}, score "
                f"{float(got.scores[i]):.6f}, box {np.round(got.boxes[i], 3).tolist()}) has no match in "
                f"predict (its detection {j}: label {int(ref_labels[j])}, score {float(ref_scores[j]):.6f}, "
                f"box {np.round(ref_boxes[j], 3).tolist()}; tolerance: scores {SCORE_TOL}, "
                f"boxes {BOX_TOL} px)"
            )
        j = int(np.flatnonzero(ok)[0])
        free[j] = False
        score_err, box_err = max(score_err, float(score_diff[j])), max(box_err, float(box_diff[j]))
    diffs[f"{what}: scores"] = score_err
    diffs[f"{what}: boxes (px)"] = box_err


def _compare_arrays(
    what: str, got: np.ndarray, expected: np.ndarray, tol: float, diffs: dict[str, float]
) -> None:
    if got.shape != expected.shape:
        raise ExportParityError(
            f"export check failed: {what}: shape {got.shape} in onnxruntime, {expected.shape} in PyTorch"
        )
    err = float(np.abs(got - expected).max()) if got.size else 0.0
    diffs[what] = err
    if not err <= tol:
        raise ExportParityError(
            f"export check failed: {what} differ between onnxruntime and PyTorch by up to {err:.3g} "
            f"(tolerance {tol})"
        )


def _groups(images: Sequence[np.ndarray], recipe: Recipe) -> list[list[int]]:
    """Indices of consecutive images with one padded size (each group runs as one batch)."""
    groups: list[list[int]] = []
    last: tuple[int, int] | None = None
    for i, image in enumerate(images):
        shape = _padded_shape(image, recipe)
        if groups and shape == last:
            groups[-1].append(i)
        else:
            groups.append([i])
        last = shape
    return groups


def _padded_shape(image: np.ndarray, recipe: Recipe) -> tuple[int, int]:
    h, w = rescale_size(int(image.shape[0]), int(image.shape[1]), recipe.img_scale)
    d = recipe.size_divisor
    return -(-h // d) * d, -(-w // d) * d


def parity_check(
    path: str | Path,
    model: GFL,
    wrapper: ExportableGFL,
    recipe: Recipe,
    images: Sequence[np.ndarray] | None = None,
    required: bool = False,
) -> dict[str, float] | None:
    """Run the ONNX file with onnxruntime on ``images`` (``uint8 [H, W, 3]`` RGB; default
    :func:`default_check_images`) prepared by the recipe, and compare with ``predict``: with NMS the
    detections of every image; without, the per-anchor boxes and scores against the PyTorch wrapper
    and the network's raw class outputs on ``predict``'s input.

    Returns the largest differences, or ``None`` when onnxruntime is not installed (and not ``required``).

    Raises:
        ExportParityError: naming the image and what differs by how much.
    """
    try:
        import onnxruntime as ort
    except ImportError:
        if required:
            raise ValueError("the export check needs onnxruntime: pip install 'locdistill[export]'") from None
        logger.info("onnxruntime is not installed: %s was not checked", path)
        return None
    images = list(images) if images is not None else default_check_images()
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    diffs: dict[str, float] = {}
    compared = 0
    for group in _groups(images, recipe):
        feed = batch_inputs([preprocess(images[i], recipe) for i in group])
        got = session.run(None, feed)
        for k, i in enumerate(group):
            h, w = images[i].shape[:2]
            what = f"check image {i} ({h}x{w}, input {feed['images'].shape[2]}x{feed['images'].shape[3]})"
            batch, det = predict_detections(model, recipe, images[i])
            diffs[f"{what}: input vs predict's pipeline"] = float(
                np.abs(feed["images"][k] - batch.images[0].numpy()).max()
            )
            if wrapper.post is None:
                _compare_raw(what, got, k, wrapper, model, batch, diffs)
                continue
            n = int(got[3][k])
            found = Found(got[0][k, :n], got[1][k, :n], got[2][k, :n])
            try:
                match_detections(what, found, det, diffs)
            except ExportParityError as e:
                raise ExportParityError(f"{e}{_hint(wrapper, feed, k)}") from None
            compared += n
    _report(path, len(images), compared if wrapper.post is not None else None, diffs)
    return diffs


def _report(path: str | Path, num_images: int, compared: int | None, diffs: dict[str, float]) -> None:
    score = max((v for k, v in diffs.items() if k.endswith(": scores")), default=0.0)
    box = max((v for k, v in diffs.items() if k.endswith("(px)")), default=0.0)
    what = "per-anchor outputs" if compared is None else f"{compared} detections"
    logger.info(
        "%s checked against predict on %d image(s): %s, scores within %.2g, boxes within %.2g px",
        path,
        num_images,
        what,
        score,
        box,
    )
    if compared == 0:
        logger.warning(
            "the export check compared no detections (predict finds none on the check images): name "
            "photos of the model's classes with --check-image"
        )


def _compare_raw(
    what: str,
    got: list[np.ndarray],
    k: int,
    wrapper: ExportableGFL,
    model: GFL,
    batch: Batch,
    diffs: dict[str, float],
) -> None:
    meta = batch.metas[0]
    img_shape = torch.tensor([meta.img_shape])
    ori_shape = torch.tensor([meta.ori_shape])
    with torch.no_grad():
        boxes, scores = wrapper(batch.images, img_shape, ori_shape)
        raw = flatten_levels(model(batch.images).cls_scores).sigmoid()
    _compare_arrays(f"{what}: scores", got[1][k], scores[0].numpy(), SCORE_TOL, diffs)
    _compare_arrays(f"{what}: scores vs raw class outputs", got[1][k], raw[0].numpy(), SCORE_TOL, diffs)
    _compare_arrays(f"{what}: boxes (px)", got[0][k], boxes[0].numpy(), BOX_TOL, diffs)


def _hint(wrapper: ExportableGFL, feed: dict[str, np.ndarray], k: int) -> str:
    """Why the graph's detections may differ from ``predict``'s (its two fixed limits)."""
    post = wrapper.post
    assert post is not None
    with torch.no_grad():
        wrapper(*(torch.from_numpy(feed[name]) for name in ("images", "img_shape", "ori_shape")))
    if post.converged is not None and not bool(post.converged[k]):
        return f" (Cluster-NMS did not converge in nms_iters={post.nms_iters} rounds: raise nms_iters)"
    return f" (if predict keeps boxes ranked beyond nms_topk={post.prefix}, raise nms_topk)"
