"""The COCO evaluator (pycocotools): hand-computed AP, crowd regions, results json, table."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest

from locdistill.evaluation import (
    COCO_METRIC_NAMES,
    CocoEvaluator,
    format_coco_table,
)
from tests.evaluation.helpers import dets


def coco_gt(boxes_per_image: dict[int, list[tuple[list[float], int, int]]], cat_ids: list[int]) -> dict:
    """``{image_id: [(xyxy, category_id, iscrowd), ...]}`` -> COCO ground-truth dict."""
    images: list[dict] = []
    anns: list[dict] = []
    for image_id, items in boxes_per_image.items():
        images.append({"id": image_id, "file_name": f"{image_id}.jpg", "height": 500, "width": 600})
        for (x1, y1, x2, y2), cat, crowd in items:
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": image_id,
                    "category_id": cat,
                    "bbox": [x1, y1, x2 - x1, y2 - y1],
                    "area": (x2 - x1) * (y2 - y1),
                    "iscrowd": crowd,
                }
            )
    return {"images": images, "annotations": anns, "categories": [{"id": c, "name": str(c)} for c in cat_ids]}


CAT_IDS = [3, 7]  # label 0 -> category 3, label 1 -> category 7


GT_BOXES = {
    10: [([10.0, 10.0, 30.0, 30.0], 3, 0), ([100.0, 100.0, 160.0, 150.0], 7, 0)],  # small, medium
    11: [([50.0, 40.0, 250.0, 240.0], 3, 0)],  # large
    12: [([5.0, 5.0, 60.0, 60.0], 7, 0), ([300.0, 300.0, 400.0, 420.0], 7, 0)],
}


def perfect_evaluator(gt: dict) -> CocoEvaluator:
    ev = CocoEvaluator(gt, CAT_IDS)
    for image_id, items in GT_BOXES.items():
        ev.add(
            image_id,
            dets([b for b, _, _ in items], [0.9] * len(items), [CAT_IDS.index(c) for _, c, _ in items]),
        )
    return ev


def test_coco_perfect_detections() -> None:
    metrics = perfect_evaluator(coco_gt(GT_BOXES, CAT_IDS)).evaluate()
    assert set(metrics) == set(COCO_METRIC_NAMES)
    for k in ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR10", "AR100", "ARs", "ARm", "ARl"):
        assert metrics[k] == pytest.approx(1.0), k


def test_coco_hand_computed_ap() -> None:
    # One image, two medium ground-truth boxes; detections: hit (0.9), miss (0.8), hit (0.7).
    # Precision 1, 1/2, 2/3 at recall 1/2, 1/2, 1; the interpolated precision is 1 for the 51 recall
    # thresholds 0.00..0.50 and 2/3 for the 50 thresholds 0.51..1.00 -> AP = (51 + 50 * 2/3) / 101.
    gt = coco_gt({1: [([0.0, 0.0, 50.0, 50.0], 3, 0), ([100.0, 100.0, 150.0, 150.0], 3, 0)]}, [3])
    ev = CocoEvaluator(gt, [3])
    ev.add(1, dets([[0, 0, 50, 50], [300, 300, 350, 350], [100, 100, 150, 150]], [0.9, 0.8, 0.7], [0, 0, 0]))
    m = ev.evaluate()
    expected = (51 + 50 * 2 / 3) / 101
    for k in ("AP", "AP50", "AP75", "APm"):
        assert m[k] == pytest.approx(expected, abs=1e-12), k
    assert m["APs"] == -1.0 and m["APl"] == -1.0  # no ground truth in those ranges
    assert m["AR1"] == pytest.approx(0.5) and m["AR10"] == pytest.approx(1.0)


def test_coco_crowd_regions_are_ignored() -> None:
    base = {1: [([0.0, 0.0, 50.0, 50.0], 3, 0)]}
    with_crowd = {1: [([0.0, 0.0, 50.0, 50.0], 3, 0), ([200.0, 200.0, 400.0, 400.0], 3, 1)]}
    hit = [[0, 0, 50, 50]]
    on_crowd = [[220, 210, 300, 330]]  # inside the crowd region: matched to it, neither TP nor FP
    clean = CocoEvaluator(coco_gt(with_crowd, [3]), [3])
    clean.add(1, dets(hit, [0.6], [0]))
    crowded = CocoEvaluator(coco_gt(with_crowd, [3]), [3])
    crowded.add(1, dets(hit + on_crowd, [0.6, 0.9], [0, 0]))
    assert crowded.evaluate()["AP"] == pytest.approx(1.0)
    assert clean.evaluate()["AP"] == pytest.approx(1.0)
    # without the crowd annotation the same detection is a false positive ranked first
    plain = CocoEvaluator(coco_gt(base, [3]), [3])
    plain.add(1, dets(hit + on_crowd, [0.6, 0.9], [0, 0]))
    assert plain.evaluate()["AP"] < 0.6


def _random_coco_case(seed: int) -> tuple[dict, CocoEvaluator]:
    rng = np.random.default_rng(seed)
    boxes: dict[int, list[tuple[list[float], int, int]]] = {}
    for image_id in range(1, 9):
        items = []
        for _ in range(rng.integers(1, 6)):
            x, y = rng.uniform(0, 400, 2)
            w, h = rng.uniform(8, 150, 2)
            items.append(([x, y, x + w, y + h], int(rng.choice(CAT_IDS)), int(rng.random() < 0.1)))
        boxes[image_id] = items
    gt = coco_gt(boxes, CAT_IDS)
    ev = CocoEvaluator(gt, CAT_IDS)
    for image_id, items in boxes.items():
        b, s, lab = [], [], []
        for (x1, y1, x2, y2), cat, _ in items:
            for _ in range(3):
                j = rng.normal(0, 6, 4)
                b.append([x1 + j[0], y1 + j[1], x2 + j[2], y2 + j[3]])
                s.append(float(rng.uniform(0.05, 1)))
                lab.append(CAT_IDS.index(cat) if rng.random() < 0.8 else int(rng.integers(0, 2)))
        ev.add(image_id, dets(b, s, lab))
    return gt, ev


def test_coco_results_json_round_trip(tmp_path: Path) -> None:
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    gt, ev = _random_coco_case(0)
    metrics = ev.evaluate()
    path = tmp_path / "dets.json"
    ev.dump(path)
    loaded = json.loads(path.read_text())
    assert loaded == ev.results()
    assert set(loaded[0]) == {"image_id", "category_id", "bbox", "score"}
    assert {r["category_id"] for r in loaded} <= set(CAT_IDS)
    coco = COCO()
    coco.dataset = copy.deepcopy(gt)
    coco.createIndex()
    cev = COCOeval(coco, coco.loadRes(str(path)), "bbox")
    cev.evaluate()
    cev.accumulate()
    cev.summarize()
    assert [metrics[k] for k in COCO_METRIC_NAMES] == pytest.approx(list(cev.stats), abs=0)


def test_coco_xywh_conversion() -> None:
    gt = coco_gt({5: [([1.5, 2.25, 11.5, 22.25], 7, 0)]}, CAT_IDS)
    ev = CocoEvaluator(gt, CAT_IDS)
    ev.add(5, dets([[1.5, 2.25, 11.5, 22.25]], [0.75], [1]))
    assert ev.results() == [{"image_id": 5, "category_id": 7, "bbox": [1.5, 2.25, 10.0, 20.0], "score": 0.75}]
    with pytest.raises(KeyError):
        ev.add(99, dets([[0, 0, 1, 1]], [0.5], [0]))


def test_coco_zero_detections_and_merge(capsys: pytest.CaptureFixture[str]) -> None:
    gt, full = _random_coco_case(1)
    empty = CocoEvaluator(gt, CAT_IDS).evaluate()
    assert empty["AP"] == 0.0 and empty["AR100"] == 0.0
    assert all(v in (0.0, -1.0) for v in empty.values())
    # two "ranks" holding different images, merged through the results list
    rank0 = CocoEvaluator(gt, CAT_IDS)
    rank1 = CocoEvaluator(gt, CAT_IDS)
    for r in full.results():
        (rank0 if r["image_id"] % 2 else rank1).merge([r])
    rank0.merge(rank1.results())
    assert rank0.evaluate() == full.evaluate()
    assert capsys.readouterr().out == ""  # pycocotools' prints are swallowed


def test_coco_table_format() -> None:
    metrics = dict(
        zip(COCO_METRIC_NAMES, [0.365, 0.529, 0.393, 0.2, 0.4, 0.5, 0.3, 0.5, 0.566, 0.3, 0.6, 0.7])
    )
    lines = format_coco_table(metrics).splitlines()
    assert len(lines) == 12
    assert lines[0] == " Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all | maxDets=100 ] = 0.365"
    assert lines[1] == " Average Precision  (AP) @[ IoU=0.50      | area=   all | maxDets=100 ] = 0.529"
    assert lines[3] == " Average Precision  (AP) @[ IoU=0.50:0.95 | area= small | maxDets=100 ] = 0.200"
    assert lines[6] == " Average Recall     (AR) @[ IoU=0.50:0.95 | area=   all | maxDets=  1 ] = 0.300"
    assert lines[11] == " Average Recall     (AR) @[ IoU=0.50:0.95 | area= large | maxDets=100 ] = 0.700"
