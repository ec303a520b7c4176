"""Benchmark of :class:`locdistill.evaluation.CocoEvaluator` (collecting, and scoring with pycocotools
and, when installed, faster-coco-eval side by side).

Ground truth: the COCO json of ``shared/data/coco128`` (128 real COCO images, 939 boxes incl. 10
crowd) when it is found, else a synthetic COCO-like set. Detections imitate a detector's output: per
ground-truth box a few jittered copies (mostly the right class), plus false positives, up to 100 per
image, with detector-like scores. Timed: ``add`` for every image, ``results()`` (the json list) and
``evaluate()`` (loadRes + COCOeval evaluate/accumulate/summarize), median over repeats.

Usage: ``python benchmarks/bench_coco_eval.py --out results.json [--dets-per-image 30 100]``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import time_call, time_interleaved, write_results  # noqa: E402

from locdistill.evaluation import COCO_METRIC_NAMES, CocoEvaluator  # noqa: E402
from locdistill.structures import Detections  # noqa: E402

COCO128_JSON = "data/coco128/annotations/instances_train2017.json"


def find_coco128() -> Path | None:
    """``shared/data/coco128``'s json, looked up from the repository and its parents."""
    here = Path(__file__).resolve()
    for base in [here.parent, *here.parents]:
        for cand in (base / "shared" / COCO128_JSON, base / "../shared" / COCO128_JSON):
            if cand.is_file():
                return cand.resolve()
    return None


def synthetic_gt(num_images: int = 500, seed: int = 0) -> dict[str, Any]:
    """COCO-like ground truth: 80 categories with COCO's sparse ids, 1-20 boxes per image, 1% crowd."""
    rng = np.random.default_rng(seed)
    cat_ids = [i for i in range(1, 91) if i not in (12, 26, 29, 30, 45, 66, 68, 69, 71, 83)]
    images: list[dict[str, Any]] = []
    anns: list[dict[str, Any]] = []
    for image_id in range(1, num_images + 1):
        h, w = int(rng.integers(300, 640)), 640
        images.append({"id": image_id, "file_name": f"{image_id:012d}.jpg", "height": h, "width": w})
        for _ in range(int(rng.integers(1, 21))):
            bw, bh = np.exp(rng.uniform(np.log(6), np.log(500), 2))
            x, y = rng.uniform(0, w - min(bw, w - 1)), rng.uniform(0, h - min(bh, h - 1))
            bw, bh = min(bw, w - x), min(bh, h - y)
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": image_id,
                    "category_id": int(rng.choice(cat_ids)),
                    "bbox": [float(x), float(y), float(bw), float(bh)],
                    "area": float(bw * bh),
                    "iscrowd": int(rng.random() < 0.01),
                }
            )
    return {"images": images, "annotations": anns, "categories": [{"id": c, "name": str(c)} for c in cat_ids]}


def fake_detections(gt: dict[str, Any], dets_per_image: int, seed: int = 0) -> dict[int, Detections]:
    """Detector-like output per image: jittered true boxes and false positives, top ``dets_per_image``."""
    rng = np.random.default_rng(seed)
    cat_ids = sorted(c["id"] for c in gt["categories"])
    label_of = {c: i for i, c in enumerate(cat_ids)}
    by_image: dict[int, list[dict[str, Any]]] = {img["id"]: [] for img in gt["images"]}
    for ann in gt["annotations"]:
        by_image[ann["image_id"]].append(ann)
    sizes = {img["id"]: (img["height"], img["width"]) for img in gt["images"]}
    out = {}
    for image_id, anns in by_image.items():
        h, w = sizes[image_id]
        boxes, scores, labels = [], [], []
        for ann in anns:
            x, y, bw, bh = ann["bbox"]
            for _ in range(int(rng.integers(1, 4))):
                j = rng.normal(0, 0.08, 4) * [bw, bh, bw, bh]
                boxes.append([x + j[0], y + j[1], x + bw + j[2], y + bh + j[3]])
                scores.append(float(rng.beta(5, 2)))
                right = rng.random() < 0.85
                labels.append(label_of[ann["category_id"]] if right else int(rng.integers(0, len(cat_ids))))
        while len(boxes) < dets_per_image:
            bw, bh = np.exp(rng.uniform(np.log(8), np.log(400), 2))
            x, y = rng.uniform(0, w), rng.uniform(0, h)
            boxes.append([x, y, x + bw, y + bh])
            scores.append(float(rng.beta(1, 8)))
            labels.append(int(rng.integers(0, len(cat_ids))))
        b = torch.tensor(boxes, dtype=torch.float32)
        b[:, 0::2] = b[:, 0::2].clamp(0, w)
        b[:, 1::2] = b[:, 1::2].clamp(0, h)
        s = torch.tensor(scores, dtype=torch.float32)
        lab = torch.tensor(labels, dtype=torch.int64)
        ok = (b[:, 2] > b[:, 0]) & (b[:, 3] > b[:, 1])
        b, s, lab = b[ok], s[ok], lab[ok]
        order = s.argsort(descending=True)[:dets_per_image]
        out[image_id] = Detections(b[order], s[order], lab[order])
    return out


def backends() -> list[str]:
    """pycocotools, and faster_coco_eval when the package is installed."""
    try:
        import faster_coco_eval  # noqa: F401
    except ImportError:
        print("faster-coco-eval not installed: timing pycocotools only", file=sys.stderr)
        return ["pycocotools"]
    return ["pycocotools", "faster_coco_eval"]


def run_case(name: str, gt: dict[str, Any], dets_per_image: int, repeats: int) -> dict[str, Any]:
    cat_ids = sorted(c["id"] for c in gt["categories"])
    detections = fake_detections(gt, dets_per_image)

    def collect(backend: str = "pycocotools") -> CocoEvaluator:
        ev = CocoEvaluator(gt, cat_ids, backend=backend)
        for image_id, det in detections.items():
            ev.add(image_id, det)
        return ev

    ev = collect()
    t_collect = time_call(collect, repeats)
    t_results = time_call(ev.results, repeats)
    t0 = time.perf_counter()
    metrics = ev.evaluate()
    first = time.perf_counter() - t0
    evaluators = {b: collect(b) for b in backends()}
    stats = {b: e.evaluate() for b, e in evaluators.items()}  # also the warm-up of each
    timed = time_interleaved({b: e.evaluate for b, e in evaluators.items()}, repeats, warmup=0)
    row: dict[str, Any] = {
        "ground_truth": name,
        "images": len(gt["images"]),
        "gt_boxes": len(gt["annotations"]),
        "detections": len(ev),
        "collect_ms": round(t_collect["median_s"] * 1e3, 2),
        "results_json_ms": round(t_results["median_s"] * 1e3, 2),
        "evaluate_ms": round(timed["pycocotools"]["median_s"] * 1e3, 2),
        "evaluate_first_call_ms": round(first * 1e3, 2),
        "AP": round(metrics["AP"], 4),
        "AP50": round(metrics["AP50"], 4),
        "AR100": round(metrics["AR100"], 4),
        "evaluate_by_backend_ms": {
            b: {k.replace("_s", "_ms"): round(v * 1e3, 2) for k, v in t.items() if k.endswith("_s")}
            for b, t in timed.items()
        },
    }
    if "faster_coco_eval" in timed:
        fast, slow = timed["faster_coco_eval"]["median_s"], timed["pycocotools"]["median_s"]
        row["faster_over_pycocotools"] = round(fast / slow, 3)
        row["max_abs_stat_diff"] = max(
            abs(stats["faster_coco_eval"][k] - stats["pycocotools"][k]) for k in COCO_METRIC_NAMES
        )
    return row


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=None, help="JSON results file")
    ap.add_argument("--dets-per-image", type=int, nargs="+", default=[30, 100])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--synthetic-images", type=int, default=500)
    ap.add_argument("--coco-json", default=None, help="ground-truth json (default: shared coco128)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    cases: list[tuple[str, dict[str, Any]]] = []
    path = Path(args.coco_json) if args.coco_json else find_coco128()
    if path is not None and path.is_file():
        cases.append((str(path.name if args.coco_json else "coco128"), json.loads(path.read_text())))
    else:
        print("coco128 json not found; using synthetic ground truth only", file=sys.stderr)
    cases.append((f"synthetic_{args.synthetic_images}", synthetic_gt(args.synthetic_images)))
    results = [run_case(name, gt, k, args.repeats) for name, gt in cases for k in args.dets_per_image]
    return write_results(args.out, "bench_coco_eval", results, settings={"repeats": args.repeats})


if __name__ == "__main__":
    main()
