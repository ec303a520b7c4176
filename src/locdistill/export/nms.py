"""GFL post-processing and NMS for export: batched, fixed shapes, matrix operations only.

The same result as :meth:`GFL.predict` with ``rescale=False`` (:mod:`locdistill.models.postprocess` and
:mod:`locdistill.models.nms`), written so that the TorchScript ONNX exporter can trace it for any batch
size: no Python loop over images or boxes, no data-dependent shapes.

1. Candidates: per level the top ``min(nms_pre, anchors * classes)`` (anchor, class) pairs by score;
   a pair is *valid* when its score is above ``score_thr`` and its box has positive width and height
   (``predict`` drops the others). All ``N`` candidates of an image are sorted by score, invalid last.
2. Suppression on the top ``P = min(nms_topk, N)`` candidates: ``S[i, j]`` is true when ``i`` ranks
   before ``j``, both are valid, of one class, and ``IoU(i, j) > thr`` (``nms``) or
   ``DIoU(i, j) > thr`` (``voting_cluster_diou``, DIoU penalty exponent 0.8). Cluster-NMS rounds
   ``keep = valid and not any_i (keep[i] and S[i, j])`` from ``keep = valid``, ``nms_iters`` times.
   Box ``j`` depends only on boxes before it, and the fixed point is exactly greedy NMS (resp. greedy
   DIoU-NMS), which ``predict`` computes; a suppression chain longer than ``nms_iters`` (never seen on
   real outputs; :func:`cluster_keep` reports it) would be cut short.
3. The first ``D = max_per_img`` kept boxes, padded: ``boxes [B, D, 4]``, ``scores [B, D]``,
   ``labels [B, D]`` (``-1`` in padding) and ``num_dets [B]``.
4. Score voting (``voting_cluster_diou``): each kept box ``i`` becomes the weighted mean of itself
   (weight ``score_i``) and every valid lower-ranked candidate ``j`` of its class among *all* ``N``
   (suppressed or not, inside the top ``P`` or not) with ``DIoU(i, j) > 0.7``, weight
   ``exp(-(1 - DIoU)^2 / 0.025) * score_j``; scores and labels unchanged.

``predict`` decides suppression on a prefix of the score order that it grows until it holds
``max_per_img`` kept boxes; here the prefix is fixed at ``nms_topk`` (default 1000, where the 100th kept
box of a GFL image lies far inside). The export's parity check compares both on real outputs.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from locdistill.ops.box_ops import distance2bbox
from locdistill.ops.diou import iou_and_diou

EXPORTABLE_NMS_TYPES = ("nms", "voting_cluster_diou")
DIOU_BETA = 0.8  # as models.nms.score_voting_cluster_diou_nms
VOTE_THRESHOLD = 0.7
VOTE_SIGMA = 0.025


def pairwise_iou_diou(a: Tensor, b: Tensor, beta: float = DIOU_BETA) -> tuple[Tensor, Tensor]:
    """IoU and DIoU (:func:`locdistill.ops.diou.iou_and_diou`) of every pair: ``a [B, P, 4]``,
    ``b [B, Q, 4]`` (xyxy) -> two ``[B, P, Q]``."""
    return iou_and_diou(a[:, :, None, :], b[:, None, :, :], beta)


def _gather_rows(x: Tensor, index: Tensor) -> Tensor:
    """``x [B, N, K]``, ``index [B, M]`` -> ``[B, M, K]``; ``x [B, N]`` -> ``[B, M]``."""
    if x.dim() == 2:
        return torch.gather(x, 1, index)
    return torch.gather(x, 1, index.unsqueeze(-1).expand(-1, -1, x.shape[-1]))


def cluster_keep(suppress: Tensor, valid: Tensor, iters: int) -> tuple[Tensor, Tensor]:
    """Cluster-NMS rounds: ``suppress [B, P, P]`` bool (row suppresses column, rows rank first),
    ``valid [B, P]`` bool -> ``(keep [B, P] bool, converged [B] bool)`` after ``iters`` rounds;
    ``converged`` says whether one more round would change nothing (i.e. ``keep`` is greedy NMS)."""
    s = suppress.to(torch.float32)
    keep = valid
    for _ in range(iters):
        hits = torch.matmul(keep.to(torch.float32).unsqueeze(1), s).squeeze(1)
        keep = valid & (hits == 0)
    hits = torch.matmul(keep.to(torch.float32).unsqueeze(1), s).squeeze(1)
    return keep, ((valid & (hits == 0)) == keep).all(dim=1)


class ExportPostprocess(nn.Module):
    """Per-anchor ``boxes [B, A, 4]`` (input pixels) and ``scores [B, A, C]`` -> padded detections.

    Args:
        level_sizes: anchors per level, in the order of the anchor axis.
        nms_type: ``nms`` or ``voting_cluster_diou`` (anything else is refused).
        score_thr / nms_pre / iou_threshold / max_per_img: the model's test settings.
        nms_topk: candidates (best first) on which suppression is decided.
        nms_iters: Cluster-NMS rounds.

    ``forward`` returns ``(boxes [B, D, 4], scores [B, D], labels [B, D] int64, num_dets [B] int64)``,
    ``D = max_per_img`` (or the suppression prefix when ``max_per_img <= 0``), best first, padded with
    zeros and label ``-1``.
    """

    def __init__(
        self,
        level_sizes: list[int],
        num_classes: int,
        nms_type: str,
        score_thr: float,
        nms_pre: int,
        iou_threshold: float,
        max_per_img: int,
        nms_topk: int = 1000,
        nms_iters: int = 32,
    ) -> None:
        super().__init__()
        if nms_type not in EXPORTABLE_NMS_TYPES:
            raise ValueError(
                f"model.test.nms.type {nms_type!r} cannot be exported with --with-nms "
                f"(exportable: {', '.join(EXPORTABLE_NMS_TYPES)}); export without --with-nms instead"
            )
        self.level_sizes = list(level_sizes)
        self.num_classes = num_classes
        self.nms_type = nms_type
        self.score_thr = float(score_thr)
        self.iou_threshold = float(iou_threshold)
        self.per_level = [min(nms_pre, n * num_classes) for n in self.level_sizes]
        self.num_candidates = sum(self.per_level)
        self.prefix = min(nms_topk, self.num_candidates)
        self.max_det = min(max_per_img, self.prefix) if max_per_img > 0 else self.prefix
        self.nms_iters = nms_iters
        self.converged: Tensor | None = None  # [B] of the last forward, for the export's parity check

    def candidates(self, boxes: Tensor, scores: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """``(boxes [B, N, 4], scores [B, N], labels [B, N], valid [B, N])`` sorted by score, invalid last."""
        c = self.num_classes
        out_b, out_s, out_l = [], [], []
        start = 0
        for n, k in zip(self.level_sizes, self.per_level):
            top, idx = scores[:, start : start + n].flatten(1).topk(k, dim=1)
            anchor = torch.div(idx, c, rounding_mode="floor")
            out_b.append(_gather_rows(boxes[:, start : start + n], anchor))
            out_s.append(top)
            out_l.append(idx - anchor * c)
            start += n
        b, s, lab = torch.cat(out_b, 1), torch.cat(out_s, 1), torch.cat(out_l, 1)
        valid = (s > self.score_thr) & (b[..., 2] > b[..., 0]) & (b[..., 3] > b[..., 1])
        ranked, order = torch.where(valid, s, torch.full_like(s, -1.0)).topk(self.num_candidates, dim=1)
        return _gather_rows(b, order), _gather_rows(s, order), _gather_rows(lab, order), ranked > -1.0

    def forward(self, boxes: Tensor, scores: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        b, s, lab, valid = self.candidates(boxes, scores)
        p = self.prefix
        bp, lp, vp = b[:, :p], lab[:, :p], valid[:, :p]
        iou, diou = pairwise_iou_diou(bp, bp)
        overlap = iou if self.nms_type == "nms" else diou
        rank = torch.arange(p, device=b.device)
        before = rank[:, None] < rank[None, :]
        same = (lp[:, :, None] == lp[:, None, :]) & vp[:, :, None] & vp[:, None, :]
        keep, self.converged = cluster_keep(
            (overlap > self.iou_threshold) & before & same, vp, self.nms_iters
        )

        # the first max_det kept boxes, best first: the largest (p - rank) among the kept
        priority = torch.where(keep, (p - rank).to(torch.float32), torch.zeros_like(bp[..., 0]))
        top, slot = priority.topk(self.max_det, dim=1)
        found = top > 0
        out_boxes = _gather_rows(bp, slot)
        out_scores = _gather_rows(s[:, :p], slot)
        out_labels = _gather_rows(lp, slot)
        if self.nms_type == "voting_cluster_diou":
            out_boxes = self._vote(out_boxes, out_scores, out_labels, slot, b, s, lab, valid)
        zero = torch.zeros_like(out_scores)
        return (
            torch.where(found.unsqueeze(-1), out_boxes, zero.unsqueeze(-1)),
            torch.where(found, out_scores, zero),
            torch.where(found, out_labels, torch.full_like(out_labels, -1)),
            found.to(torch.int64).sum(dim=1),
        )

    def _vote(
        self,
        kept_boxes: Tensor,
        kept_scores: Tensor,
        kept_labels: Tensor,
        kept_rank: Tensor,
        boxes: Tensor,
        scores: Tensor,
        labels: Tensor,
        valid: Tensor,
    ) -> Tensor:
        """Score voting of ``kept_* [B, D]`` (ranks ``kept_rank``) over all candidates ``[B, N]``."""
        _, diou = pairwise_iou_diou(kept_boxes, boxes)
        rank = torch.arange(self.num_candidates, device=boxes.device)
        voter = (
            (diou > VOTE_THRESHOLD)
            & (rank[None, None, :] > kept_rank[:, :, None])
            & (labels[:, None, :] == kept_labels[:, :, None])
            & valid[:, None, :]
        )
        weight = torch.exp(-((1.0 - diou) ** 2) / VOTE_SIGMA) * scores[:, None, :]
        weight = torch.where(voter, weight, torch.zeros_like(weight))
        num = kept_boxes * kept_scores.unsqueeze(-1) + torch.matmul(weight, boxes)
        den = kept_scores + weight.sum(dim=2)
        return num / den.clamp(min=torch.finfo(torch.float32).tiny).unsqueeze(-1)


def decode(centers: Tensor, strides: Tensor, distances: Tensor, img_size: tuple[int, int]) -> Tensor:
    """Distances ``[B, A, 4]`` (stride units) from anchor centres ``[A, 2]`` -> boxes ``[B, A, 4]``
    clipped to ``img_size``."""
    return distance2bbox(centers[None], distances * strides[None, :, None], max_shape=img_size)
