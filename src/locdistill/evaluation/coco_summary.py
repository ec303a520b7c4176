"""Numbers read from a finished COCOeval's precision array: AP at each IoU threshold and AP per class.

``coco_eval.eval["precision"]`` has shape ``[T, R, K, A, M]``: IoU thresholds ``.50:.05:.95``, 101
recall points, categories (``params.catIds`` order), area ranges (all, small, medium, large) and
maxDets (1, 10, 100); ``-1`` marks an undefined entry (no ground truth). Every value here is the mean
of the defined entries, as ``COCOeval.summarize`` computes its AP lines (area ``all``, 100 detections),
and ``-1.0`` where none is defined.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["ap_per_iou", "classwise_ap", "format_classwise_table", "iou_names"]


def _mean_defined(values: np.ndarray) -> float:
    defined = values[values > -1]
    return float(defined.mean()) if defined.size else -1.0


def _precision(coco_eval: Any) -> np.ndarray:
    results = getattr(coco_eval, "eval", None)
    precision = results.get("precision") if isinstance(results, dict) else None
    if precision is None:
        raise ValueError("COCOeval has not been accumulated yet (run evaluate() and accumulate() first)")
    return np.asarray(precision)


def iou_names(coco_eval: Any) -> list[str]:
    """``AP50``, ``AP55``, ..., ``AP95`` for the evaluator's IoU thresholds."""
    return [f"AP{round(100 * float(t))}" for t in coco_eval.params.iouThrs]


def ap_per_iou(coco_eval: Any) -> dict[str, float]:
    """``{"AP50": ..., "AP55": ..., "AP95": ...}``: AP (area all, 100 detections) at each IoU threshold,
    averaged over categories; ``AP50`` and ``AP75`` equal COCOeval's ``stats[1]`` and ``stats[2]``."""
    precision = _precision(coco_eval)
    m = list(coco_eval.params.maxDets).index(100)
    return {name: _mean_defined(precision[t, :, :, 0, m]) for t, name in enumerate(iou_names(coco_eval))}


def classwise_ap(
    coco_eval: Any, class_names: Sequence[str], num_gts: Sequence[int] | None = None
) -> list[dict[str, Any]]:
    """One row per category of ``params.catIds`` (named by ``class_names``, same order): ``AP``
    (IoU .50:.95), ``AP50``, ``AP75`` (area all, 100 detections; ``-1.0`` for a class without ground
    truth) and, when given, the number of ground-truth boxes."""
    precision = _precision(coco_eval)
    m = list(coco_eval.params.maxDets).index(100)
    thrs = [round(100 * float(t)) for t in coco_eval.params.iouThrs]
    rows = []
    for k, name in enumerate(class_names):
        p = precision[:, :, k, 0, m]
        row: dict[str, Any] = {
            "class": str(name),
            "AP": _mean_defined(p),
            "AP50": _mean_defined(p[thrs.index(50)]) if 50 in thrs else -1.0,
            "AP75": _mean_defined(p[thrs.index(75)]) if 75 in thrs else -1.0,
        }
        if num_gts is not None:
            row["gts"] = int(num_gts[k])
        rows.append(row)
    return rows


def format_classwise_table(rows: list[dict[str, Any]]) -> str:
    """An ASCII table ``class | gts | AP | AP50 | AP75`` (three decimals, ``n/a`` when undefined)."""
    from locdistill.evaluation.voc import _ascii_table

    def cell(v: float) -> str:
        return f"{v:.3f}" if v >= 0 else "n/a"

    has_gts = bool(rows) and "gts" in rows[0]
    head = ["class", *(["gts"] if has_gts else []), "AP", "AP50", "AP75"]
    lines = [head]
    for r in rows:
        gts = [str(r["gts"])] if has_gts else []
        lines.append([r["class"], *gts, cell(r["AP"]), cell(r["AP50"]), cell(r["AP75"])])
    return _ascii_table(lines, footer_from=len(lines))
