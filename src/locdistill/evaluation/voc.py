"""PASCAL VOC box evaluation, as the LD repository (mmdetection 2.10's ``eval_map``) computes it.

Per IoU threshold ``t`` and class:

* IoU of detections and ground truth as mmdetection 2.10's ``bbox_overlaps``: float32, widths
  ``x2 - x1`` (no ``+ 1``), union clamped to ``>= 1e-6``.
* Matching (``tpfp_default``), per image, detections by descending score: a detection's candidate is
  the ground-truth box of its class with the largest IoU (``difficult`` boxes included, normal boxes
  before difficult ones on ties). If that IoU is ``>= t``: a difficult candidate makes the detection
  neither TP nor FP; an unmatched normal candidate makes it a TP (and matched); an already matched one
  makes it a FP (the next-best box is *not* tried). If the IoU is ``< t`` (or the image has no box of
  the class) it is a FP.
* All detections of the class, by descending score: cumulative TP/FP, ``recall = TP / max(n_gt, eps)``
  (``n_gt`` counts non-difficult boxes), ``precision = TP / max(TP + FP, eps)``, eps = float32 eps.
* AP: ``11points`` (VOC2007, the LD VOC results) = mean over r in {0, 0.1, ..., 1} of the largest
  precision at recall ``>= r`` (0 if none); or ``area`` (VOC2010+) = area under the monotone precision
  envelope. Accumulated in float32 as mmdetection does.
* mAP = mean AP over the classes that have ground truth (float32 mean); 0 if none.

Over thresholds, as the LD fork's ``VOCDataset.evaluate``: thresholds start at 0.5 and grow by
repeated ``+= 0.05`` (so 0.6000000000000001, ..., 0.7500000000000002, ...; only an IoU of exactly
0.75, representable in float32, is affected: it does not reach the 7th threshold), ``mAP`` is the
value at 0.5, ``AP`` the Python mean of the ten mAPs, ``AP50`` ... ``AP95`` the ten values.

Order of equal scores: stable (input order: images in the order they were added, detections in their
given order). mmdetection uses numpy's default, unstable sort; results differ only on exact ties.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from locdistill.structures import Detections

__all__ = [
    "VOC_IOU_THRS",
    "VOCClassResult",
    "VOCEvaluator",
    "VOCResult",
    "average_precision",
    "format_voc_table",
    "voc_bbox_overlaps",
]


def _accumulated_thresholds(start: float = 0.5, step: float = 0.05, num: int = 10) -> tuple[float, ...]:
    thrs = []
    t = start
    for _ in range(num):
        thrs.append(t)
        t = t + step
    return tuple(thrs)


VOC_IOU_THRS: tuple[float, ...] = _accumulated_thresholds()
_F32_EPS = np.finfo(np.float32).eps


def voc_bbox_overlaps(boxes1: np.ndarray, boxes2: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """IoU ``[n, 4] x [m, 4] -> [n, m]`` float32, as mmdetection 2.10's numpy ``bbox_overlaps``."""
    b1 = np.asarray(boxes1, dtype=np.float32).reshape(-1, 4)
    b2 = np.asarray(boxes2, dtype=np.float32).reshape(-1, 4)
    if b1.shape[0] * b2.shape[0] == 0:
        return np.zeros((b1.shape[0], b2.shape[0]), dtype=np.float32)
    area1 = (b1[:, 2] - b1[:, 0]) * (b1[:, 3] - b1[:, 1])
    area2 = (b2[:, 2] - b2[:, 0]) * (b2[:, 3] - b2[:, 1])
    x_start = np.maximum(b1[:, None, 0], b2[None, :, 0])
    y_start = np.maximum(b1[:, None, 1], b2[None, :, 1])
    x_end = np.minimum(b1[:, None, 2], b2[None, :, 2])
    y_end = np.minimum(b1[:, None, 3], b2[None, :, 3])
    overlap = np.maximum(x_end - x_start, np.float32(0)) * np.maximum(y_end - y_start, np.float32(0))
    union = area1[:, None] + area2[None, :] - overlap
    union = np.maximum(union, np.float32(eps))
    return (overlap / union).astype(np.float32)


def average_precision(recalls: np.ndarray, precisions: np.ndarray, mode: str = "area") -> np.float32:
    """AP of one precision/recall curve (``[k]`` each), ``mode`` ``"11points"`` or ``"area"``.

    Same arithmetic as mmdetection's ``average_precision`` (float32 accumulator).
    """
    ap = np.zeros(1, dtype=np.float32)
    if mode == "area":
        zeros = np.zeros(1, dtype=recalls.dtype)
        ones = np.ones(1, dtype=recalls.dtype)
        mrec = np.hstack((zeros, recalls, ones))
        mpre = np.hstack((zeros, precisions, zeros))
        mpre = np.maximum.accumulate(mpre[::-1])[::-1]
        ind = np.where(mrec[1:] != mrec[:-1])[0]
        ap[0] = np.sum((mrec[ind + 1] - mrec[ind]) * mpre[ind + 1])
    elif mode == "11points":
        for thr in np.arange(0, 1 + 1e-3, 0.1):
            precs = precisions[recalls >= thr]
            prec = precs.max() if precs.size > 0 else 0
            ap[0] += prec
        ap /= 11
    else:
        raise ValueError(f'unknown AP mode {mode!r}; expected "area" or "11points"')
    return ap[0]


@dataclass
class VOCClassResult:
    """One class at one IoU threshold: ``recall`` is the final recall (0 without detections)."""

    name: str
    num_gts: int
    num_dets: int
    recall: float
    ap: float
    recalls: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0))
    precisions: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0, np.float32))


class VOCResult(dict[str, float]):
    """Metrics ``{"mAP", "AP", "AP50", ..., "AP95"}`` (a plain ``dict[str, float]`` to callers), with
    the per-class results kept as attributes for :func:`format_voc_table`.

    Attributes:
        iou_thrs: the thresholds, in order.
        maps: mAP at each threshold.
        per_class: ``per_class[t][c]``: :class:`VOCClassResult` of class ``c`` at threshold ``t``.
        mode: ``"11points"`` or ``"area"``.
    """

    iou_thrs: list[float]
    maps: list[float]
    per_class: list[list[VOCClassResult]]
    mode: str

    @staticmethod
    def threshold_name(thr: float, index: int, iou_thrs: Sequence[float]) -> str:
        # The LD fork names them by position (AP50 + 5 * i); use that for its default thresholds.
        if tuple(iou_thrs) == VOC_IOU_THRS:
            return f"AP{50 + 5 * index}"
        return f"AP{round(thr * 100)}"


def _as_numpy(x: Any, dtype: Any, shape: tuple[int, ...] | None = None) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().to("cpu").numpy()
    arr = np.asarray(x, dtype=dtype)
    if shape is not None:
        arr = arr.reshape(shape)
    return arr


@dataclass
class _ImageGT:
    boxes: np.ndarray  # [n, 4] float32
    labels: np.ndarray  # [n] int64
    difficult: np.ndarray  # [n] bool


@dataclass
class _ImageDets:
    boxes: np.ndarray  # [k, 4] float32
    scores: np.ndarray  # [k] float32
    labels: np.ndarray  # [k] int64


class VOCEvaluator:
    """Collects ground truth and detections per image and computes the VOC metrics.

    Args:
        class_names: name of each label index.
    """

    def __init__(self, class_names: Sequence[str]) -> None:
        self.class_names = list(class_names)
        self._gts: dict[int, _ImageGT] = {}
        self._dets: dict[int, list[_ImageDets]] = {}
        self._order: list[int] = []  # image ids in first-seen order

    def _touch(self, image_id: int) -> None:
        if image_id not in self._gts and image_id not in self._dets:
            self._order.append(image_id)

    def add_ground_truth(self, image_id: int, boxes: Any, labels: Any, difficult: Any = None) -> None:
        """Ground truth of one image: ``boxes [n, 4]`` xyxy pixels, ``labels [n]``, ``difficult [n]``
        bool (``None``: none difficult). Tensors or arrays. Replaces earlier ground truth of the image."""
        image_id = int(image_id)
        b = _as_numpy(boxes, np.float32).reshape(-1, 4)
        lab = _as_numpy(labels, np.int64).reshape(-1)
        diff = (
            np.zeros(lab.shape, dtype=bool) if difficult is None else _as_numpy(difficult, bool).reshape(-1)
        )
        if not (b.shape[0] == lab.shape[0] == diff.shape[0]):
            raise ValueError(
                f"image {image_id}: {b.shape[0]} boxes, {lab.shape[0]} labels, "
                f"{diff.shape[0]} difficult flags"
            )
        self._check_labels(image_id, lab)
        self._touch(image_id)
        self._gts[image_id] = _ImageGT(b, lab, diff)

    def add(self, image_id: int, det: Detections) -> None:
        """Detections of one image (xyxy, same pixels as the ground truth). Adding twice appends."""
        image_id = int(image_id)
        boxes = _as_numpy(det.boxes, np.float32).reshape(-1, 4)
        scores = _as_numpy(det.scores, np.float32).reshape(-1)
        labels = _as_numpy(det.labels, np.int64).reshape(-1)
        if not (boxes.shape[0] == scores.shape[0] == labels.shape[0]):
            raise ValueError(
                f"image {image_id}: {boxes.shape[0]} boxes, {scores.shape[0]} scores, "
                f"{labels.shape[0]} labels"
            )
        self._check_labels(image_id, labels)
        self._touch(image_id)
        self._dets.setdefault(image_id, []).append(_ImageDets(boxes, scores, labels))

    def merge(self, other: VOCEvaluator) -> None:
        """Add another evaluator's images (e.g. another rank's); ground truth of an image seen by both
        is taken from ``other`` only if this one has none; detections are appended."""
        if other.class_names != self.class_names:
            raise ValueError("cannot merge VOC evaluators with different classes")
        for image_id in other._order:
            self._touch(image_id)
            if image_id in other._gts and image_id not in self._gts:
                self._gts[image_id] = other._gts[image_id]
            if image_id in other._dets:
                self._dets.setdefault(image_id, []).extend(other._dets[image_id])

    def _check_labels(self, image_id: int, labels: np.ndarray) -> None:
        if labels.size and (labels.min() < 0 or labels.max() >= len(self.class_names)):
            raise ValueError(f"labels of image {image_id} outside [0, {len(self.class_names)})")

    # ------------------------------------------------------------------ scoring
    def _class_tables(self) -> list[dict[str, np.ndarray]]:
        """Per class, all detections (stable order) with their best-IoU candidate ground truth."""
        num_classes = len(self.class_names)
        parts: list[list[tuple[np.ndarray, ...]]] = [[] for _ in range(num_classes)]
        num_gts = np.zeros(num_classes, dtype=np.int64)
        gt_uid = 0  # a dataset-wide id of each ground-truth box
        empty_gt = _ImageGT(np.zeros((0, 4), np.float32), np.zeros(0, np.int64), np.zeros(0, bool))
        for image_id in self._order:
            gt = self._gts.get(image_id, empty_gt)
            num_gts += np.bincount(gt.labels[~gt.difficult], minlength=num_classes)
            # mmdetection stacks the normal boxes before the difficult (ignored) ones
            gt_order = np.concatenate([np.nonzero(~gt.difficult)[0], np.nonzero(gt.difficult)[0]])
            g_boxes, g_labels, g_diff = gt.boxes[gt_order], gt.labels[gt_order], gt.difficult[gt_order]
            dets = self._dets.get(image_id, [])
            if dets:
                d_boxes = np.concatenate([d.boxes for d in dets])
                d_scores = np.concatenate([d.scores for d in dets])
                d_labels = np.concatenate([d.labels for d in dets])
                ious = voc_bbox_overlaps(d_boxes, g_boxes)  # [k, n]
                same = d_labels[:, None] == g_labels[None, :]
                masked = np.where(same, ious, np.float32(-1))
                if masked.shape[1]:
                    best = masked.argmax(axis=1)  # first maximum, as np.argmax in mmdetection
                    best_iou = masked[np.arange(masked.shape[0]), best]
                    has = same.any(axis=1)
                else:
                    best = np.zeros(masked.shape[0], dtype=np.int64)
                    best_iou = np.full(masked.shape[0], -1, dtype=np.float32)
                    has = np.zeros(masked.shape[0], dtype=bool)
                # no box of the class in the image: always a false positive
                best_iou = np.where(has, best_iou, np.float32(-np.inf))
                best_diff = np.where(has, g_diff[best] if g_diff.size else False, False)
                best_uid = gt_uid + best
                for c in np.unique(d_labels):
                    sel = d_labels == c
                    parts[c].append((d_scores[sel], best_iou[sel], best_diff[sel], best_uid[sel]))
            gt_uid += len(gt_order)
        tables = []
        for c in range(num_classes):
            if parts[c]:
                scores, iou, diff, uid = (np.concatenate(x) for x in zip(*parts[c]))
            else:
                scores, iou = np.zeros(0, np.float32), np.zeros(0, np.float32)
                diff, uid = np.zeros(0, bool), np.zeros(0, np.int64)
            order = np.argsort(-scores, kind="stable")
            tables.append(
                {
                    "iou": iou[order],
                    "difficult": diff[order],
                    "uid": uid[order],
                    "num_gts": np.int64(num_gts[c]),
                }
            )
        return tables

    def evaluate(self, iou_thrs: Sequence[float] = VOC_IOU_THRS, use_07_metric: bool = True) -> VOCResult:
        """Compute the metrics (see the module docstring).

        Args:
            iou_thrs: IoU thresholds; default the LD fork's 0.50, 0.55, ..., 0.95 (accumulated).
            use_07_metric: 11-point AP (VOC2007) if true, else the area under the curve (VOC2010+).

        Returns:
            :class:`VOCResult`: ``{"mAP": AP at the first threshold, "AP": mean over thresholds,
            "AP50": ..., ...}`` plus per-class results.
        """
        if not iou_thrs:
            raise ValueError("need at least one IoU threshold")
        mode = "11points" if use_07_metric else "area"
        tables = self._class_tables()
        per_class: list[list[VOCClassResult]] = []
        maps: list[float] = []
        for thr in iou_thrs:
            row: list[VOCClassResult] = []
            for name, tab in zip(self.class_names, tables):
                tp, fp = self._tp_fp(tab, float(thr))
                tp_c = np.cumsum(tp)
                fp_c = np.cumsum(fp)
                recalls = tp_c / np.maximum(tab["num_gts"], _F32_EPS)
                precisions = tp_c / np.maximum(tp_c + fp_c, _F32_EPS)
                ap = average_precision(recalls, precisions, mode)
                row.append(
                    VOCClassResult(
                        name=name,
                        num_gts=int(tab["num_gts"]),
                        num_dets=int(tp.shape[0]),
                        recall=float(recalls[-1]) if recalls.size else 0.0,
                        ap=float(ap),
                        recalls=recalls,
                        precisions=precisions,
                    )
                )
            aps = [np.float32(r.ap) for r in row if r.num_gts > 0]
            maps.append(float(np.array(aps, dtype=np.float32).mean().item()) if aps else 0.0)
            per_class.append(row)
        result = VOCResult()
        result["mAP"] = maps[0]
        total = 0.0
        for m in maps:
            total = m + total
        result["AP"] = total / len(maps)
        for i, (thr, m) in enumerate(zip(iou_thrs, maps)):
            result[VOCResult.threshold_name(float(thr), i, iou_thrs)] = m
        result.iou_thrs = [float(t) for t in iou_thrs]
        result.maps = maps
        result.per_class = per_class
        result.mode = mode
        return result

    @staticmethod
    def _tp_fp(tab: dict[str, np.ndarray], thr: float) -> tuple[np.ndarray, np.ndarray]:
        """TP / FP flags (float32, in descending score order) of one class at IoU threshold ``thr``."""
        iou, diff, uid = tab["iou"], tab["difficult"], tab["uid"]
        # float64 comparison, as numpy 1.x did for mmdetection's `np.float32 >= float` (numpy 2 would
        # round the threshold to float32 and let an IoU of exactly 0.75 reach 0.7500000000000002)
        hit = iou.astype(np.float64) >= thr
        cand = hit & ~diff
        tp = np.zeros(iou.shape[0], dtype=np.float32)
        idx = np.nonzero(cand)[0]
        if idx.size:
            # the first (highest-scored) detection claiming a ground-truth box gets it
            _, first = np.unique(uid[idx], return_index=True)
            tp[idx[first]] = 1
        fp = (~hit | (cand & (tp == 0))).astype(np.float32)
        return tp, fp


def _ascii_table(rows: list[list[str]], footer_from: int) -> str:
    """terminaltables' ``AsciiTable`` layout: header rule, and a rule before row ``footer_from``."""
    widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
    rule = "+" + "+".join("-" * (w + 2) for w in widths) + "+"

    def line(r: list[str]) -> str:
        return "|" + "|".join(f" {cell:<{w}} " for cell, w in zip(r, widths)) + "|"

    out = [rule, line(rows[0]), rule]
    for k, r in enumerate(rows[1:], start=1):
        if k == footer_from:
            out.append(rule)
        out.append(line(r))
    out.append(rule)
    return "\n".join(out)


def format_voc_table(result: VOCResult, iou_index: int = 0) -> str:
    """The LD fork's VOC printout.

    A table ``class | gts | dets | recall | ap`` at threshold ``iou_index`` (default the first, IoU
    0.5) with a ``mAP`` row, then ``AP:  <mean over thresholds>`` and the list
    ``['AP50: 0.xxxxxx', ..., 'AP95: 0.xxxxxx']``, and last the seed's ``{'mAP': <AP50>}`` line (the
    dict mmdetection's ``evaluate`` returns). (mmdetection prints one such table per threshold, so the
    seed's log shows the last one, IoU 0.95.)
    """
    rows = [["class", "gts", "dets", "recall", "ap"]]
    for r in result.per_class[iou_index]:
        rows.append([r.name, str(r.num_gts), str(r.num_dets), f"{r.recall:.3f}", f"{r.ap:.3f}"])
    rows.append(["mAP", "", "", "", f"{result.maps[iou_index]:.3f}"])
    table = _ascii_table(rows, footer_from=len(rows) - 1)
    names = [VOCResult.threshold_name(t, i, result.iou_thrs) for i, t in enumerate(result.iou_thrs)]
    ap_list = [f"{name}: {m:.6f}" for name, m in zip(names, result.maps)]
    seed_line = str({"mAP": float(result["mAP"])})  # "{'mAP': 0.7593928575515747}"
    return f"{table}\nAP:  {result['AP']}\n{ap_list}\n{seed_line}"
