"""COCO box evaluation with pycocotools (exact COCOeval semantics), or faster-coco-eval.

:class:`CocoEvaluator` collects per-image :class:`~locdistill.structures.Detections` (original-image
pixels, xyxy, labels in ``[0, C)``), turns them into the COCO results format (``[x, y, w, h]``,
``category_id``, ``score``) and runs ``COCOeval(..., "bbox")`` over all ground-truth images and the
given categories, as mmdetection's ``CocoDataset.evaluate`` does: crowd regions are ignored, areas are
split at 32^2 and 96^2, maxDets 1/10/100. pycocotools' progress prints are swallowed.

``backend="faster_coco_eval"`` runs the same evaluation with the optional ``faster-coco-eval``
package (C++ ``evaluate``/``accumulate``; ``pip install 'locdistill[fast-eval]'``); its 12 numbers and
precision array equal pycocotools' (``tests/test_evaluation.py``; ``benchmarks/bench_coco_eval.py`` times
both).

Conversion detail kept from mmdetection (``xyxy2xywh`` on float32 arrays): ``w = x2 - x1`` and
``h = y2 - y1`` are computed in float32, then written as Python floats.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from locdistill.structures import Detections

__all__ = ["COCO_BACKENDS", "COCO_METRIC_NAMES", "CocoEvaluator", "format_coco_table"]

COCO_BACKENDS = ("pycocotools", "faster_coco_eval")

# The order of COCOeval.stats.
COCO_METRIC_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")

# (title, IoU, area, maxDets) of each COCOeval.stats entry, for the summary table.
_SUMMARY_ROWS = (
    ("AP", None, "all", 100),
    ("AP", 0.5, "all", 100),
    ("AP", 0.75, "all", 100),
    ("AP", None, "small", 100),
    ("AP", None, "medium", 100),
    ("AP", None, "large", 100),
    ("AR", None, "all", 1),
    ("AR", None, "all", 10),
    ("AR", None, "all", 100),
    ("AR", None, "small", 100),
    ("AR", None, "medium", 100),
    ("AR", None, "large", 100),
)


def _quiet() -> contextlib.redirect_stdout[io.StringIO]:
    return contextlib.redirect_stdout(io.StringIO())


def coco_api(backend: str) -> tuple[Any, Any]:
    """``(COCO, COCOeval)`` classes of ``backend`` (one of :data:`COCO_BACKENDS`)."""
    if backend == "pycocotools":
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval

        return COCO, COCOeval
    if backend == "faster_coco_eval":
        try:
            from faster_coco_eval import COCO as FastCOCO
            from faster_coco_eval import COCOeval_faster
        except ImportError:
            raise ValueError(
                "the COCO evaluation backend 'faster_coco_eval' needs the faster-coco-eval package: "
                "pip install 'locdistill[fast-eval]' (or use the default backend, pycocotools)"
            ) from None

        def fast_eval(gt: Any, dt: Any, iou_type: str) -> Any:
            return COCOeval_faster(gt, dt, iou_type, print_function=lambda *args, **kwargs: None)

        return FastCOCO, fast_eval
    raise ValueError(f"unknown COCO evaluation backend {backend!r} (expected one of {list(COCO_BACKENDS)})")


def _complete_ground_truth(gt: dict[str, Any]) -> dict[str, Any]:
    """A shallow copy of ``gt`` whose annotations all have ``id``, ``area`` and ``iscrowd``."""
    out = dict(gt)
    anns = []
    for k, ann in enumerate(gt.get("annotations", [])):
        if "id" in ann and "area" in ann and "iscrowd" in ann:
            anns.append(ann)
            continue
        ann = dict(ann)
        ann.setdefault("id", k + 1)
        ann.setdefault("iscrowd", 0)
        if "area" not in ann:
            _, _, w, h = ann["bbox"]
            ann["area"] = float(w) * float(h)
        anns.append(ann)
    out["annotations"] = anns
    out.setdefault("categories", [])
    out.setdefault("images", [])
    return out


class CocoEvaluator:
    """Accumulates detections and scores them with pycocotools' COCOeval.

    Args:
        gt: COCO-format ground truth (``images``, ``annotations``, ``categories``); annotations
            without ``area`` / ``iscrowd`` / ``id`` get ``w * h`` / ``0`` / a running id.
        category_ids: COCO category id of each label index (``label -> category_ids[label]``); also
            the categories evaluated (``COCOeval.params.catIds``).
        backend: ``pycocotools`` or ``faster_coco_eval`` (the same numbers, faster).
    """

    def __init__(self, gt: dict[str, Any], category_ids: Sequence[int], backend: str = "pycocotools") -> None:
        self.backend = backend
        COCO, _ = coco_api(backend)
        self.category_ids = [int(c) for c in category_ids]
        self._cat_lut = np.asarray(self.category_ids, dtype=np.int64)
        self.coco_gt = COCO()
        self.coco_gt.dataset = _complete_ground_truth(gt)
        with _quiet():
            self.coco_gt.createIndex()
        self.image_ids = [int(i) for i in self.coco_gt.getImgIds()]
        self._known_images = set(self.image_ids)
        # rows (image_id, x, y, w, h, score, category_id), float64
        self._chunks: list[np.ndarray] = []

    # ------------------------------------------------------------------ collecting
    def add(self, image_id: int, det: Detections) -> None:
        """Add the detections of one image (boxes xyxy in original-image pixels)."""
        image_id = int(image_id)
        if image_id not in self._known_images:
            raise KeyError(f"image id {image_id} is not in the ground truth ({len(self.image_ids)} images)")
        if len(det) == 0:
            return
        boxes = det.boxes.detach().to("cpu", copy=False).float().numpy()
        scores = det.scores.detach().to("cpu", copy=False).float().numpy()
        labels = det.labels.detach().to("cpu", copy=False).numpy().astype(np.int64)
        if labels.min() < 0 or labels.max() >= len(self.category_ids):
            raise ValueError(f"labels of image {image_id} outside [0, {len(self.category_ids)})")
        wh = boxes[:, 2:4] - boxes[:, 0:2]  # float32, as mmdetection's xyxy2xywh
        rows = np.empty((boxes.shape[0], 7), dtype=np.float64)
        rows[:, 0] = image_id
        rows[:, 1:3] = boxes[:, 0:2]
        rows[:, 3:5] = wh
        rows[:, 5] = scores
        rows[:, 6] = self._cat_lut[labels]
        self._chunks.append(rows)

    def merge(self, other_results: Iterable[dict[str, Any]] | CocoEvaluator) -> None:
        """Append results from another rank: a results list (as :meth:`results`) or an evaluator."""
        if isinstance(other_results, CocoEvaluator):
            self._chunks.extend(other_results._chunks)
            return
        items = list(other_results)
        if not items:
            return
        rows = np.array(
            [[r["image_id"], *r["bbox"], r["score"], r["category_id"]] for r in items], dtype=np.float64
        )
        unknown = set(rows[:, 0].astype(np.int64).tolist()) - self._known_images
        if unknown:
            raise KeyError(f"merged results name image ids not in the ground truth, e.g. {min(unknown)}")
        self._chunks.append(rows)

    def _rows(self) -> np.ndarray:
        if not self._chunks:
            return np.zeros((0, 7), dtype=np.float64)
        return np.concatenate(self._chunks, axis=0)

    def __len__(self) -> int:
        return int(sum(c.shape[0] for c in self._chunks))

    def results(self) -> list[dict[str, Any]]:
        """The COCO results list: ``{"image_id", "category_id", "bbox": [x, y, w, h], "score"}``.

        This is what the test-dev server takes (as json).
        """
        return [
            {
                "image_id": int(r[0]),
                "category_id": int(r[6]),
                "bbox": [float(r[1]), float(r[2]), float(r[3]), float(r[4])],
                "score": float(r[5]),
            }
            for r in self._rows()
        ]

    def dump(self, path: str | Path) -> None:
        """Write :meth:`results` as a json file."""
        Path(path).write_text(json.dumps(self.results()), encoding="utf-8")

    # ------------------------------------------------------------------ scoring
    def _results_api(self) -> Any:
        COCO, _ = coco_api(self.backend)
        rows = self._rows()
        if rows.shape[0]:
            with _quiet():
                return self.coco_gt.loadRes(rows)
        # pycocotools cannot load an empty result list; an empty result set scores as COCOeval would.
        res = COCO()
        res.dataset = {
            "images": list(self.coco_gt.dataset["images"]),
            "categories": copy.deepcopy(self.coco_gt.dataset["categories"]),
            "annotations": [],
        }
        with _quiet():
            res.createIndex()
        return res

    def evaluate(self) -> dict[str, float]:
        """Run COCOeval and return ``AP, AP50, AP75, APs, APm, APl, AR1, AR10, AR100, ARs, ARm, ARl``.

        Values are pycocotools' (``-1.0`` where no ground truth falls in an area range); with no
        detections at all every defined value is ``0.0``.
        """
        _, COCOeval = coco_api(self.backend)
        coco_dt = self._results_api()
        ev = COCOeval(self.coco_gt, coco_dt, "bbox")
        ev.params.imgIds = list(self.image_ids)
        ev.params.catIds = list(self.category_ids)
        with _quiet():
            ev.evaluate()
            ev.accumulate()
            ev.summarize()
        self.coco_eval = ev
        return {name: float(v) for name, v in zip(COCO_METRIC_NAMES, ev.stats)}


def format_coco_table(metrics: dict[str, float]) -> str:
    """The standard 12-line COCOeval summary of ``metrics`` (keys of :data:`COCO_METRIC_NAMES`)."""
    lines = []
    for name, (kind, iou, area, max_dets) in zip(COCO_METRIC_NAMES, _SUMMARY_ROWS):
        title = "Average Precision" if kind == "AP" else "Average Recall"
        type_str = "(AP)" if kind == "AP" else "(AR)"
        iou_str = "0.50:0.95" if iou is None else f"{iou:0.2f}"
        value = float(metrics.get(name, -1.0))
        lines.append(
            f" {title:<18} {type_str} @[ IoU={iou_str:<9} | area={area:>6s} | maxDets={max_dets:>3d} ]"
            f" = {value:0.3f}"
        )
    return "\n".join(lines)
