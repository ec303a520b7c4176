"""Inference at batch 1: end-to-end (network + post-processing) vs network only, GFL R18 at real
width, random init with the class bias raised so that post-processing sees a realistic number of
candidates (the ~1000-per-level cap is hit), at 512x512 and 800x1333. Writes JSON.

    python benchmarks/bench_inference.py --out benchmarks/results/inference.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from locdistill.benchmark import environment, measure_inference, random_inputs
from locdistill.config import ModelConfig
from locdistill.models.detectors.gfl import build_gfl


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--iters", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    cfg = ModelConfig()
    cfg.backbone.name = "resnet18"
    model = build_gfl(cfg).eval()
    with torch.no_grad():
        # Random init scores everything at the 0.01 prior; spread the scores so that thousands of
        # (anchor, class) pairs pass 0.05 as with a trained model on a busy image.
        torch.nn.init.normal_(model.head.gfl_cls.weight, 0, 0.02)
        model.head.gfl_cls.bias.fill_(-3.5)
    results = {"model": "GFL R18, FPN/head 256, nms iou 0.6, score_thr 0.05, nms_pre 1000, top 100"}
    for name, size in (("512x512", (512, 512)), ("800x1333", (800, 1333))):
        iters = args.iters if size[0] <= 512 else max(3, args.iters // 2)
        res = measure_inference(model, random_inputs(model, size, count=2), iters, args.warmup)
        with torch.inference_mode():
            x, meta = random_inputs(model, size, count=1)[0]
            dets = model.predict(model(x), [meta])
        res["detections_per_image"] = len(dets[0])
        results[name] = res
    results["environment"] = environment()
    print(json.dumps(results, indent=2))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
