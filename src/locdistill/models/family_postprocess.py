"""Inference post-processing of RetinaGFL, ATSS-GFL and FCOS-GFL, in one of two orders.

``original`` (default; the LD code's mmdetection 2.10 heads), per image:

1. per level, rank the priors by ``max_c sigmoid(cls) * sigmoid(ctr)`` (RetinaGFL: ``max_c sigmoid(cls)``)
   and keep the top ``nms_pre`` *priors*;
2. decode ``Integral * stride`` from the prior centre (the anchor centre, or the FCOS point), clip to
   ``img_shape``; concatenate the levels; divide by ``scale_factor`` when rescaling;
3. keep the (prior, class) pairs with ``sigmoid(cls) > score_thr`` (the raw class score, before the
   centerness), score them ``sigmoid(cls) * sigmoid(ctr)``, drop boxes of zero width or height (clipping
   can collapse them; the original keeps them, harmless as they overlap nothing, but mmdetection 3 and
   the ONNX graph drop them), class-aware NMS, keep ``max_per_img``.

``mmdet3`` (mmdetection 3's ``BaseDenseHead``), per image: per level keep the pairs with
``sigmoid(cls) > score_thr``, the top ``nms_pre`` *pairs* by ``sigmoid(cls)``; decode and clip; concatenate;
rescale; multiply by ``sigmoid(ctr)``; drop boxes of zero width or height; NMS; keep ``max_per_img``.
The kept candidates of the two orders can differ slightly.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from locdistill.models.heads.family_outputs import FamilyOutputs
from locdistill.models.integral import Integral
from locdistill.models.nms import multiclass_nms
from locdistill.models.postprocess import PostProcessConfig
from locdistill.ops.box_ops import distance2bbox
from locdistill.structures import Detections, ImageMeta

PostProcessOrder = Literal["original", "mmdet3"]


def _level_maps(
    outputs: FamilyOutputs, i: int, level: int, num_classes: int, reg_max: int
) -> tuple[Tensor, Tensor, Tensor | None]:
    """Image ``i`` on ``level``: ``[N, C]`` class scores, ``[N, 4*(R+1)]`` logits, ``[N]`` centerness (or
    ``None``) with ``N = H*W*A`` in prior order."""
    cls = outputs.cls_scores[level][i].permute(1, 2, 0).reshape(-1, num_classes).sigmoid()
    reg = outputs.bbox_preds[level][i].permute(1, 2, 0).reshape(-1, 4 * (reg_max + 1))
    ctr = None
    if outputs.centernesses:
        ctr = outputs.centernesses[level][i].permute(1, 2, 0).reshape(-1).sigmoid()
        ctr = ctr.repeat_interleave(cls.shape[0] // ctr.shape[0])
    return cls, reg, ctr


def family_postprocess(
    outputs: FamilyOutputs,
    centres_per_level: list[Tensor],
    strides: list[int],
    metas: list[ImageMeta],
    integral: Integral,
    num_classes: int,
    cfg: PostProcessConfig,
    rescale: bool = True,
    order: PostProcessOrder = "original",
) -> list[Detections]:
    """Detections per image.

    Args:
        outputs: float32 raw head outputs.
        centres_per_level: ``[H_l*W_l*A, 2]`` prior centres in pixels (anchor centres, or FCOS points).
        order: ``original`` or ``mmdet3`` (module docstring).
    """
    results = []
    for i, meta in enumerate(metas):
        boxes_l, scores_l, labels_l, factors_l = [], [], [], []
        for level, (centres, stride) in enumerate(zip(centres_per_level, strides)):
            cls, reg, ctr = _level_maps(outputs, i, level, num_classes, integral.reg_max)
            if order == "original":
                rank = (cls * ctr[:, None] if ctr is not None else cls).max(dim=1).values
                if rank.shape[0] > cfg.nms_pre:
                    idx = rank.topk(cfg.nms_pre).indices
                    cls, reg, centres = cls[idx], reg[idx], centres[idx]
                    ctr = ctr[idx] if ctr is not None else None
                boxes = distance2bbox(centres, integral(reg) * stride, max_shape=meta.img_shape)
                boxes_l.append(boxes)
                scores_l.append(cls)
                factors_l.append(ctr if ctr is not None else cls.new_ones(cls.shape[0]))
            else:
                keep = cls > cfg.score_thr
                flat = cls[keep]
                pairs = keep.nonzero()
                flat, sort = flat.sort(descending=True)
                flat, sort = flat[: cfg.nms_pre], sort[: cfg.nms_pre]
                prior, labels = pairs[sort].unbind(dim=1)
                dist = (integral(reg) * stride)[prior]
                boxes_l.append(distance2bbox(centres[prior], dist, max_shape=meta.img_shape))
                scores_l.append(flat)
                labels_l.append(labels)
                factors_l.append(ctr[prior] if ctr is not None else flat.new_ones(flat.shape[0]))
        boxes, factors = torch.cat(boxes_l), torch.cat(factors_l)
        if rescale:
            w_scale, h_scale = meta.scale_factor
            boxes = boxes / boxes.new_tensor([w_scale, h_scale, w_scale, h_scale])
        if order == "original":
            cls = torch.cat(scores_l)
            keep = cls > cfg.score_thr
            prior, labels = keep.nonzero().unbind(dim=1)
            boxes, scores = boxes[prior], cls[keep] * factors[prior]
        else:
            scores, labels = torch.cat(scores_l) * factors, torch.cat(labels_l)
        nonzero = (boxes[:, 2] - boxes[:, 0] > 0) & (boxes[:, 3] - boxes[:, 1] > 0)
        boxes, scores, labels = boxes[nonzero], scores[nonzero], labels[nonzero]
        if cfg.nms_type is not None and boxes.numel() > 0:
            boxes, scores, labels = multiclass_nms(
                boxes, scores, labels, cfg.nms_type, cfg.iou_threshold, cfg.max_per_img
            )
        results.append(Detections(boxes.float(), scores.float(), labels.long()))
    return results
