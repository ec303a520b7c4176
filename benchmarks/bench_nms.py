"""Benchmark of the post-processing NMS variants on GFL-like pre-NMS candidates.

Compared, per number of candidates (default 1k, 5k, 20k):

* ``nms``: greedy class-aware IoU NMS (``locdistill.models.nms.batched_nms``, torchvision) + top 100.
* ``voting_cluster_diou``: Score-voting Cluster-DIoU-NMS (``score_voting_cluster_diou_nms``).
* ``naive_score_voting``: the straightforward score voting, as mmdetection's original one (PAA):
  greedy NMS, top 100, then a Python loop over the kept boxes, each voting over the candidates of
  its class with ``IoU > 0.7``, weight ``exp(-(1 - IoU)^2 / 0.025) * score``.
* ``dense_cluster_reference`` (up to ``--dense-max`` candidates): the LD repository's dense form,
  re-expressed: full ``N x N`` DIoU matrix on class-shifted boxes, dense Cluster-NMS rounds, dense
  voting by a matrix product.

Candidates imitate GFL's pre-NMS layout for one 800x1333 image: about 100 objects of 80 classes
(Zipf-distributed classes, log-uniform sizes), per level (strides 8..128) (anchor, class) pairs whose
box is the object's box plus noise that shrinks with quality, confusable classes at lower score,
low-score background clutter, score > 0.05, and the top ``N / 5`` pairs kept per level.

Usage: ``python benchmarks/bench_nms.py --out results.json [--sizes 1000 5000 20000] [--repeats 7]``.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import time_call, time_interleaved, write_results  # noqa: E402

from locdistill.models.cluster_nms import score_voting_cluster_diou_nms  # noqa: E402
from locdistill.models.nms import batched_nms  # noqa: E402

STRIDES = (8, 16, 32, 64, 128)


def gfl_like_candidates(
    num_candidates: int,
    num_objects: int = 100,
    num_classes: int = 80,
    image_hw: tuple[int, int] = (800, 1333),
    seed: int = 0,
) -> tuple[Tensor, Tensor, Tensor]:
    """Synthetic pre-NMS candidates of one image: ``boxes [N, 4]``, ``scores [N]``, ``labels [N]``.

    ``N <= num_candidates``; each level contributes its top ``num_candidates // 5`` pairs.
    """
    g = torch.Generator().manual_seed(seed)
    h_img, w_img = image_hw
    nms_pre = num_candidates // len(STRIDES)

    def rand(*shape: int) -> Tensor:
        return torch.rand(*shape, generator=g)

    def randn(*shape: int) -> Tensor:
        return torch.randn(*shape, generator=g)

    size = torch.exp(math.log(12) + rand(num_objects) * math.log(600 / 12))
    aspect = torch.exp(randn(num_objects) * 0.4)
    ow, oh = size * aspect.sqrt(), size / aspect.sqrt()
    cx, cy = rand(num_objects) * w_img, rand(num_objects) * h_img
    obj = torch.stack([cx - ow / 2, cy - oh / 2, cx + ow / 2, cy + oh / 2], 1)
    zipf = 1.0 / torch.arange(1, num_classes + 1, dtype=torch.float32)
    obj_cls = torch.multinomial(zipf / zipf.sum(), num_objects, replacement=True, generator=g)
    confusers = torch.randint(0, num_classes, (num_objects, 2), generator=g)

    all_boxes, all_scores, all_labels = [], [], []
    for stride in STRIDES:
        ys, xs = torch.meshgrid(
            torch.arange(math.ceil(h_img / stride)), torch.arange(math.ceil(w_img / stride)), indexing="ij"
        )
        ax, ay = (xs.reshape(-1) * stride).float(), (ys.reshape(-1) * stride).float()
        # Level fitness: best when the object is about the anchor side 8 * stride.
        fit = torch.exp(-((torch.log2(size / (8 * stride))) ** 2) / 0.8)
        inside = (
            (ax[:, None] > obj[None, :, 0])
            & (ax[:, None] < obj[None, :, 2])
            & (ay[:, None] > obj[None, :, 1])
            & (ay[:, None] < obj[None, :, 3])
        )
        # centre-ness of the anchor inside the object, times the level fitness
        l, t = ax[:, None] - obj[None, :, 0], ay[:, None] - obj[None, :, 1]
        r, b = obj[None, :, 2] - ax[:, None], obj[None, :, 3] - ay[:, None]
        ctr = (torch.minimum(l, r) / torch.maximum(l, r).clamp(min=1e-6)).clamp(min=0) * (
            torch.minimum(t, b) / torch.maximum(t, b).clamp(min=1e-6)
        ).clamp(min=0)
        q = torch.where(inside, ctr.sqrt() * fit[None, :], torch.zeros(()))
        best_q, best_o = q.max(dim=1)
        a_idx = (best_q > 0.02).nonzero().squeeze(1)
        o = best_o[a_idx]
        qa = best_q[a_idx] * (0.6 + 0.4 * rand(a_idx.numel()))
        noise = randn(a_idx.numel(), 4) * (1.2 - qa)[:, None] * 0.12 * size[o, None]
        boxes = obj[o] + noise
        # the object's class, plus two confusable classes at a lower score
        s_true = qa * 0.9
        s_conf = qa[:, None] * (0.05 + 0.3 * rand(a_idx.numel(), 2))
        lvl_boxes = [boxes, boxes, boxes]
        lvl_scores = [s_true, s_conf[:, 0], s_conf[:, 1]]
        lvl_labels = [obj_cls[o], confusers[o, 0], confusers[o, 1]]
        # background clutter: random anchors and classes, low scores
        n_bg = 2 * nms_pre
        bg_a = torch.randint(0, ax.numel(), (n_bg,), generator=g)
        half = 4 * stride * torch.exp(randn(n_bg, 2) * 0.4)
        bx, by = ax[bg_a], ay[bg_a]
        lvl_boxes.append(torch.stack([bx - half[:, 0], by - half[:, 1], bx + half[:, 0], by + half[:, 1]], 1))
        lvl_scores.append(0.04 + 0.08 * rand(n_bg) ** 2)
        lvl_labels.append(torch.randint(0, num_classes, (n_bg,), generator=g))
        bx_ = torch.cat(lvl_boxes)
        sc_ = torch.cat(lvl_scores)
        lb_ = torch.cat(lvl_labels)
        keep = sc_ > 0.05
        bx_, sc_, lb_ = bx_[keep], sc_[keep], lb_[keep]
        top = sc_.argsort(descending=True)[:nms_pre]
        bx_, sc_, lb_ = bx_[top], sc_[top], lb_[top]
        # clip to the image, drop empty boxes (as the post-processing does)
        bx_ = torch.stack(
            [
                bx_[:, 0].clamp(0, w_img),
                bx_[:, 1].clamp(0, h_img),
                bx_[:, 2].clamp(0, w_img),
                bx_[:, 3].clamp(0, h_img),
            ],
            1,
        )
        ok = (bx_[:, 2] > bx_[:, 0]) & (bx_[:, 3] > bx_[:, 1])
        all_boxes.append(bx_[ok])
        all_scores.append(sc_[ok])
        all_labels.append(lb_[ok])
    return torch.cat(all_boxes), torch.cat(all_scores), torch.cat(all_labels)


def plain_nms(
    boxes: Tensor, scores: Tensor, labels: Tensor, max_per_img: int = 100
) -> tuple[Tensor, Tensor, Tensor]:
    keep = batched_nms(boxes, scores, labels, 0.6)[:max_per_img]
    return boxes[keep], scores[keep], labels[keep]


def naive_score_voting(
    boxes: Tensor,
    scores: Tensor,
    labels: Tensor,
    max_per_img: int = 100,
    vote_thr: float = 0.7,
    sigma: float = 0.025,
) -> tuple[Tensor, Tensor, Tensor]:
    """Greedy NMS, then one weighted vote per kept box (a Python loop), as mmdetection's score voting."""
    keep = batched_nms(boxes, scores, labels, 0.6)[:max_per_img]
    voted = []
    for k in keep.tolist():
        same = labels == labels[k]
        cand, cand_s = boxes[same], scores[same]
        lt = torch.maximum(cand[:, :2], boxes[k, :2])
        rb = torch.minimum(cand[:, 2:], boxes[k, 2:])
        wh = (rb - lt).clamp(min=0)
        inter = wh[:, 0] * wh[:, 1]
        area = (cand[:, 2] - cand[:, 0]) * (cand[:, 3] - cand[:, 1])
        area_k = (boxes[k, 2] - boxes[k, 0]) * (boxes[k, 3] - boxes[k, 1])
        iou = inter / (area + area_k - inter)
        sel = iou > vote_thr
        w = torch.exp(-((1 - iou[sel]) ** 2) / sigma) * cand_s[sel]
        voted.append((w[:, None] * cand[sel]).sum(0) / w.sum())
    out = torch.stack(voted) if voted else boxes.new_zeros((0, 4))
    return out, scores[keep], labels[keep]


def dense_cluster_reference(
    boxes: Tensor, scores: Tensor, labels: Tensor, max_per_img: int = 100, thr: float = 0.6
) -> tuple[Tensor, Tensor, Tensor]:
    """The LD repository's dense formulation (full N x N DIoU matrix), re-expressed for timing."""
    s, idx = scores.sort(descending=True)
    b, lab = boxes[idx], labels[idx]
    box = b + lab[:, None].to(b.dtype) * 4000
    b1, b2 = box[:, None], box[None]
    w = (torch.minimum(b1[..., 2], b2[..., 2]) - torch.maximum(b1[..., 0], b2[..., 0])).clamp(min=0)
    h = (torch.minimum(b1[..., 3], b2[..., 3]) - torch.maximum(b1[..., 1], b2[..., 1])).clamp(min=0)
    inter = w * h
    area = (box[:, 2] - box[:, 0]) * (box[:, 3] - box[:, 1])
    cx, cy = (box[:, 0] + box[:, 2]) / 2, (box[:, 1] + box[:, 3]) / 2
    cw = torch.maximum(b1[..., 2], b2[..., 2]) - torch.minimum(b1[..., 0], b2[..., 0])
    ch = torch.maximum(b1[..., 3], b2[..., 3]) - torch.minimum(b1[..., 1], b2[..., 1])
    pen = ((cx[None] - cx[:, None]) ** 2 + (cy[None] - cy[:, None]) ** 2) / (cw**2 + ch**2 + 1e-7)
    m = inter / (area[:, None] + area[None] - inter) - pen**0.8
    u = m.triu(1)
    cur = u
    for _ in range(len(s)):
        prev = cur
        keep = prev.max(dim=0).values <= thr
        cur = u * keep[:, None]
        if torch.equal(prev, cur):
            break
    vm = m.triu() * keep[:, None]
    wts = torch.exp(-((1 - vm * (vm > 0.7)) ** 2) / 0.025) * s[None]
    voted = (wts @ b) / wts.sum(1, keepdim=True)
    return voted[keep][:max_per_img], s[keep][:max_per_img], lab[keep][:max_per_img]


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=None, help="JSON results file")
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 5000, 20000])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seeds", type=int, default=3, help="images (generator seeds) per size")
    ap.add_argument("--dense-max", type=int, default=5000, help="largest N for the dense reference form")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    cuda = device.type == "cuda"

    methods = {
        "nms": plain_nms,
        "voting_cluster_diou": lambda b, s, lab: score_voting_cluster_diou_nms(b, s, lab, 0.6, 100),
        "naive_score_voting": naive_score_voting,
        "dense_cluster_reference": dense_cluster_reference,
    }
    results = []
    for n in args.sizes:
        row: dict[str, Any] = {"target_candidates": n, "images": []}
        per_method: dict[str, list[float]] = {m: [] for m in methods}
        per_method_min: dict[str, list[float]] = {m: [] for m in methods}
        for seed in range(args.seeds):
            boxes, scores, labels = (t.to(device) for t in gfl_like_candidates(n, seed=seed))
            counts = torch.bincount(labels.cpu(), minlength=80)
            img: dict[str, Any] = {
                "seed": seed,
                "candidates": int(boxes.shape[0]),
                "classes_present": int((counts > 0).sum()),
                "largest_class": int(counts.max()),
            }
            fast = {
                name: partial(fn, boxes, scores, labels)
                for name, fn in methods.items()
                if name != "dense_cluster_reference"
            }
            timed = time_interleaved(fast, args.repeats, warmup=1, cuda=cuda)
            if boxes.shape[0] <= args.dense_max:
                dense = partial(dense_cluster_reference, boxes, scores, labels)
                timed["dense_cluster_reference"] = time_call(dense, min(args.repeats, 3), warmup=0, cuda=cuda)
            for name, t in timed.items():
                img[name + "_ms"] = round(t["median_s"] * 1e3, 3)
                img[name + "_min_ms"] = round(t["min_s"] * 1e3, 3)
                per_method[name].append(t["median_s"])
                per_method_min[name].append(t["min_s"])
            row["images"].append(img)
        for name, ts in per_method.items():
            if ts:
                row[name + "_ms"] = round(statistics.median(ts) * 1e3, 3)
                row[name + "_min_ms"] = round(statistics.median(per_method_min[name]) * 1e3, 3)
        row["voting_cluster_diou_over_nms"] = round(row["voting_cluster_diou_ms"] / row["nms_ms"], 3)
        row["voting_cluster_diou_over_naive"] = round(
            row["voting_cluster_diou_ms"] / row["naive_score_voting_ms"], 3
        )
        # The project's targets (issue): at 5k candidates at most 2x plain NMS; faster than the
        # straightforward score voting.
        row["within_2x_nms"] = row["voting_cluster_diou_over_nms"] <= 2.0
        row["faster_than_naive_voting"] = row["voting_cluster_diou_over_naive"] < 1.0
        results.append(row)
    return write_results(
        args.out,
        "bench_nms",
        results,
        settings={
            "repeats": args.repeats,
            "threads": args.threads,
            "seeds": args.seeds,
            "device": str(device),
            "statistic": "per image: median (and min) over interleaved repeats; row: median over images",
        },
    )


if __name__ == "__main__":
    main()
