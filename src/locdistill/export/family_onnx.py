"""ONNX export of RetinaGFL / ATSS-GFL / FCOS-GFL at a fixed input size, with its onnxruntime check.

:func:`export_family_onnx` is what ``locdistill export`` runs for these families (the GFL export,
:mod:`locdistill.export.onnx`, has dynamic height and width instead). The check compares onnxruntime
with PyTorch on a two-image batch at the exported size: without NMS the scores and decoded boxes, with
NMS every image's detections against the detector's own ``predict`` on that input.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from locdistill.export.check import ExportParityError
from locdistill.export.family import ExportableFamily
from locdistill.export.metadata import add_metadata
from locdistill.models.detectors.family import FamilyDetector
from locdistill.structures import ImageMeta
from locdistill.utils.atomic_write import atomic_write

logger = logging.getLogger(__name__)


def export_family_onnx(
    model: FamilyDetector,
    out: str | Path,
    img_size: tuple[int, int],
    with_nms: bool = False,
    opset: int = 17,
    class_names: list[str] | None = None,
    check: bool | None = None,
    nms_topk: int = 1000,
    nms_iters: int = 32,
) -> Path:
    """Write a RetinaGFL / ATSS-GFL / FCOS-GFL ``model`` as ONNX to ``out`` (atomically) for a *fixed*
    input size ``img_size`` (``H, W``, multiples of 32); returns the path.

    Unlike the GFL export (:func:`locdistill.export.onnx.export_onnx`, dynamic height and width, equal to
    ``predict``), the priors here are fixed for ``img_size``: an image resized as ``predict`` does must
    be padded to exactly ``img_size``, and since GroupNorm normalises over the padding too, the graph's
    detections then equal PyTorch's on that padded input, not ``predict``'s on the unpadded one.

    Args:
        class_names: stored in the metadata (default ``class_0 ..``).
        check: run the onnxruntime parity check (``None``: when onnxruntime is installed).

    Raises:
        ValueError: bad size, or an NMS type that cannot be exported (nothing written).
        ExportParityError: onnxruntime disagrees with PyTorch (nothing written).
    """
    h, w = img_size
    if h % 32 or w % 32:
        raise ValueError(f"--img-size must be multiples of 32, got {h}x{w}")
    model = model.eval()
    wrapper = ExportableFamily(model, (h, w), with_nms, nms_topk=nms_topk, nms_iters=nms_iters).eval()
    names = ["boxes", "scores", "labels", "num_dets"] if with_nms else ["boxes", "scores"]
    num_classes = int(model.num_classes)  # type: ignore[arg-type]
    names_meta = list(class_names) if class_names else [f"class_{i}" for i in range(num_classes)]
    if len(names_meta) != num_classes:
        raise ValueError(f"{len(names_meta)} class names for a model with {num_classes} classes")

    def write(tmp: str) -> None:
        with torch.no_grad():
            torch.onnx.export(
                wrapper,
                (torch.zeros(1, 3, h, w),),
                tmp,
                input_names=["images"],
                output_names=names,
                dynamic_axes={name: {0: "batch"} for name in ["images", *names]},
                opset_version=opset,
                dynamo=False,
            )
        add_metadata(tmp, _metadata(model, (h, w), names_meta, with_nms))
        if check is not False:
            parity_check(tmp, model, wrapper, required=bool(check))

    return atomic_write(out, write)


def _metadata(
    model: FamilyDetector, img_size: tuple[int, int], class_names: list[str], with_nms: bool
) -> dict[str, str]:
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
        "mean": json.dumps(list(model.mean)),
        "std": json.dumps(list(model.std)),
        "input_size": json.dumps(list(img_size)),
        "input": "images [B, 3, H, W]: RGB in [0, 1], (x - mean) / std, resized and padded to H x W",
        "outputs": "boxes, scores, labels, num_dets (padded, best first)" if with_nms else "boxes, scores",
        "box_units": "input pixels (x1, y1, x2, y2)",
        "test_cfg": json.dumps(test),
        "producer": f"locdistill {__version__}",
    }


def _check_input(model: FamilyDetector, img_size: tuple[int, int], batch: int = 2) -> Tensor:
    """A deterministic, image-like batch: smooth random colour blobs, normalised like the model's input."""
    g = torch.Generator().manual_seed(0)
    h, w = img_size
    low = torch.rand(batch, 3, max(1, h // 16), max(1, w // 16), generator=g)
    x = nn.functional.interpolate(low, size=(h, w), mode="bilinear", align_corners=False)
    mean = torch.tensor(model.mean)[:, None, None]
    std = torch.tensor(model.std)[:, None, None]
    return (x - mean) / std


def parity_check(
    path: str | Path,
    model: FamilyDetector,
    wrapper: ExportableFamily,
    required: bool = False,
    images: Tensor | None = None,
) -> dict[str, float] | None:
    """Run the ONNX file with onnxruntime and compare it with PyTorch on ``images`` (default: a
    two-image check batch). Without NMS: ``scores`` against the sigmoid of the raw class outputs and
    ``boxes`` against their decoding; with NMS: every image's detections against ``the detector's predict``.

    Returns the largest differences, or ``None`` when onnxruntime is not installed (and not ``required``).

    Raises:
        ExportParityError: naming what differs and by how much.
    """
    try:
        import onnxruntime as ort
    except ImportError:
        if required:
            raise ValueError("the export check needs onnxruntime: pip install 'locdistill[export]'") from None
        logger.info("onnxruntime is not installed: %s was not checked", path)
        return None
    x = _check_input(model, wrapper.img_size) if images is None else images
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {"images": x.numpy()})
    with torch.no_grad():
        raw = model(x)
        expected = wrapper(x)
    diffs: dict[str, float] = {}
    if wrapper.post is None:
        scores = wrapper.raw_scores(raw).numpy()  # type: ignore[arg-type]
        _compare("scores (sigmoid of the raw class outputs)", got[1], scores, 1e-4, 1e-3, diffs)
        _compare("boxes (decoded raw box outputs)", got[0], expected[0].numpy(), 1e-2, 1e-4, diffs)
        return diffs
    h, w = wrapper.img_size
    metas = [ImageMeta(i, "check", (h, w), (h, w), (h, w)) for i in range(x.shape[0])]
    with torch.no_grad():
        dets = model.predict(raw, metas, rescale=False)
    converged = wrapper.post.converged
    for i, det in enumerate(dets):
        n = int(got[3][i])
        ref_n = min(len(det), got[0].shape[1])
        hint = ""
        if converged is not None and not bool(converged[i]):
            hint = f" (Cluster-NMS did not converge in {wrapper.post.nms_iters} rounds: raise nms_iters)"
        if n != ref_n:
            raise ExportParityError(
                f"export check failed: image {i} of the check batch has {n} detections in onnxruntime and "
                f"{ref_n} in PyTorch (the detector's predict){hint}; if PyTorch keeps boxes ranked beyond "
                f"nms_topk={wrapper.post.prefix}, raise nms_topk. Nothing was written."
            )
        if not np.array_equal(got[2][i, :n], det.labels[:n].numpy()):
            raise ExportParityError(
                f"export check failed: labels of image {i} differ from the detector's predict{hint}"
            )
        _compare(f"detection scores of image {i}", got[1][i, :n], det.scores[:n].numpy(), 1e-4, 1e-3, diffs)
        _compare(f"detection boxes of image {i}", got[0][i, :n], det.boxes[:n].numpy(), 1e-2, 1e-4, diffs)
    return diffs


def _compare(what: str, got: Any, expected: Any, atol: float, rtol: float, diffs: dict[str, float]) -> None:
    got, expected = np.asarray(got), np.asarray(expected)
    if got.shape != expected.shape:
        raise ExportParityError(
            f"export check failed: {what}: shape {got.shape} in onnxruntime, {expected.shape} in PyTorch. "
            "Nothing was written."
        )
    err = float(np.abs(got - expected).max()) if got.size else 0.0
    diffs[what] = err
    if not np.allclose(got, expected, atol=atol, rtol=rtol):
        raise ExportParityError(
            f"export check failed: {what} differ between onnxruntime and PyTorch by up to {err:.3g} "
            f"(tolerance {atol} + {rtol} x |value|). Nothing was written."
        )
