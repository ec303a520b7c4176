"""``locdistill benchmark``: inference speed as the seed's ``tools/benchmark.py`` measures it.

Batch 1; the first ``warmup`` iterations are discarded; every timed iteration is synchronised (CUDA)
and includes post-processing. Network-only and post-processing times are reported separately so that
overhead is visible. Inputs are the config's test images when its dataset is readable, else random
images of ``--img-size``.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path
from typing import Any

import torch

from locdistill.models.gfl import GFL
from locdistill.structures import ImageMeta


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure_inference(
    model: GFL,
    images: list[tuple[torch.Tensor, ImageMeta]],
    num_iters: int,
    warmup: int,
    amp: bool = False,
    channels_last: bool = False,
) -> dict[str, Any]:
    """Time ``num_iters`` batch-1 inferences (cycling through ``images``) after ``warmup`` discarded ones.

    Returns per-image medians and means in milliseconds for ``network`` (forward only),
    ``postprocess`` (decode + NMS) and ``end_to_end``, and the FPS derived from the mean end-to-end time.
    """
    device = next(model.parameters()).device
    model.eval()
    if channels_last:
        model.to(memory_format=torch.channels_last)
    net, post, total = [], [], []
    autocast = torch.autocast(
        device.type, dtype=torch.float16 if device.type == "cuda" else torch.bfloat16, enabled=amp
    )
    with torch.inference_mode(), autocast:
        for i in range(warmup + num_iters):
            x, meta = images[i % len(images)]
            x = x.to(device)
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            _sync(device)
            t0 = time.perf_counter()
            out = model(x)
            _sync(device)
            t1 = time.perf_counter()
            model.predict(out, [meta], rescale=True)
            _sync(device)
            t2 = time.perf_counter()
            if i >= warmup:
                net.append(t1 - t0)
                post.append(t2 - t1)
                total.append(t2 - t0)

    def summary(values: list[float]) -> dict[str, float]:
        return {"median_ms": 1000 * statistics.median(values), "mean_ms": 1000 * statistics.fmean(values)}

    mean_total = statistics.fmean(total)
    return {
        "iterations": num_iters,
        "warmup": warmup,
        "network": summary(net),
        "postprocess": summary(post),
        "end_to_end": summary(total),
        "fps": 1.0 / mean_total,
        "postprocess_fraction": statistics.fmean(post) / mean_total,
    }


def environment() -> dict[str, Any]:
    """Where a figure was taken."""
    info: dict[str, Any] = {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "machine": platform.machine(),
        "processor": platform.processor() or _cpu_model(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    if torch.cuda.is_available():
        info["cuda_device"] = torch.cuda.get_device_name(0)
    return info


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def random_inputs(
    model: GFL, size: tuple[int, int], count: int = 4, seed: int = 0
) -> list[tuple[torch.Tensor, ImageMeta]]:
    """``count`` random normalised images of ``size`` (h, w) with their metas."""
    g = torch.Generator().manual_seed(seed)
    h, w = size
    pad = (-(-h // 32) * 32, -(-w // 32) * 32)
    out = []
    for i in range(count):
        x = torch.zeros(1, 3, *pad)
        x[..., :h, :w] = torch.randn(1, 3, h, w, generator=g)
        out.append((x, ImageMeta(i, f"random{i}", (h, w), (h, w), pad)))
    return out


def run_benchmark(args: argparse.Namespace) -> int:
    """``locdistill benchmark CONFIG [CKPT] [--num-images N] [--warmup W] [--img-size H W] ...``."""
    from locdistill.config import load_config
    from locdistill.models.gfl import build_gfl
    from locdistill.models.weights import load_detector_weights
    from locdistill.utils.fuse import fuse_conv_bn

    cfg = load_config(args.config, getattr(args, "set", None) or [])
    cfg.model.backbone.pretrained = False
    model = build_gfl(cfg.model)
    if getattr(args, "checkpoint", None):
        load_detector_weights(model, args.checkpoint)
    model.eval()
    fused = fuse_conv_bn(model) if args.fuse_conv_bn else 0
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model.to(device)
    if args.img_size:
        size = (int(args.img_size[0]), int(args.img_size[1]))
    else:
        long_side, short_side = cfg.data.img_scale
        size = (short_side, long_side)
    inputs = random_inputs(model, size)
    result = measure_inference(model, inputs, args.num_images, args.warmup, args.amp, args.channels_last)
    result.update(
        config=cfg.source,
        checkpoint=getattr(args, "checkpoint", None),
        input_size=list(size),
        fused_conv_bn=fused,
        amp=args.amp,
        channels_last=args.channels_last,
        device=str(device),
        environment=environment(),
    )
    print(
        f"{Path(cfg.source).name}: {result['fps']:.2f} FPS at batch 1, {size[0]}x{size[1]} on {device} "
        f"(end-to-end {result['end_to_end']['mean_ms']:.1f} ms = "
        f"network {result['network']['mean_ms']:.1f} ms "
        f"+ post-processing {result['postprocess']['mean_ms']:.1f} ms; {args.num_images} images after "
        f"{args.warmup} warm-up)"
    )
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2))
    return 0
