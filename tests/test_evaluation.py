"""Tests of the COCO (pycocotools) and VOC (mmdetection 2.10 / LD) evaluators."""

from __future__ import annotations

import copy
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
import torch

from locdistill.evaluation import (
    COCO_METRIC_NAMES,
    VOC_IOU_THRS,
    CocoEvaluator,
    VOCClassResult,
    VOCEvaluator,
    VOCResult,
    format_coco_table,
    format_voc_table,
)
from locdistill.structures import Detections


def dets(boxes: Sequence[Sequence[float]], scores: Sequence[float], labels: Sequence[int]) -> Detections:
    return Detections(
        torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
        torch.tensor(scores, dtype=torch.float32),
        torch.tensor(labels, dtype=torch.int64),
    )


# ==================================================================================================
# COCO
# ==================================================================================================


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


# ==================================================================================================
# VOC
# ==================================================================================================


def loop_iou(a: list[float], b: list[float]) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    return inter / max((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter, 1e-6)


def loop_voc_ap(
    gts: dict, all_dets: dict, cls: int, thr: float, eleven_point: bool
) -> tuple[float, int, int]:
    """VOC AP of one class by direct loops: per image greedy matching by score (best IoU box of the
    class; difficult -> ignored; already matched -> FP), then the PR curve and 11-point / area AP."""
    records = []  # (score, is_tp, is_fp)
    n_pos = 0
    for image_id in gts.keys() | all_dets.keys():
        g_boxes, g_labels, g_diff = gts.get(image_id, ([], [], []))
        normal = [b for b, lab, d in zip(g_boxes, g_labels, g_diff) if lab == cls and not d]
        hard = [b for b, lab, d in zip(g_boxes, g_labels, g_diff) if lab == cls and d]
        n_pos += len(normal)
        cands = normal + hard  # normal first (ties go to them)
        used = [False] * len(cands)
        d_boxes, d_scores, d_labels = all_dets.get(image_id, ([], [], []))
        mine = sorted(
            [(s, b) for b, s, lab in zip(d_boxes, d_scores, d_labels) if lab == cls], key=lambda t: -t[0]
        )
        for score, box in mine:
            best, best_k = -1.0, -1
            for k, g in enumerate(cands):
                iou = loop_iou(box, g)
                if iou > best:
                    best, best_k = iou, k
            if best_k >= 0 and best >= thr:
                if best_k >= len(normal):
                    continue  # difficult: ignored
                if not used[best_k]:
                    used[best_k] = True
                    records.append((score, 1, 0))
                else:
                    records.append((score, 0, 1))
            else:
                records.append((score, 0, 1))
    records.sort(key=lambda t: -t[0])
    tp = fp = 0
    rec, prec = [], []
    for _, t, f in records:
        tp += t
        fp += f
        rec.append(tp / max(n_pos, 1e-12))
        prec.append(tp / (tp + fp))
    if eleven_point:
        ap = 0.0
        for r in np.arange(0.0, 1.1, 0.1):
            p = [p for p, rr in zip(prec, rec) if rr >= r]
            ap += max(p) if p else 0.0
        ap /= 11
    else:  # all-point: area under the monotone envelope
        mrec = [0.0, *rec, 1.0]
        mpre = [0.0, *prec, 0.0]
        for i in range(len(mpre) - 2, -1, -1):
            mpre[i] = max(mpre[i], mpre[i + 1])
        ap = sum(
            (mrec[i + 1] - mrec[i]) * mpre[i + 1] for i in range(len(mrec) - 1) if mrec[i + 1] != mrec[i]
        )
    return ap, n_pos, len(records)


def random_voc_case(seed: int, num_classes: int = 3) -> tuple[dict, dict]:
    rng = np.random.default_rng(seed)
    gts, all_dets = {}, {}
    for image_id in range(7):
        n = int(rng.integers(0, 6))
        xy = rng.uniform(0, 300, (n, 2))
        wh = rng.uniform(10, 120, (n, 2))
        boxes = np.concatenate([xy, xy + wh], 1).tolist()
        labels = rng.integers(0, num_classes, n).tolist()
        diff = (rng.random(n) < 0.2).tolist()
        if image_id != 6:  # image 6 has detections but no ground truth at all
            gts[image_id] = (boxes, labels, diff)
        if image_id == 5:
            continue  # image 5 has ground truth but no detections
        d_boxes, d_scores, d_labels = [], [], []
        for b, lab in zip(boxes, labels):
            for _ in range(int(rng.integers(0, 4))):
                j = rng.normal(0, 0.1, 4) * (b[2] - b[0])
                d_boxes.append([b[0] + j[0], b[1] + j[1], b[2] + j[2], b[3] + j[3]])
                d_scores.append(float(rng.uniform(0.05, 1)))
                d_labels.append(lab if rng.random() < 0.8 else int(rng.integers(0, num_classes)))
        for _ in range(int(rng.integers(0, 4))):  # background false positives
            x, y = rng.uniform(0, 350, 2)
            d_boxes.append([x, y, x + 40, y + 30])
            d_scores.append(float(rng.uniform(0.05, 1)))
            d_labels.append(int(rng.integers(0, num_classes)))
        all_dets[image_id] = (d_boxes, d_scores, d_labels)
    return gts, all_dets


def voc_evaluator(gts: dict, all_dets: dict, names: list[str]) -> VOCEvaluator:
    ev = VOCEvaluator(names)
    for image_id, (b, lab, d) in gts.items():
        ev.add_ground_truth(
            image_id, np.array(b, np.float32).reshape(-1, 4), np.array(lab), np.array(d, bool)
        )
    for image_id, (b, s, lab) in all_dets.items():
        ev.add(image_id, dets(b, s, lab))
    return ev


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
@pytest.mark.parametrize("eleven_point", [True, False])
def test_voc_matches_independent_loops(seed: int, eleven_point: bool) -> None:
    names = ["cat", "dog", "bird"]
    gts, all_dets = random_voc_case(seed, len(names))
    # the float32 boxes the evaluator sees, as Python floats, for the loop version
    gts32 = {k: (np.array(b, np.float32).reshape(-1, 4).tolist(), lab, d) for k, (b, lab, d) in gts.items()}
    dets32 = {
        k: (np.array(b, np.float32).reshape(-1, 4).tolist(), np.array(s, np.float32).tolist(), lab)
        for k, (b, s, lab) in all_dets.items()
    }
    result = voc_evaluator(gts, all_dets, names).evaluate(use_07_metric=eleven_point)
    assert result.iou_thrs == list(VOC_IOU_THRS)
    maps = []
    for t_index, thr in enumerate(VOC_IOU_THRS):
        aps = []
        for c in range(len(names)):
            ap, n_pos, _ = loop_voc_ap(gts32, dets32, c, thr, eleven_point)
            got = result.per_class[t_index][c]
            assert got.num_gts == n_pos
            assert got.ap == pytest.approx(ap, abs=1e-6), (thr, c)
            if n_pos > 0:
                aps.append(ap)
        maps.append(sum(aps) / len(aps))
    assert [result[f"AP{50 + 5 * i}"] for i in range(10)] == pytest.approx(maps, abs=1e-6)
    assert result["mAP"] == pytest.approx(maps[0], abs=1e-6)
    assert result["AP"] == pytest.approx(sum(maps) / 10, abs=1e-6)
    assert 0.0 < result["AP"] < result["mAP"] <= 1.0


def test_voc_perfect_detections_and_difficult() -> None:
    ev = VOCEvaluator(["a", "b"])
    ev.add_ground_truth(0, torch.tensor([[0.0, 0.0, 10, 10], [20, 20, 50, 60]]), torch.tensor([0, 1]), None)
    ev.add_ground_truth(
        1,
        torch.tensor([[5.0, 5, 40, 40], [60, 60, 90, 95]]),
        torch.tensor([0, 0]),
        torch.tensor([False, True]),
    )
    ev.add(0, dets([[0, 0, 10, 10], [20, 20, 50, 60]], [0.9, 0.8], [0, 1]))
    # the detection of the difficult box counts neither way; so does a second one on it
    ev.add(1, dets([[5, 5, 40, 40], [60, 60, 90, 95], [61, 60, 90, 95]], [0.7, 0.95, 0.96], [0, 0, 0]))
    r = ev.evaluate()
    assert r["mAP"] == pytest.approx(1.0) and r["AP"] == pytest.approx(1.0)
    assert [c.num_gts for c in r.per_class[0]] == [2, 1]
    assert [c.num_dets for c in r.per_class[0]] == [4, 1]
    assert r.per_class[0][0].recall == pytest.approx(1.0)
    assert ev.evaluate(use_07_metric=False)["mAP"] == pytest.approx(1.0)


def test_voc_duplicate_is_false_positive_and_no_second_best() -> None:
    # Two ground-truth boxes; the second detection's best box is already taken: FP even though it
    # also overlaps the other box above the threshold (mmdetection does not try the next best).
    ev = VOCEvaluator(["a"])
    ev.add_ground_truth(0, np.array([[0, 0, 100, 100], [10, 0, 110, 100]], np.float32), np.array([0, 0]))
    ev.add(0, dets([[0, 0, 100, 100], [2, 0, 102, 100]], [0.9, 0.8], [0, 0]))
    r = ev.evaluate(iou_thrs=(0.5,))
    c = r.per_class[0][0]
    assert c.recall == pytest.approx(0.5)
    np.testing.assert_allclose(c.precisions, [1.0, 0.5])
    assert set(r) == {"mAP", "AP", "AP50"}


def test_voc_merge_equals_single() -> None:
    names = ["cat", "dog", "bird"]
    gts, all_dets = random_voc_case(5, 3)
    single = voc_evaluator(gts, all_dets, names).evaluate()
    a = voc_evaluator(
        {k: v for k, v in gts.items() if k % 2}, {k: v for k, v in all_dets.items() if k % 2}, names
    )
    b = voc_evaluator(
        {k: v for k, v in gts.items() if not k % 2}, {k: v for k, v in all_dets.items() if not k % 2}, names
    )
    a.merge(b)
    assert dict(a.evaluate()) == pytest.approx(dict(single))


def test_voc_table_reproduces_the_seed_layout() -> None:
    seed_table = """\
+-------------+------+-------+--------+-------+
| class       | gts  | dets  | recall | ap    |
+-------------+------+-------+--------+-------+
| aeroplane   | 285  | 4154  | 0.081  | 0.030 |
| bicycle     | 337  | 7124  | 0.125  | 0.108 |
| diningtable | 206  | 13542 | 0.150  | 0.117 |
| person      | 4528 | 51959 | 0.099  | 0.037 |
+-------------+------+-------+--------+-------+
| mAP         |      |       |        | 0.069 |
+-------------+------+-------+--------+-------+"""
    rows = [("aeroplane", 285, 4154, 0.081, 0.030), ("bicycle", 337, 7124, 0.125, 0.108),
            ("diningtable", 206, 13542, 0.150, 0.117), ("person", 4528, 51959, 0.099, 0.037)]  # fmt: skip
    maps = [
        0.759393,
        0.744544,
        0.724239,
        0.693551,
        0.639848,
        0.576284,
        0.489098,
        0.378586,
        0.226534,
        0.068834,
    ]
    result = VOCResult(mAP=maps[0], AP=sum(maps) / 10)
    result.iou_thrs = list(VOC_IOU_THRS)
    result.maps = maps
    result.per_class = [[VOCClassResult(n, g, d, r, a) for n, g, d, r, a in rows] for _ in maps]
    result.mode = "11points"
    text = format_voc_table(result, iou_index=9)
    lines = text.splitlines()
    assert "\n".join(lines[:10]) == seed_table
    assert lines[10] == f"AP:  {sum(maps) / 10}"
    assert lines[11] == (
        "['AP50: 0.759393', 'AP55: 0.744544', 'AP60: 0.724239', 'AP65: 0.693551', 'AP70: 0.639848', "
        "'AP75: 0.576284', 'AP80: 0.489098', 'AP85: 0.378586', 'AP90: 0.226534', 'AP95: 0.068834']"
    )
    assert lines[12] == "{'mAP': 0.759393}" and len(lines) == 13  # the seed's last line (mAP = AP50)
    # the default table is the IoU 0.5 one
    assert format_voc_table(result).splitlines()[8].endswith("| 0.759 |")


def test_voc_thresholds_are_the_accumulated_ones() -> None:
    assert VOC_IOU_THRS[0] == 0.5 and len(VOC_IOU_THRS) == 10
    assert VOC_IOU_THRS[2] == 0.5 + 0.05 + 0.05  # 0.6000000000000001, as the LD code's `iou_thr += 0.05`
    # an IoU of exactly 0.75 (representable) does not reach the accumulated 0.7500000000000002
    ev = VOCEvaluator(["a"])
    ev.add_ground_truth(0, np.array([[0, 0, 100, 100]], np.float32), np.array([0]))
    ev.add(0, dets([[0, 0, 100, 75]], [0.9], [0]))
    r = ev.evaluate()
    assert r["AP70"] == pytest.approx(1.0) and r["AP75"] == 0.0


def test_voc_empty() -> None:
    r = VOCEvaluator(["a", "b"]).evaluate()
    assert r["mAP"] == 0.0 and r["AP"] == 0.0
    ev = VOCEvaluator(["a"])
    ev.add_ground_truth(0, np.zeros((1, 4), np.float32) + [0, 0, 5, 5], np.array([0]))
    ev.add(0, dets([], [], []))
    r = ev.evaluate()
    assert r["mAP"] == 0.0 and r.per_class[0][0].num_dets == 0 and r.per_class[0][0].recall == 0.0
    assert "| a     | 1   | 0    | 0.000  | 0.000 |" in format_voc_table(r)
