"""Score-voting Cluster-DIoU-NMS (the LD repository's ``voting_cluster_diounms``), pure torch.

Definition (``docs/nms.md`` derives it from the reference code and explains the implementation):
sort by descending score; classes never interact; ``M[i, j] = DIoU(i, j)`` with penalty exponent
``beta = 0.8``; Cluster-NMS rounds on ``triu(M, 1)`` until nothing changes (exactly greedy DIoU-NMS);
then each kept box becomes the weighted mean of itself and the lower-ranked boxes of its class with
``DIoU > 0.7``, weight ``exp(-(1 - DIoU)^2 / 0.025) * score``; keep the first ``max_per_img``.

Fast and memory-bounded: same-class close pairs are found by a sweep along x (:class:`_Sweep`) with a
provable search radius instead of the dense ``N x N`` matrix; suppression runs on a growing prefix of
the score order; voting searches only around the output boxes.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from locdistill.ops.diou import iou_and_diou

__all__ = ["score_voting_cluster_diou_nms"]


def _search_radius(widths: Tensor, min_iou: float, max_width: float) -> Tensor:
    """Largest centre offset along one axis that still allows ``IoU > min_iou``.

    For two boxes with ``IoU > t`` the overlap along x exceeds ``t * max(w_i, w_j)`` (because
    ``inter > t * area_i`` and the overlap along y is at most ``h_i``) and is at most
    ``(w_i + w_j) / 2 - |dx|``; hence ``w_j < w_i / t`` and
    ``|dx| < (w_i + w_j) / 2 - t * max(w_i, w_j) <= (1 - t) * w_i * max(1, 1 / (2 t))``.
    For ``t = 0`` the bound is ``(w_i + max_width) / 2``. ``[N] -> [N]``.
    """
    if min_iou > 0:
        radius = widths * ((1.0 - min_iou) * max(1.0, 0.5 / min_iou))
        radius = torch.minimum(radius, (widths + max_width) * 0.5)
    else:
        radius = (widths + max_width) * 0.5
    # relative and absolute slack so that float rounding can only add candidates, never lose one
    return radius * 1.001 + 1e-3


def _segment_ids(counts: Tensor, total: int) -> Tensor:
    """``[R]`` non-negative counts -> ``[total]`` the row of each element: the same as
    ``repeat_interleave(arange(R), counts)``, built from ``index_add_`` and ``cumsum`` (ops that do not
    open a parallel region on small inputs; a stalled parallel region costs a scheduler time slice
    on a busy machine)."""
    starts = torch.cumsum(counts, 0) - counts
    marks = torch.zeros(total + 1, dtype=torch.int64, device=counts.device)
    marks.index_add_(0, starts, torch.ones_like(starts))
    return torch.cumsum(marks[:total], 0) - 1


def _searchsorted(keys: Tensor, queries: Tensor, right: bool) -> Tensor:
    """``torch.searchsorted(keys, queries, right=right)`` for sorted 1-D ``keys``, by one stable sort
    of keys and queries together when there are many queries (same parallel-region concern)."""
    if queries.numel() <= 128:
        return torch.searchsorted(keys, queries, right=right)
    nk, nq = keys.numel(), queries.numel()
    # right: keys equal to a query count as before it (keys first); left: queries first
    merged = torch.cat([keys, queries]) if right else torch.cat([queries, keys])
    order = torch.sort(merged, stable=True).indices
    is_q = order >= nk if right else order < nq
    q_index = order - nk if right else order
    m = torch.arange(nk + nq, device=keys.device)
    keys_before = m - (torch.cumsum(is_q, 0) - is_q.long())
    sel = is_q.nonzero().squeeze(1)
    out = torch.empty(nq, dtype=torch.int64, device=keys.device)
    out.index_copy_(0, q_index.index_select(0, sel), keys_before.index_select(0, sel))
    return out


class _Sweep:
    """Boxes sorted by (class, centre x) with one monotone float64 key for all classes.

    ``perm[p]`` is the index (into the boxes given) of the box at sorted position ``p``; ``key[p]`` is
    ``class_rank * span + cx``, with ``span`` larger than the x range plus twice ``max_radius``, so
    that a window ``key +- radius`` never reaches into another class.
    """

    def __init__(self, boxes: Tensor, labels: Tensor, max_radius: float, min_iou: float) -> None:
        cx = (boxes[:, 0] + boxes[:, 2]) * 0.5
        by_x = torch.sort(cx, stable=True).indices
        self.perm = by_x.index_select(0, torch.sort(labels.index_select(0, by_x), stable=True).indices)
        cx_s = cx.index_select(0, self.perm).double()
        lab_s = labels.index_select(0, self.perm)
        span = float(cx_s.max() - cx_s.min()) + 2.0 * max_radius + 1.0
        self.key = (lab_s - lab_s[0]).double() * span + cx_s
        # rows (x1, y1, x2, y2, t * area) in sorted order, for the IoU prefilter
        bs = boxes.index_select(0, self.perm)
        area_t = (bs[:, 2] - bs[:, 0]) * (bs[:, 3] - bs[:, 1]) * min_iou
        self.packed = torch.cat([bs, area_t[:, None]], 1)


def _window_pairs(
    rows: Tensor,
    row_packed: Tensor,
    lo: Tensor,
    counts: Tensor,
    sweep: _Sweep,
    min_iou: float,
    max_pairs: int,
) -> tuple[Tensor, Tensor]:
    """Expand per-row windows of sorted positions and keep the pairs with ``IoU > min_iou``.

    Args:
        rows: ``[R]`` an id per row (returned for the surviving pairs).
        row_packed: ``[R, 5]`` the row boxes as in :attr:`_Sweep.packed`.
        lo / counts: ``[R]`` first sorted position and length of each row's window.
        max_pairs: largest number of candidates expanded at once (memory bound).

    Returns:
        ``(row_ids [P], cols [P])``: row ids and the box indices (``sweep.perm`` applied) of the pairs.
    """
    device = rows.device
    offsets = torch.cumsum(counts, 0)
    n = rows.shape[0]
    total = int(offsets[-1]) if n else 0
    out_r: list[Tensor] = []
    out_c: list[Tensor] = []
    row0 = 0
    while row0 < n and total > 0:
        base = int(offsets[row0 - 1]) if row0 > 0 else 0
        row1 = int(torch.searchsorted(offsets, torch.tensor(base + max_pairs, device=device), right=True))
        row1 = min(n, max(row1, row0 + 1))
        c = counts[row0:row1]
        num = int(offsets[row1 - 1]) - base
        seg = _segment_ids(c, num)
        local = seg + row0
        start = torch.cumsum(c, 0) - c
        dst = torch.arange(num, device=device) + (lo[row0:row1] - start).index_select(0, seg)
        pa = row_packed.index_select(0, local)
        pb = sweep.packed.index_select(0, dst)
        wh = torch.minimum(pa[:, 2:4], pb[:, 2:4]) - torch.maximum(pa[:, 0:2], pb[:, 0:2])
        inter = wh[:, 0].clamp_(min=0) * wh[:, 1]  # <= 0 when the boxes do not overlap
        # IoU > t  <=>  inter * (1 + t) > t * (area_a + area_b)
        close = (inter.mul_(1.0 + min_iou) > pa[:, 4] + pb[:, 4]).nonzero().squeeze(1)
        out_r.append(rows.index_select(0, local.index_select(0, close)))
        out_c.append(sweep.perm.index_select(0, dst.index_select(0, close)))
        row0 = row1
    if not out_r:
        empty = torch.zeros((0,), dtype=torch.int64, device=device)
        return empty, empty
    return torch.cat(out_r), torch.cat(out_c)


def _close_pairs(boxes: Tensor, labels: Tensor, min_iou: float, max_pairs: int) -> tuple[Tensor, Tensor]:
    """All same-class pairs whose IoU exceeds ``min_iou``: ``(i [P], j [P])`` with ``i < j``.

    A sweep along x: boxes sorted by (class, centre x); each box is compared only with the boxes
    after it, of its class, whose centre lies within :func:`_search_radius` of its own (a necessary
    condition for ``IoU > min_iou``), found with ``searchsorted``; candidates are then tested exactly.
    """
    n = boxes.shape[0]
    widths = boxes[:, 2] - boxes[:, 0]
    radius = _search_radius(widths, min_iou, float(widths.max())).double()
    sweep = _Sweep(boxes, labels, float(radius.max()), min_iou)
    pos = torch.arange(n, device=boxes.device)
    hi = _searchsorted(sweep.key, sweep.key + radius.index_select(0, sweep.perm), right=True)
    a, b = _window_pairs(sweep.perm, sweep.packed, pos + 1, hi - pos - 1, sweep, min_iou, max_pairs)
    return torch.minimum(a, b), torch.maximum(a, b)


def _cluster_keep(boxes: Tensor, labels: Tensor, iou_threshold: float, beta: float, max_pairs: int) -> Tensor:
    """Cluster-DIoU-NMS keep mask ``[N]`` of boxes sorted by descending score.

    Round t computes ``keep_t[j] = not any(keep_{t-1}[i] and DIoU(i, j) > thr for i < j of j's class)``
    from ``keep_0 = all``, until nothing changes: exactly the dense "column max of ``triu(M, 1)`` with
    the rows of dropped boxes zeroed ``<= thr``" rounds, run on the pairs above the threshold.
    """
    n = boxes.shape[0]
    device = boxes.device
    # DIoU <= IoU; the prefilter bound is lowered a little so that its rounding cannot drop a pair.
    prefilter = max(0.0, iou_threshold - 1e-4 * (1.0 + iou_threshold))
    ri, rj = _close_pairs(boxes, labels, prefilter, max_pairs)
    _, d = iou_and_diou(boxes.index_select(0, ri), boxes.index_select(0, rj), beta)
    sup = (d > iou_threshold).nonzero().squeeze(1)
    si, sj = ri.index_select(0, sup), rj.index_select(0, sup)
    keep = torch.ones(n, dtype=torch.bool, device=device)
    if si.numel():
        for _ in range(n):
            hits = torch.zeros(n, dtype=torch.int32, device=device)
            hits.index_add_(0, sj, keep.index_select(0, si).to(torch.int32))
            new_keep = hits == 0
            if torch.equal(new_keep, keep):
                break
            keep = new_keep
    return keep


def _vote_pairs(
    boxes: Tensor, labels: Tensor, kept: Tensor, vote_threshold: float, beta: float, max_pairs: int
) -> tuple[Tensor, Tensor, Tensor]:
    """Voters of the kept boxes: ``(slot [V], j [V], diou [V])`` with ``kept[slot] < j`` (lower rank),
    same class and ``DIoU(kept[slot], j) > vote_threshold``; boxes sorted by descending score."""
    prefilter = max(0.0, vote_threshold - 1e-4 * (1.0 + abs(vote_threshold)))
    widths = boxes[:, 2] - boxes[:, 0]
    radius = _search_radius(widths.index_select(0, kept), prefilter, float(widths.max())).double()
    sweep = _Sweep(boxes, labels, float(radius.max()), prefilter)
    position = torch.argsort(sweep.perm)  # sorted position of each box
    key = sweep.key.index_select(0, position.index_select(0, kept))
    lo = _searchsorted(sweep.key, key - radius, right=False)
    hi = _searchsorted(sweep.key, key + radius, right=True)
    slots = torch.arange(kept.numel(), device=boxes.device)
    row_packed = sweep.packed.index_select(0, position.index_select(0, kept))
    slot, j = _window_pairs(slots, row_packed, lo, hi - lo, sweep, prefilter, max_pairs)
    lower = (j > kept.index_select(0, slot)).nonzero().squeeze(1)  # also drops the box itself
    slot, j = slot.index_select(0, lower), j.index_select(0, lower)
    _, d = iou_and_diou(boxes.index_select(0, kept.index_select(0, slot)), boxes.index_select(0, j), beta)
    good = (d > vote_threshold).nonzero().squeeze(1)
    return slot.index_select(0, good), j.index_select(0, good), d.index_select(0, good)


def score_voting_cluster_diou_nms(
    boxes: Tensor,
    scores: Tensor,
    labels: Tensor,
    iou_threshold: float = 0.6,
    max_per_img: int = 100,
    diou_beta: float = 0.8,
    vote_threshold: float = 0.7,
    vote_sigma: float = 0.025,
    max_pairs: int = 6144,
    min_prefix: int = 1024,
) -> tuple[Tensor, Tensor, Tensor]:
    """Score-voting Cluster-DIoU-NMS (the LD repository's ``voting_cluster_diounms``).

    See the module docstring and ``docs/nms.md`` for the exact definition.

    Args:
        boxes: ``[N, 4]`` xyxy (positive width and height).
        scores: ``[N]``.
        labels: ``[N]`` int64; classes never suppress or vote for each other.
        iou_threshold: DIoU suppression threshold (drop when ``DIoU > iou_threshold``), ``>= 0``.
        max_per_img: number of kept boxes returned (highest scores); ``<= 0`` keeps all.
        diou_beta: exponent of the DIoU centre-distance penalty.
        vote_threshold: a lower-ranked box votes when its DIoU with the kept box is above this.
        vote_sigma: ``sigma`` of the vote weight ``exp(-(1 - DIoU)^2 / sigma) * score``.
        max_pairs: largest number of candidate pairs tested at once. Bounds the temporary memory;
            the default also keeps each op below ATen's parallelisation grain (32768 elements), which
            on a busy machine avoids OpenMP regions stalling for a scheduler time slice.
        min_prefix: first prefix of the score order on which suppression is decided (see below).

    Returns:
        ``(boxes [K, 4], scores [K], labels [K])``: the kept boxes after voting, by descending score,
        ``K <= max_per_img``; dtypes as the inputs.

    Whether a box is kept depends only on higher-scored boxes, so the first ``max_per_img`` kept boxes
    are decided by the shortest prefix of the score order that holds that many kept boxes: suppression
    runs on the top ``max(min_prefix, 8 * max_per_img)`` candidates, growing the prefix 4x until
    enough are kept (or all are used). Voting then searches all ``N`` candidates, for the output boxes
    only. Same result as processing everything, at a fraction of the cost for large ``N``.
    """
    if iou_threshold < 0:
        raise ValueError(f"iou_threshold must be >= 0, got {iou_threshold}")
    n = boxes.shape[0]
    if n == 0:
        return boxes.reshape(0, 4), scores.reshape(0), labels.reshape(0)
    order = torch.sort(scores, descending=True, stable=True).indices
    b = boxes.index_select(0, order).float()  # row r = the box of rank r (descending score)
    s = scores.index_select(0, order).float()
    lab = labels.index_select(0, order)

    prefix = n if max_per_img <= 0 else min(n, max(min_prefix, 8 * max_per_img))
    while True:
        kept = (
            _cluster_keep(b[:prefix], lab[:prefix], iou_threshold, diou_beta, max_pairs).nonzero().squeeze(1)
        )
        if prefix == n or kept.numel() >= max_per_img:
            break
        prefix = min(n, 4 * prefix)
    if max_per_img > 0:
        kept = kept[:max_per_img]  # ascending rank = descending score

    # Score voting of the kept boxes: lower-ranked boxes j of the class with DIoU(i, j) > vote_thr,
    # weight exp(-(1 - DIoU)^2 / sigma) * score_j; the box itself has DIoU 1 and weight score_i.
    slot, vj, vd = _vote_pairs(b, lab, kept, vote_threshold, diou_beta, max_pairs)
    # exp(x) as pow(e, x): torch.exp opens a parallel region already for ~1000 elements
    w = torch.pow(math.e, -((1.0 - vd) ** 2) / vote_sigma) * s.index_select(0, vj)
    s_kept = s.index_select(0, kept)
    num = b.index_select(0, kept) * s_kept[:, None]
    den = s_kept.clone()
    num.index_add_(0, slot, b.index_select(0, vj) * w[:, None])
    den.index_add_(0, slot, w)
    voted = num / den[:, None]
    return (
        voted.to(boxes.dtype),
        scores.index_select(0, order.index_select(0, kept)),
        lab.index_select(0, kept),
    )
