"""The faster-coco-eval backend gives pycocotools' numbers on the same detections (all 12 stats and the
whole precision array), and the numbers read from the precision array (AP per IoU threshold, AP per
class) agree with COCOeval's own summary."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from locdistill.evaluation import (
    COCO_METRIC_NAMES,
    CocoEvaluator,
    ap_per_iou,
    classwise_ap,
    format_classwise_table,
)
from locdistill.structures import Detections


def noisy_detections(gt: dict[str, Any], per_image: int, seed: int = 0) -> dict[int, Detections]:
    """Jittered copies of the true boxes (sometimes the wrong class) plus false positives."""
    rng = np.random.default_rng(seed)
    cat_ids = sorted(c["id"] for c in gt["categories"])
    label = {c: i for i, c in enumerate(cat_ids)}
    out: dict[int, Detections] = {}
    by_image: dict[int, list[dict]] = {im["id"]: [] for im in gt["images"]}
    for ann in gt["annotations"]:
        by_image[ann["image_id"]].append(ann)
    for image_id, anns in by_image.items():
        boxes, scores, labels = [], [], []
        for ann in anns:
            x, y, w, h = ann["bbox"]
            for _ in range(2):
                j = rng.normal(0, 0.1, 4) * [w, h, w, h]
                boxes.append([x + j[0], y + j[1], x + w + j[2], y + h + j[3]])
                scores.append(float(rng.uniform(0.3, 1)))
                labels.append(
                    label[ann["category_id"]] if rng.random() < 0.9 else int(rng.integers(len(cat_ids)))
                )
        while len(boxes) < per_image:
            x, y = rng.uniform(0, 400, 2)
            boxes.append([x, y, x + rng.uniform(5, 200), y + rng.uniform(5, 200)])
            scores.append(float(rng.uniform(0, 0.5)))
            labels.append(int(rng.integers(len(cat_ids))))
        b = torch.tensor(boxes, dtype=torch.float32)[:per_image]
        s = torch.tensor(scores, dtype=torch.float32)[:per_image]
        order = s.argsort(descending=True)
        out[image_id] = Detections(b[order], s[order], torch.tensor(labels[:per_image])[order])
    return out


@pytest.fixture(scope="module")
def coco128_gt(coco128_dir: Path) -> dict[str, Any]:
    return json.loads((coco128_dir / "annotations" / "instances_train2017.json").read_text())


def evaluate(gt: dict[str, Any], detections: dict[int, Detections], backend: str) -> CocoEvaluator:
    ev = CocoEvaluator(gt, sorted(c["id"] for c in gt["categories"]), backend=backend)
    for image_id, det in detections.items():
        ev.add(image_id, det)
    ev.evaluate()
    return ev


@pytest.mark.parametrize("per_image", [0, 20])
def test_faster_coco_eval_equals_pycocotools(coco128_gt: dict[str, Any], per_image: int) -> None:
    pytest.importorskip("faster_coco_eval")
    detections = noisy_detections(coco128_gt, per_image) if per_image else {}
    slow = evaluate(coco128_gt, detections, "pycocotools")
    fast = evaluate(coco128_gt, detections, "faster_coco_eval")
    a, b = slow.evaluate(), fast.evaluate()
    assert list(a) == list(b) == list(COCO_METRIC_NAMES)
    assert a == pytest.approx(b, abs=1e-6)  # in practice equal to the last bit
    if per_image:
        assert a["AP"] > 0.2 and a["APs"] >= 0 and a["AR100"] > a["AP"]
        p_slow, p_fast = slow.coco_eval.eval["precision"], fast.coco_eval.eval["precision"]
        assert p_slow.shape == p_fast.shape == (10, 101, 80, 4, 3)
        np.testing.assert_allclose(p_fast, p_slow, atol=1e-12)
        assert ap_per_iou(fast.coco_eval) == pytest.approx(ap_per_iou(slow.coco_eval), abs=1e-12)
    else:  # no detections: 0 where ground truth exists, -1 where the area range holds none
        assert all(v in (0.0, -1.0) for v in b.values())


def test_unknown_or_missing_backend_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match="unknown COCO evaluation backend 'fast'"):
        CocoEvaluator({"images": [], "annotations": [], "categories": []}, [1], backend="fast")
    import builtins

    real_import = builtins.__import__

    def no_faster(name: str, *args: Any, **kwargs: Any) -> Any:
        if name.startswith("faster_coco_eval"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_faster)
    with pytest.raises(ValueError, match=r"pip install 'locdistill\[fast-eval\]'"):
        CocoEvaluator({"images": [], "annotations": [], "categories": []}, [1], backend="faster_coco_eval")


def test_ap_per_iou_and_per_class_agree_with_the_summary(coco128_gt: dict[str, Any]) -> None:
    ev = evaluate(coco128_gt, noisy_detections(coco128_gt, 20, seed=1), "pycocotools")
    stats = ev.coco_eval.stats
    by_iou = ap_per_iou(ev.coco_eval)
    assert list(by_iou) == ["AP50", "AP55", "AP60", "AP65", "AP70", "AP75", "AP80", "AP85", "AP90", "AP95"]
    assert by_iou["AP50"] == stats[1] and by_iou["AP75"] == stats[2]
    assert np.mean(list(by_iou.values())) == pytest.approx(stats[0], abs=1e-12)
    values = list(by_iou.values())
    assert all(x >= y for x, y in zip(values, values[1:])) and values[0] > values[-1]
    cat_ids = sorted(c["id"] for c in coco128_gt["categories"])
    names = [c["name"] for c in sorted(coco128_gt["categories"], key=lambda c: c["id"])]
    counts = [
        sum(1 for a in coco128_gt["annotations"] if a["category_id"] == c and not a["iscrowd"])
        for c in cat_ids
    ]
    rows = classwise_ap(ev.coco_eval, names, counts)
    assert [r["class"] for r in rows][:3] == ["person", "bicycle", "car"] and rows[0]["gts"] == 254
    present = [r for r in rows if r["AP"] >= 0]
    assert len(present) == 71 and all(r["gts"] > 0 for r in present)  # coco128: 71 of 80 classes occur
    assert all(r["AP"] == -1.0 and r["gts"] == 0 for r in rows if r not in present)
    # every class with ground truth has all its IoU x recall entries defined, so the mean of the classes
    # is COCOeval's AP (and AP50, AP75)
    assert np.mean([r["AP"] for r in present]) == pytest.approx(stats[0], abs=1e-12)
    assert np.mean([r["AP50"] for r in present]) == pytest.approx(stats[1], abs=1e-12)
    table = format_classwise_table(rows)
    assert "| class " in table and "| person" in table and "n/a" in table  # absent classes read n/a
