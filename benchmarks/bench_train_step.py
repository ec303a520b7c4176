"""Training-step time: plain GFL vs LD, measured side by side in one run.

GFL R18 at real width (FPN/head 256, 4 stacked convs), batch 2 of 512x512, 5 random boxes per image,
random init, SGD step included; the same with LD (Main LD + VLR LD + Main KD) from a GFL R101 teacher.
Also times the teacher's forward pass alone (inference mode), a step of the teacher's forward followed
by a plain step (an LD step without the LD terms), and the LD terms alone (VLR region, Main LD, VLR LD
and Main KD, forward and backward down to the head outputs, on fixed teacher outputs), so that the LD
overhead beyond the teacher is visible and its parts are named. Writes JSON.

    python benchmarks/bench_train_step.py --out benchmarks/results/train_step.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from locdistill.benchmark import environment
from locdistill.config import DistillConfig, LDTermConfig, ModelConfig, VLRConfig
from locdistill.distill.distiller import Distiller
from locdistill.models.gfl import build_gfl
from locdistill.models.gfl_head import HeadOutputs
from locdistill.structures import Batch, ImageMeta, Targets


def random_batch(batch: int, size: int, boxes: int, num_classes: int, seed: int = 0) -> Batch:
    g = torch.Generator().manual_seed(seed)
    targets, metas = [], []
    for i in range(batch):
        xy = torch.rand(boxes, 2, generator=g) * size * 0.7
        wh = 16 + torch.rand(boxes, 2, generator=g) * size * 0.3
        targets.append(
            Targets(
                torch.cat([xy, (xy + wh).clamp(max=size)], 1),
                torch.randint(0, num_classes, (boxes,), generator=g),
            )
        )
        metas.append(ImageMeta(i, f"random{i}", (size, size), (size, size), (size, size)))
    return Batch(torch.randn(batch, 3, size, size, generator=g), targets, metas)


def model_cfg(depth: int) -> ModelConfig:
    cfg = ModelConfig()
    cfg.backbone.name = f"resnet{depth}"
    return cfg


def time_steps(step, iters: int, warmup: int) -> list[float]:
    times = []
    for i in range(warmup + iters):
        t0 = time.perf_counter()
        step()
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--iters", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    student = build_gfl(model_cfg(18)).train()
    teacher = build_gfl(model_cfg(101)).eval()
    batch = random_batch(args.batch, args.size, 5, 80)
    distill_cfg = DistillConfig(
        main_ld=LDTermConfig(True, 0.25, 10.0),
        vlr_ld=VLRConfig(True, 0.25, 10.0),
        main_kd=LDTermConfig(True, 10.0, 2.0),
    )
    distiller = Distiller(student, teacher, distill_cfg, images_per_gpu=args.batch).train()
    opt = torch.optim.SGD([p for p in distiller.parameters() if p.requires_grad], lr=1e-4, momentum=0.9)

    def plain_step() -> None:
        losses = student.loss(student(batch.images), batch.targets, batch.metas)
        opt.zero_grad(set_to_none=True)
        sum(losses.values()).backward()
        opt.step()

    def ld_step() -> None:
        losses = distiller(batch)
        opt.zero_grad(set_to_none=True)
        sum(losses.values()).backward()
        opt.step()

    def teacher_forward() -> None:
        distiller.teacher_outputs(batch.images)

    def teacher_then_plain_step() -> None:  # an LD step without the LD terms
        teacher_forward()
        plain_step()

    # The LD terms on their own: the student's head outputs as leaves, the teacher's fixed.
    with torch.no_grad():
        raw = student(batch.images)
    leaves = HeadOutputs(
        [c.float().requires_grad_() for c in raw.cls_scores],
        [r.float().requires_grad_() for r in raw.bbox_preds],
    )
    fixed_assignment = student.assign(leaves, batch.targets, batch.metas)
    fixed_teacher = distiller.teacher_outputs(batch.images)

    def ld_terms() -> None:
        for t in [*leaves.cls_scores, *leaves.bbox_preds]:
            t.grad = None
        terms = distiller.distill_losses(leaves, fixed_teacher, fixed_assignment, batch)
        sum(terms.values()).backward()

    results = {}
    # Interleave the three measurements so that machine noise hits all of them alike.
    plain, ld, tf, both, terms = [], [], [], [], []
    for _ in range(2):
        plain += time_steps(plain_step, args.iters, args.warmup)
        ld += time_steps(ld_step, args.iters, args.warmup)
        tf += time_steps(teacher_forward, args.iters, args.warmup)
        both += time_steps(teacher_then_plain_step, args.iters, args.warmup)
        terms += time_steps(ld_terms, args.iters, args.warmup)
    measured = (
        ("plain_step", plain),
        ("ld_step", ld),
        ("teacher_forward", tf),
        ("teacher_then_plain_step", both),
        ("ld_terms", terms),
    )
    for name, values in measured:
        results[name] = {
            "median_s": statistics.median(values),
            "mean_s": statistics.fmean(values),
            "n": len(values),
        }
    results["ld_over_plain"] = results["ld_step"]["median_s"] / results["plain_step"]["median_s"]
    results["ld_overhead_beyond_teacher_s"] = (
        results["ld_step"]["median_s"]
        - results["plain_step"]["median_s"]
        - results["teacher_forward"]["median_s"]
    )
    # The LD step against the same step without the LD terms (teacher forward, then a plain step): what
    # LD itself adds. The rest of ld_overhead_beyond_teacher_s is the cost of running two networks back
    # to back (caches and allocator; the teacher alone is timed warm), not LD computation.
    results["ld_step_minus_teacher_then_plain_s"] = (
        results["ld_step"]["median_s"] - results["teacher_then_plain_step"]["median_s"]
    )
    results["back_to_back_cost_s"] = (
        results["teacher_then_plain_step"]["median_s"]
        - results["plain_step"]["median_s"]
        - results["teacher_forward"]["median_s"]
    )
    results["setup"] = {
        "student": "GFL R18, FPN/head 256, 4 stacked convs, random init",
        "teacher": "GFL R101, FPN/head 256, random init",
        "ld_terms": "main LD + VLR LD + main KD",
        "batch": args.batch,
        "size": args.size,
        "boxes_per_image": 5,
    }
    results["environment"] = environment()
    print(json.dumps(results, indent=2))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
