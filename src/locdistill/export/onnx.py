"""ONNX export of a trained GFL detector: network plus decoding, optionally post-processing and NMS.

The graph takes ``images [B, 3, H, W]`` (RGB in [0, 1] units, normalised with the model's mean/std,
``H``/``W`` fixed at export time: the anchors are baked in; the batch ``B`` is dynamic) and returns

* without NMS: ``boxes [B, A, 4]`` (input pixels, clipped to the input) and ``scores [B, A, C]``
  (sigmoid / joint scores) for all ``A`` anchors;
* with NMS: ``boxes [B, D, 4]``, ``scores [B, D]``, ``labels [B, D]`` (int64, ``-1`` in padding) and
  ``num_dets [B]``, ``D = max_per_img``: ``model.test`` post-processing with the configured
  ``model.test.nms.type`` (class-aware NMS or Score-voting Cluster-DIoU-NMS) in fixed-shape matrix form
  (:mod:`locdistill.export.nms`); boxes in input pixels (divide by the resize factor yourself).

The file's metadata (``metadata_props``) holds the class names, mean/std, input size and the test
settings as JSON. When onnxruntime is installed the export is checked before the file is written:
onnxruntime must reproduce the PyTorch model (the per-anchor outputs, or the detections of
``GFL.predict``) on a two-image batch; a mismatch fails the export and leaves no file. Exported with the
TorchScript-based exporter (``dynamo=False``).
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from locdistill.export.family import ExportableFamily
from locdistill.export.nms import ExportPostprocess, decode
from locdistill.models.detectors.family import FamilyDetector
from locdistill.models.detectors.gfl import GFL, require_gfl
from locdistill.models.heads.outputs import HeadOutputs, flatten_levels
from locdistill.ops.box_ops import box_centers
from locdistill.structures import ImageMeta
from locdistill.utils.atomic_write import atomic_write

logger = logging.getLogger(__name__)


class ExportParityError(ValueError):
    """onnxruntime does not reproduce the PyTorch model on the check input."""


class ExportableGFL(nn.Module):
    """Wraps a :class:`GFL` with fixed-size anchors, decoding and (optionally) post-processing.

    Args:
        model: the detector (eval mode).
        img_size: ``(H, W)`` of the exported input, multiples of 32.
        with_nms: include ``model.test`` post-processing with its NMS type.
        nms_topk / nms_iters: see :class:`locdistill.export.nms.ExportPostprocess`.
    """

    centers: Tensor
    strides: Tensor

    def __init__(
        self,
        model: GFL,
        img_size: tuple[int, int],
        with_nms: bool = False,
        nms_topk: int = 1000,
        nms_iters: int = 32,
    ) -> None:
        super().__init__()
        self.model = model.eval()
        self.img_size = img_size
        self.with_nms = with_nms
        with torch.no_grad():
            out = model(torch.zeros(1, 3, *img_size))
        anchors = model.anchors(out)
        self.level_sizes = [a.shape[0] for a in anchors]
        self.register_buffer("centers", box_centers(torch.cat(anchors)))
        self.register_buffer(
            "strides",
            torch.cat([torch.full((n,), float(s)) for n, s in zip(self.level_sizes, model.strides)]),
        )
        self.post: ExportPostprocess | None = None
        if with_nms:
            cfg = model.test_cfg
            self.post = ExportPostprocess(
                self.level_sizes,
                int(out.cls_scores[0].shape[1]),
                str(cfg.nms_type),
                cfg.score_thr,
                cfg.nms_pre,
                cfg.iou_threshold,
                cfg.max_per_img,
                nms_topk=nms_topk,
                nms_iters=nms_iters,
            )

    def raw_scores(self, out: HeadOutputs) -> Tensor:
        """The per-anchor scores of the NMS-free graph, computed in PyTorch (for the parity check)."""
        return flatten_levels(out.cls_scores).sigmoid()

    def forward(self, images: Tensor) -> tuple[Tensor, ...]:
        out = self.model(images)
        scores = flatten_levels(out.cls_scores).sigmoid()
        boxes = decode(
            self.centers, self.strides, self.model.integral(flatten_levels(out.bbox_preds)), self.img_size
        )
        if self.post is None:
            return boxes, scores
        return self.post(boxes, scores)


def export_onnx(
    model: GFL | FamilyDetector,
    out: str | Path,
    img_size: tuple[int, int],
    with_nms: bool = False,
    opset: int = 17,
    class_names: list[str] | None = None,
    check: bool | None = None,
    nms_topk: int = 1000,
    nms_iters: int = 32,
) -> Path:
    """Write ``model`` as ONNX to ``out`` (atomically); returns the path.

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
    wrapper: ExportableGFL | ExportableFamily
    if isinstance(model, FamilyDetector):
        wrapper = ExportableFamily(model, (h, w), with_nms, nms_topk=nms_topk, nms_iters=nms_iters).eval()
    else:
        wrapper = ExportableGFL(model, (h, w), with_nms, nms_topk=nms_topk, nms_iters=nms_iters).eval()
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
        _add_metadata(tmp, _metadata(model, (h, w), names_meta, with_nms))
        if check is not False:
            parity_check(tmp, model, wrapper, required=bool(check))

    return atomic_write(out, write)


def _metadata(
    model: GFL | FamilyDetector, img_size: tuple[int, int], class_names: list[str], with_nms: bool
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


def _add_metadata(path: str, metadata: dict[str, str]) -> None:
    try:
        import onnx
    except ImportError:
        raise ValueError(
            "writing ONNX metadata needs the onnx package: pip install 'locdistill[export]'"
        ) from None
    proto = onnx.load(path)
    for key, value in metadata.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(proto, path)


def _check_input(model: GFL | FamilyDetector, img_size: tuple[int, int], batch: int = 2) -> Tensor:
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
    model: GFL | FamilyDetector,
    wrapper: ExportableGFL | ExportableFamily,
    required: bool = False,
    images: Tensor | None = None,
) -> dict[str, float] | None:
    """Run the ONNX file with onnxruntime and compare it with PyTorch on ``images`` (default: a
    two-image check batch). Without NMS: ``scores`` against the sigmoid of the raw class outputs and
    ``boxes`` against their decoding; with NMS: every image's detections against ``GFL.predict``.

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
                f"{ref_n} in PyTorch (GFL.predict){hint}; if PyTorch keeps boxes ranked beyond "
                f"nms_topk={wrapper.post.prefix}, raise nms_topk. Nothing was written."
            )
        if not np.array_equal(got[2][i, :n], det.labels[:n].numpy()):
            raise ExportParityError(f"export check failed: labels of image {i} differ from GFL.predict{hint}")
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


def run_export(args: argparse.Namespace) -> int:
    """``locdistill export [CONFIG] CKPT --format onnx --out FILE [--with-nms] [--img-size H W]``."""
    from locdistill.models.from_checkpoint import build_detector_from_checkpoint

    if args.format != "onnx":
        raise ValueError(f"unsupported export format {args.format!r} (supported: onnx)")
    model, info = build_detector_from_checkpoint(
        args.checkpoint, args.config, getattr(args, "set", None) or []
    )
    cfg = info.config
    if args.img_size:
        size = (int(args.img_size[0]), int(args.img_size[1]))
    else:
        long_side, short_side = cfg.data.img_scale
        size = (-(-short_side // 32) * 32, -(-long_side // 32) * 32)
    exportable = model if isinstance(model, FamilyDetector) else require_gfl(model, "locdistill export")
    path = export_onnx(exportable, args.out, size, args.with_nms, class_names=info.class_names)
    nms = cfg.model.test.nms.type if args.with_nms else "none"
    print(
        f"exported {cfg.source} with {args.checkpoint} to {path} "
        f"(input Bx3x{size[0]}x{size[1]}, dynamic batch, nms={nms})"
    )
    return 0
