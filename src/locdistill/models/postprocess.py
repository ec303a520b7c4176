"""GFL inference post-processing, exactly as mmdetection's ``GFLHead.predict_by_feat``.

Per image and level: keep the (anchor, class) *pairs* with score > ``score_thr``, the top ``nms_pre``
pairs by score; decode ``Integral * stride`` from the anchor centre; clip to the image's own
``img_shape``. Then for the image: concatenate levels, optionally rescale to the original image, drop
boxes of zero width or height, class-aware NMS, keep ``max_per_img``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from locdistill.models.heads.outputs import HeadOutputs
from locdistill.models.integral import Integral
from locdistill.models.nms import multiclass_nms
from locdistill.ops.box_ops import box_centers, distance2bbox
from locdistill.structures import Detections, ImageMeta


@dataclass
class PostProcessConfig:
    """``nms_type``: ``nms`` or ``voting_cluster_diou``; ``nms_type=None`` returns the pre-NMS candidates."""

    score_thr: float = 0.05
    nms_pre: int = 1000
    nms_type: str | None = "nms"
    iou_threshold: float = 0.6
    max_per_img: int = 100


def level_candidates(
    cls_score: Tensor,
    bbox_pred: Tensor,
    anchors: Tensor,
    stride: int,
    integral: Integral,
    img_shape: tuple[int, int],
    score_thr: float,
    nms_pre: int,
) -> tuple[Tensor, Tensor, Tensor]:
    """Candidates of one image on one level.

    Args:
        cls_score: ``[C, H, W]`` logits; bbox_pred: ``[4*(R+1), H, W]``; anchors: ``[H*W, 4]`` pixels.
        img_shape: ``(h, w)`` to clip to.

    Returns:
        boxes ``[k, 4]`` pixels, scores ``[k]``, labels ``[k]`` with ``k <= nms_pre``, by descending score.
    """
    num_classes = cls_score.shape[0]
    scores = cls_score.permute(1, 2, 0).reshape(-1, num_classes).sigmoid()
    keep = scores > score_thr
    flat_scores = scores[keep]
    pairs = keep.nonzero()
    flat_scores, order = flat_scores.sort(descending=True)
    flat_scores, order = flat_scores[:nms_pre], order[:nms_pre]
    anchor_idx, labels = pairs[order].unbind(dim=1)
    # The integral runs over the whole level before selection, as mmdetection does: the matmul then
    # rounds identically (selecting first changes the last bit of a few distances).
    dist = (integral(bbox_pred.permute(1, 2, 0).reshape(-1, bbox_pred.shape[0])) * stride)[anchor_idx]
    boxes = distance2bbox(box_centers(anchors[anchor_idx]), dist, max_shape=img_shape)
    return boxes, flat_scores, labels


def postprocess(
    outputs: HeadOutputs,
    anchors_per_level: list[Tensor],
    strides: list[int],
    metas: list[ImageMeta],
    integral: Integral,
    cfg: PostProcessConfig,
    rescale: bool = True,
) -> list[Detections]:
    """Turn raw head outputs into detections, one :class:`Detections` per image.

    With ``rescale`` the boxes are divided by each image's ``scale_factor`` (original-image pixels).
    """
    results = []
    for i, meta in enumerate(metas):
        per_level = [
            level_candidates(c[i], r[i], a, s, integral, meta.img_shape, cfg.score_thr, cfg.nms_pre)
            for c, r, a, s in zip(outputs.cls_scores, outputs.bbox_preds, anchors_per_level, strides)
        ]
        boxes = torch.cat([p[0] for p in per_level])
        scores = torch.cat([p[1] for p in per_level])
        labels = torch.cat([p[2] for p in per_level])
        if rescale:
            w_scale, h_scale = meta.scale_factor
            boxes = boxes / boxes.new_tensor([w_scale, h_scale, w_scale, h_scale])
        nonzero = (boxes[:, 2] - boxes[:, 0] > 0) & (boxes[:, 3] - boxes[:, 1] > 0)
        if not bool(nonzero.all()):
            boxes, scores, labels = boxes[nonzero], scores[nonzero], labels[nonzero]
        if cfg.nms_type is not None and boxes.numel() > 0:
            boxes, scores, labels = multiclass_nms(
                boxes, scores, labels, cfg.nms_type, cfg.iou_threshold, cfg.max_per_img
            )
        results.append(Detections(boxes.float(), scores.float(), labels.long()))
    return results
