"""Post-processing NMS: greedy class-aware NMS and the dispatcher :func:`multiclass_nms`.

Per-image candidates are ``boxes [N, 4]`` (xyxy pixels), ``scores [N]``, ``labels [N]``.
:func:`batched_nms` is greedy NMS per class (``torchvision.ops.batched_nms``): a box is suppressed when
its IoU with a kept, higher-scored box of its class is *strictly* greater than the threshold, as in
mmcv and torchvision. The other rule, Score-voting Cluster-DIoU-NMS, is
:mod:`locdistill.models.cluster_nms`; ``docs/nms.md`` derives both.
"""

from __future__ import annotations

import torch
import torchvision
from torch import Tensor

from locdistill.models.cluster_nms import score_voting_cluster_diou_nms

__all__ = ["NMS_TYPES", "batched_nms", "multiclass_nms"]

NMS_TYPES = ("nms", "voting_cluster_diou")


def batched_nms(boxes: Tensor, scores: Tensor, labels: Tensor, iou_threshold: float) -> Tensor:
    """Greedy class-aware NMS.

    Args:
        boxes: ``[N, 4]`` xyxy.
        scores: ``[N]``.
        labels: ``[N]`` int64 class of each box; boxes of different classes never suppress each other.
        iou_threshold: a box is dropped when its IoU with a kept higher-scored box of its class is
            strictly greater than this.

    Returns:
        ``[K]`` int64 indices of the kept boxes, sorted by descending score.
    """
    if boxes.shape[0] == 0:
        return torch.zeros((0,), dtype=torch.int64, device=boxes.device)
    return torchvision.ops.batched_nms(boxes.float(), scores.float(), labels, float(iou_threshold))


def multiclass_nms(
    boxes: Tensor,
    scores: Tensor,
    labels: Tensor,
    cfg_type: str,
    iou_threshold: float,
    max_per_img: int,
) -> tuple[Tensor, Tensor, Tensor]:
    """Post-processing NMS dispatch.

    Args:
        boxes: ``[N, 4]``; scores: ``[N]``; labels: ``[N]``.
        cfg_type: ``"nms"`` (greedy class-aware IoU NMS) or ``"voting_cluster_diou"``
            (Score-voting Cluster-DIoU-NMS; ``"voting_cluster_diounms"``, the reference's name, works too).
        iou_threshold: suppression threshold.
        max_per_img: number of boxes kept (highest scores); ``<= 0`` keeps all.

    Returns:
        ``(boxes [K, 4], scores [K], labels [K])`` by descending score.
    """
    if cfg_type == "nms":
        keep = batched_nms(boxes, scores, labels, iou_threshold)
        if max_per_img > 0:
            keep = keep[:max_per_img]
        return boxes[keep], scores[keep], labels[keep]
    if cfg_type in ("voting_cluster_diou", "voting_cluster_diounms"):
        return score_voting_cluster_diou_nms(boxes, scores, labels, iou_threshold, max_per_img)
    raise ValueError(f"unknown NMS type {cfg_type!r}; expected one of {NMS_TYPES}")
