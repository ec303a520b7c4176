"""The SGD step alone for GFL R18's trainable parameters (19.3 M, real width): PyTorch's for-loop,
foreach and fused kernels (``train.optim.implementation``), interleaved, with momentum 0.9 and weight
decay 1e-4 on random gradients. Medians, min and max in milliseconds. Writes JSON.

    python benchmarks/bench_sgd.py --out benchmarks/results/sgd.json
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import time_interleaved, write_results  # noqa: E402
from bench_train_step import r18_student  # noqa: E402

from locdistill.config import OptimConfig  # noqa: E402
from locdistill.engine.optim import build_optimizer  # noqa: E402

IMPLEMENTATIONS = ("for-loop", "foreach", "fused")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--channels-last", action="store_true", help="parameters in channels-last layout")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    model = r18_student(args.channels_last)
    trainable = [p for p in model.parameters() if p.requires_grad]
    for p in trainable:
        p.grad = torch.randn_like(p) * 1e-3
    steps = {}
    for impl in IMPLEMENTATIONS:
        cfg = OptimConfig()
        cfg.implementation = impl  # type: ignore[assignment]
        steps[impl] = build_optimizer(model, cfg, 1e-4).step
    timed = time_interleaved(steps, args.repeats, warmup=2)
    ms = {
        k: {"median_ms": t["median_s"] * 1e3, "min_ms": t["min_s"] * 1e3, "max_ms": t["max_s"] * 1e3}
        for k, t in timed.items()
    }
    base = timed["for-loop"]["median_s"]
    write_results(
        args.out,
        "sgd",
        {"milliseconds": ms, "ratio_to_for_loop": {k: t["median_s"] / base for k, t in timed.items()}},
        setup={
            "repeats": args.repeats,
            "parameters_million": round(sum(p.numel() for p in trainable) / 1e6, 2),
            "channels_last": args.channels_last,
            "threads": args.threads,
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
