"""The ATSS threshold of each GT, on its own: for assigners that are not ATSS but whose second LD region
(the VLR) needs it (RetinaGFL's ``LDRetinaHead`` computes it the ATSS way over its 9 anchors per cell)."""

from __future__ import annotations

import torch
from torch import Tensor

from locdistill.ops.box_ops import box_centers


def atss_threshold(
    anchors: Tensor, num_level_anchors: list[int], gt_boxes: Tensor, overlaps: Tensor, topk: int = 9
) -> Tensor:
    """``[G]`` mean + unbiased std of the IoUs of each GT's candidates: on every level the ``topk``
    anchors whose centres are nearest the GT centre (L2, first on ties as ``torch.topk``).

    Args:
        anchors: ``[V, 4]`` levels concatenated (``num_level_anchors`` per level); gt_boxes: ``[G, 4]``;
        overlaps: ``[V, G]`` anchor-to-GT IoU.
    """
    diff = box_centers(anchors)[:, None, :] - box_centers(gt_boxes)[None, :, :]
    distances = diff.pow(2).sum(-1).sqrt()  # as the ATSS assigner (cdist's matmul path would reorder ties)
    candidates, start = [], 0
    for n in num_level_anchors:
        k = min(topk, n)
        if k > 0:
            candidates.append(distances[start : start + n].topk(k, dim=0, largest=False).indices + start)
        start += n
    cand = overlaps.gather(0, torch.cat(candidates))
    return cand.mean(0) + cand.std(0)
