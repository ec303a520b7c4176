"""Training throughput on a CUDA GPU: images/s of plain GFL and LD steps under AMP, channels-last and
torch.compile. Run through ``benchmarks/gpu.sh``.

Default setup (the seed's COCO 1x schedule): GFL R18 at real width (FPN/head 256, 4 stacked convs),
batch 16 of 800x1333 (padded to 800x1344), 5 random boxes per image; LD is Main LD from a GFL R101
teacher. One fixed batch of normalised images lives on the GPU, so the data pipeline is not timed;
each timed step is forward, losses, backward and the optimizer step (with a GradScaler in float16),
synchronised. Each combination of ``--precisions`` x ``--variants`` x ``--kinds`` gets fresh models
with the same seed; images/s = batch / median step time over ``--iters`` steps after ``--warmup``.

``--dry-run`` checks the script itself on the CPU: tiny models (ResNet-18 at base width 8, FPN/head 16,
one stacked conv), batch 2 of 64x96, one warm-up and one timed step, written like a real result but
marked ``dry_run``. Without ``--dry-run`` the script refuses to run when there is no CUDA device.

    python benchmarks/bench_gpu.py --out benchmarks/results/gpu_train_step.json
    python benchmarks/bench_gpu.py --dry-run --variants eager --out /tmp/dry.json
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import time_call, write_results  # noqa: E402

from locdistill.config import DistillConfig, LDTermConfig, ModelConfig, OptimConfig, VLRConfig  # noqa: E402
from locdistill.distill.distiller import Distiller  # noqa: E402
from locdistill.engine.build import DetectorLoss  # noqa: E402
from locdistill.engine.optim import build_optimizer  # noqa: E402
from locdistill.engine.performance import compile_training_module  # noqa: E402
from locdistill.models.detectors.gfl import build_gfl  # noqa: E402
from locdistill.structures import Batch, ImageMeta, Targets  # noqa: E402

PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
VARIANT_SETTINGS = ("eager", "channels_last", "compile")
KINDS = ("plain", "ld")


class NoCudaError(RuntimeError):
    """The benchmark needs a CUDA device and there is none."""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--height", type=int, default=800)
    parser.add_argument("--width", type=int, default=1333)
    parser.add_argument("--boxes", type=int, default=5)
    parser.add_argument(
        "--precisions", default="bf16,fp16,fp32", help=f"comma-separated of {list(PRECISIONS)}"
    )
    parser.add_argument(
        "--variants",
        default="eager,channels_last,compile,channels_last+compile",
        help=f"comma-separated; each a '+'-joined subset of {VARIANT_SETTINGS}",
    )
    parser.add_argument("--kinds", default="plain,ld", help="comma-separated of plain, ld")
    parser.add_argument("--iters", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument(
        "--dry-run", action="store_true", help="tiny models on the CPU: checks the script only"
    )
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    args.precisions = split_checked(parser, "--precisions", args.precisions, PRECISIONS)
    args.kinds = split_checked(parser, "--kinds", args.kinds, KINDS)
    args.variants = [v for v in args.variants.split(",") if v]
    for v in args.variants:
        split_checked(parser, "--variants", v.replace("+", ","), VARIANT_SETTINGS)
    if args.dry_run:
        args.batch, args.height, args.width = 2, 64, 96
        args.iters, args.warmup = 1, 1
    return args


def split_checked(parser: argparse.ArgumentParser, flag: str, value: str, allowed: Any) -> list[str]:
    items = [x for x in value.split(",") if x]
    bad = [x for x in items if x not in allowed]
    if bad or not items:
        parser.error(f"{flag}: {bad or value!r} not among {list(allowed)}")
    return items


def model_cfg(depth: int, tiny: bool) -> ModelConfig:
    cfg = ModelConfig()
    cfg.backbone.name = f"resnet{depth}"
    if tiny:
        cfg.backbone.base_width = 8
        cfg.neck.out_channels = cfg.head.feat_channels = 16
        cfg.head.stacked_convs, cfg.head.norm_groups = 1, 4
    return cfg


def random_batch(args: argparse.Namespace, device: torch.device) -> Batch:
    g = torch.Generator().manual_seed(0)
    h, w = args.height, args.width
    pad = (-(-h // 32) * 32, -(-w // 32) * 32)
    targets, metas = [], []
    for i in range(args.batch):
        xy = torch.rand(args.boxes, 2, generator=g) * torch.tensor([w * 0.7, h * 0.7])
        wh = 16 + torch.rand(args.boxes, 2, generator=g) * torch.tensor([w * 0.3, h * 0.3])
        boxes = torch.cat([xy, torch.minimum(xy + wh, torch.tensor([w, h]))], 1)
        targets.append(Targets(boxes, torch.randint(0, 80, (args.boxes,), generator=g)).to(device))
        metas.append(ImageMeta(i, f"random{i}", (h, w), (h, w), pad))
    images = torch.zeros(args.batch, 3, *pad)
    images[:, :, :h, :w] = torch.randn(args.batch, 3, h, w, generator=g)
    return Batch(images.to(device), targets, metas)


def measure(args: argparse.Namespace, device: torch.device, precision: str, variant: str, kind: str) -> dict:
    settings = variant.split("+")
    dtype = PRECISIONS[precision]
    torch.manual_seed(0)
    student = build_gfl(model_cfg(18, args.dry_run)).train()
    if kind == "ld":
        teacher = build_gfl(model_cfg(101, args.dry_run)).eval()
        distill = DistillConfig(LDTermConfig(True, 0.25, 10.0), VLRConfig(False), LDTermConfig(False))
        module: torch.nn.Module = Distiller(student, teacher, distill, images_per_gpu=args.batch)
    else:
        module = DetectorLoss(student)
    module.to(device).train()
    batch = random_batch(args, device)
    if "channels_last" in settings:
        module.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        batch.images = batch.images.contiguous(memory_format=torch.channels_last)
    if "compile" in settings:
        compile_training_module(module)
    optimizer = build_optimizer(student, OptimConfig(), 1e-4)
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
    cuda = device.type == "cuda"

    def step() -> None:
        with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            losses = module(batch)
        loss: torch.Tensor = sum(losses.values())  # type: ignore[assignment]
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()

    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
    timing = time_call(step, args.iters, args.warmup, cuda=cuda)
    return {
        "precision": precision,
        "variant": variant,
        "kind": kind,
        **timing,
        "images_per_s": args.batch / timing["median_s"],
        "peak_memory_mb": torch.cuda.max_memory_allocated(device) / 2**20 if cuda else None,
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not args.dry_run and not torch.cuda.is_available():
        print(
            "error: benchmarks/bench_gpu.py needs a CUDA device and torch.cuda.is_available() is False "
            f"(torch {torch.__version__}); run it on a GPU machine, or pass --dry-run to check it on the CPU",
            file=sys.stderr,
        )
        return 2
    device = torch.device("cpu") if args.dry_run else torch.device("cuda")
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    rows = []
    for precision in args.precisions:
        for variant in args.variants:
            for kind in args.kinds:
                rows.append(measure(args, device, precision, variant, kind))
                r = rows[-1]
                print(
                    f"{precision:5s} {variant:24s} {kind:5s} {r['images_per_s']:8.2f} img/s", file=sys.stderr
                )
    setup = {
        "student": "GFL R18, FPN/head 256, 4 stacked convs" if not args.dry_run else "tiny GFL R18 (dry run)",
        "teacher": "GFL R101 (Main LD)",
        "batch": args.batch,
        "input": [args.height, args.width],
        "boxes_per_image": args.boxes,
        "iters": args.iters,
        "warmup": args.warmup,
        "dry_run": args.dry_run,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
    }
    write_results(args.out, "gpu_train_step", rows, setup=setup)
    return 0


if __name__ == "__main__":
    sys.exit(main())
