"""The VOC evaluator against independent loops, difficult objects, merging and the seed's table."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from locdistill.evaluation import (
    VOC_IOU_THRS,
    VOCClassResult,
    VOCEvaluator,
    VOCResult,
    format_voc_table,
)
from tests.evaluation.helpers import dets


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
