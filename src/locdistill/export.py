"""ONNX export of a trained GFL student: network plus decoding, optionally NMS.

The exported graph takes a normalised ``[1, 3, H, W]`` image batch of the size given at export time
(anchors are baked in as constants) and returns

* without NMS: ``boxes [1, A, 4]`` (input pixels, clipped to the image) and ``scores [1, A, C]``
  (sigmoid / joint scores) for all ``A`` anchors;
* with NMS: ``boxes [K, 4]``, ``scores [K]``, ``labels [K]`` after the reference post-processing
  (top ``nms_pre`` pairs per level above ``score_thr``, class-aware NMS, top ``max_per_img``).

Exported with the TorchScript-based exporter (``dynamo=False``), which needs no extra packages.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from torch import Tensor, nn
from torchvision.ops import batched_nms

from locdistill.models.gfl import GFL
from locdistill.models.gfl_loss import flatten_levels
from locdistill.ops.box_ops import box_centers, distance2bbox


class ExportableGFL(nn.Module):
    """Wraps a :class:`GFL` with fixed-size anchors and decoding for export.

    Args:
        model: the detector (eval mode).
        img_size: ``(H, W)`` of the exported input, multiples of 32.
        with_nms: include post-processing and NMS (batch size 1).
    """

    centers: Tensor
    strides: Tensor

    def __init__(self, model: GFL, img_size: tuple[int, int], with_nms: bool = False) -> None:
        super().__init__()
        self.model = model.eval()
        self.img_size = img_size
        self.with_nms = with_nms
        with torch.no_grad():
            out = model(torch.zeros(1, 3, *img_size))
        anchors = model.anchors(out)
        self.level_sizes = [a.shape[0] for a in anchors]
        all_anchors = torch.cat(anchors)
        self.register_buffer("centers", box_centers(all_anchors))
        self.register_buffer(
            "strides",
            torch.cat([torch.full((n,), float(s)) for n, s in zip(self.level_sizes, model.strides)]),
        )

    def forward(self, images: Tensor) -> tuple[Tensor, ...]:
        out = self.model(images)
        scores = flatten_levels(out.cls_scores).sigmoid()
        reg = flatten_levels(out.bbox_preds)
        dist = self.model.integral(reg) * self.strides[None, :, None]
        boxes = distance2bbox(self.centers[None], dist, max_shape=self.img_size)
        if not self.with_nms:
            return boxes, scores
        return self._postprocess(boxes[0], scores[0])

    def _postprocess(self, boxes: Tensor, scores: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        cfg = self.model.test_cfg
        num_classes = scores.shape[1]
        sel_boxes, sel_scores, sel_labels = [], [], []
        start = 0
        for n in self.level_sizes:
            s = scores[start : start + n].reshape(-1)
            k = min(cfg.nms_pre, n * num_classes)
            top, idx = s.topk(k)
            keep = top > cfg.score_thr
            top, idx = top[keep], idx[keep]
            anchor = torch.div(idx, num_classes, rounding_mode="floor") + start
            sel_boxes.append(boxes[anchor])
            sel_scores.append(top)
            sel_labels.append(idx % num_classes)
            start += n
        b, s, lab = torch.cat(sel_boxes), torch.cat(sel_scores), torch.cat(sel_labels)
        nonzero = (b[:, 2] > b[:, 0]) & (b[:, 3] > b[:, 1])
        b, s, lab = b[nonzero], s[nonzero], lab[nonzero]
        keep = batched_nms(b, s, lab, cfg.iou_threshold)[: cfg.max_per_img]
        return b[keep], s[keep], lab[keep]


def export_onnx(
    model: GFL, out: str | Path, img_size: tuple[int, int], with_nms: bool = False, opset: int = 17
) -> Path:
    """Write ``model`` as ONNX to ``out``; returns the path."""
    h, w = img_size
    if h % 32 or w % 32:
        raise ValueError(f"--img-size must be multiples of 32, got {h}x{w}")
    wrapper = ExportableGFL(model, (h, w), with_nms).eval()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    names = ["boxes", "scores", "labels"] if with_nms else ["boxes", "scores"]
    with torch.no_grad():
        torch.onnx.export(
            wrapper,
            (torch.zeros(1, 3, h, w),),
            str(out),
            input_names=["images"],
            output_names=names,
            opset_version=opset,
            dynamo=False,
        )
    return out


def run_export(args: argparse.Namespace) -> int:
    """``locdistill export CONFIG CKPT --format onnx --out FILE [--with-nms] [--img-size H W]``."""
    from locdistill.config import load_config
    from locdistill.models.gfl import build_gfl
    from locdistill.models.weights import load_detector_weights

    if args.format != "onnx":
        raise ValueError(f"unsupported export format {args.format!r} (supported: onnx)")
    cfg = load_config(args.config, getattr(args, "set", None) or [])
    cfg.model.backbone.pretrained = False
    model = build_gfl(cfg.model)
    load_detector_weights(model, args.checkpoint)
    if args.img_size:
        size = (int(args.img_size[0]), int(args.img_size[1]))
    else:
        long_side, short_side = cfg.data.img_scale
        size = (-(-short_side // 32) * 32, -(-long_side // 32) * 32)
    path = export_onnx(model, args.out, size, args.with_nms)
    print(
        f"exported {cfg.source} with {args.checkpoint} to {path} "
        f"(input 1x3x{size[0]}x{size[1]}, nms={args.with_nms})"
    )
    return 0
