"""Where one plain GFL training step spends its time (``torch.profiler``, CPU).

The setup of ``bench_train_step.py`` (GFL R18 at real width, batch 2 of 512x512 random uint8 BGR
images, 5 boxes each, SGD). The step runs in named parts: preprocessing, backbone, FPN and head
forward, ATSS and targets, losses, backward, optimizer. The backward is split by which forward part
made each autograd node (matched by the profiler's sequence numbers). Host syncs are the
``aten::_local_scalar_dense`` (``.item()``, ``bool()``) and ``aten::nonzero`` calls. Times are the
median over ``--repeats`` profiled steps after ``--warmup`` steps. Writes JSON.

    python benchmarks/profile_train_step.py --out benchmarks/results/profile_train_step.json
    python benchmarks/profile_train_step.py --bf16 --channels-last   # the fast CPU setting
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import torch
from torch.profiler import ProfilerActivity, profile, record_function

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write_results  # noqa: E402
from bench_train_step import preprocess, r18_student, random_inputs  # noqa: E402

from locdistill.config import OptimConfig  # noqa: E402
from locdistill.data.transforms import Normalize  # noqa: E402
from locdistill.engine.optim import build_optimizer  # noqa: E402

FORWARD_PARTS = ("preprocess", "backbone", "fpn", "head", "targets", "losses")
PARTS = (*FORWARD_PARTS, "backward", "optimizer")
SYNC_OPS = ("aten::_local_scalar_dense", "aten::nonzero")


def profile_once(step: Any) -> dict[str, Any]:
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        step()
    events = prof.events()

    def part_of(e: Any) -> str | None:
        p = e
        while p is not None:
            if p.name.startswith("part:"):
                return p.name[5:]
            p = p.cpu_parent
        return None

    owner: dict[int, str] = {}
    for e in events:
        part = part_of(e)
        if part in FORWARD_PARTS and e.sequence_nr >= 0 and not e.name.startswith("autograd::"):
            owner.setdefault(e.sequence_nr, part)
    ms: dict[str, float] = defaultdict(float)
    syncs: dict[str, int] = defaultdict(int)
    for e in events:
        if e.name.startswith("part:"):
            ms[e.name[5:]] += e.cpu_time_total / 1e3
        elif e.name.startswith("autograd::engine::evaluate_function"):
            name = owner.get(e.sequence_nr, "other")
            if e.name.endswith("AccumulateGrad"):
                name = "accumulate_grad"
            ms[f"backward:{name}"] += e.cpu_time_total / 1e3
        if e.name in SYNC_OPS:
            syncs[e.name] += 1
    return {"ms": dict(ms), "syncs": dict(syncs)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--boxes", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--bf16", action="store_true", help="bfloat16 autocast (train.amp on CPU)")
    parser.add_argument("--channels-last", action="store_true", help="train.channels_last")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    model = r18_student(args.channels_last)
    optimizer = build_optimizer(model, OptimConfig(), 1e-4)
    normalize = Normalize(model.mean, model.std)
    raw = random_inputs(args.batch, args.size, args.boxes, model.num_classes)

    def step() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.bf16):
            forward_backward()

    def forward_backward() -> None:
        with record_function("part:preprocess"):
            batch = preprocess(raw, normalize)
            if args.channels_last:
                batch.images = batch.images.contiguous(memory_format=torch.channels_last)
        with record_function("part:backbone"):
            feats = model.backbone(batch.images)
        with record_function("part:fpn"):
            feats = model.neck(feats)
        with record_function("part:head"):
            out = model.head(feats)
        with record_function("part:targets"):
            assignment = model.assign(out, batch.targets, batch.metas)
        with record_function("part:losses"):
            losses = model.loss(out, batch.targets, batch.metas, assignment)
            loss = sum(losses.values())
            finite = bool(torch.isfinite(loss))  # type: ignore[arg-type]
        assert finite
        with record_function("part:backward"):
            optimizer.zero_grad(set_to_none=True)
            loss.backward()  # type: ignore[union-attr]
        with record_function("part:optimizer"):
            optimizer.step()

    for _ in range(args.warmup):
        step()
    runs = [profile_once(step) for _ in range(args.repeats)]
    keys = sorted({k for r in runs for k in r["ms"]})
    ms = {k: statistics.median(r["ms"].get(k, 0.0) for r in runs) for k in keys}
    total = sum(ms[p] for p in PARTS if p in ms)
    rows = [{"part": k, "ms": round(v, 2), "share_of_step": round(v / total, 4)} for k, v in ms.items()]
    print("\n".join(f"{r['part']:28s} {r['ms']:9.1f} ms  {100 * r['share_of_step']:5.1f} %" for r in rows))
    write_results(
        args.out,
        "profile_train_step",
        {"parts": rows, "step_ms": round(total, 1), "host_syncs_per_step": runs[-1]["syncs"]},
        setup={
            "model": "GFL R18, FPN/head 256, 4 stacked convs, random init",
            "batch": args.batch,
            "size": args.size,
            "boxes_per_image": args.boxes,
            "threads": args.threads,
            "repeats": args.repeats,
            "bf16_autocast": args.bf16,
            "channels_last": args.channels_last,
            "note": "profiler overhead included; parts nest (backward:* lie inside backward)",
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
