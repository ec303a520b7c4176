"""``locdistill benchmark``: inference speed as the seed's ``tools/benchmark.py`` measures it.

Batch 1; the first ``warmup`` iterations are discarded; every timed iteration is synchronised (CUDA)
and includes post-processing. Network-only and post-processing times are reported separately so that
overhead is visible. Inputs are the config's test images through the test pipeline; with
``--img-size``, or when the dataset cannot be read, random images of that size (the config's scale).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any

import torch
import torchvision

from locdistill.config import Config
from locdistill.models.detectors.base import DenseDetector
from locdistill.structures import ImageMeta


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure_inference(
    model: DenseDetector[Any],
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
    """Where a figure was taken: versions, threads, CPU/GPU model, date, and the load average (other
    work on a shared machine skews timings)."""
    info: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": getattr(torchvision, "__version__", "unknown"),
        "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "platform": platform.platform(),
    }
    if torch.cuda.is_available():
        info["cuda_device"] = torch.cuda.get_device_name(0)
    with contextlib.suppress(OSError, AttributeError):  # no getloadavg on Windows
        info["loadavg"] = [round(float(x), 2) for x in os.getloadavg()]
    return info


def _cpu_model() -> str:
    """CPU model name from ``/proc/cpuinfo`` (Linux), else ``platform.processor()``."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def dataset_inputs(
    cfg: Config, model: DenseDetector[Any], count: int = 20
) -> tuple[list[tuple[torch.Tensor, ImageMeta]], str]:
    """The first ``count`` images of the config's test split (``data.test``, else ``data.val``) through
    the test pipeline (resize, normalise, pad), batch 1, with their metas; and a description of them."""
    from locdistill.data import build_dataset, build_test_loader

    split = cfg.data.test if cfg.data.test is not None else cfg.data.val
    dataset = build_dataset(split, cfg.data, train=False, mean=model.mean, std=model.std)
    loader = build_test_loader(dataset, 1, 0, False)
    out = []
    for batch in loader:
        out.append((batch.images, batch.metas[0]))
        if len(out) >= count:
            break
    if not out:
        raise ValueError(f"the {split.format} dataset at {split.root!r} has no images")
    return out, f"{split.format} images from {split.root} (first {len(out)}, cycled)"


def random_inputs(
    model: DenseDetector[Any], size: tuple[int, int], count: int = 4, seed: int = 0
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
    """``locdistill benchmark [CONFIG] [CKPT] [--num-images N] [--warmup W] [--img-size H W] ...``
    (a config alone times random weights; a checkpoint alone uses the config stored in it)."""
    from locdistill.config import load_config
    from locdistill.engine.device import pick_device
    from locdistill.models.build import build_detector
    from locdistill.models.from_checkpoint import build_detector_from_checkpoint
    from locdistill.utils.fuse import fuse_conv_bn

    overrides = getattr(args, "set", None) or []
    if getattr(args, "checkpoint", None):  # CONFIG may be None: the checkpoint's stored config
        model, info = build_detector_from_checkpoint(args.checkpoint, args.config, overrides)
        cfg = info.config
    else:  # random weights: timing only
        cfg = load_config(args.config, overrides)
        cfg.model.backbone.pretrained = False
        model = build_detector(cfg.model).eval()
    fused = fuse_conv_bn(model) if args.fuse_conv_bn else 0
    device = pick_device()
    model.to(device)
    long_side, short_side = cfg.data.img_scale
    size = (int(args.img_size[0]), int(args.img_size[1])) if args.img_size else (short_side, long_side)
    inputs: list[tuple[torch.Tensor, ImageMeta]] = []
    described = ""
    if not args.img_size:  # the seed's protocol: real test images through the test pipeline
        try:
            inputs, described = dataset_inputs(cfg, model)
        except (OSError, ValueError) as e:
            print(f"no test images ({' '.join(str(e).split())}): timing random inputs of {size[0]}x{size[1]}")
    if not inputs:
        inputs, described = random_inputs(model, size), f"random {size[0]}x{size[1]} inputs"
    result = measure_inference(model, inputs, args.num_images, args.warmup, args.amp, args.channels_last)
    result.update(
        config=cfg.source,
        checkpoint=getattr(args, "checkpoint", None),
        inputs=described,
        input_size=list(inputs[0][0].shape[-2:]),
        fused_conv_bn=fused,
        amp=args.amp,
        channels_last=args.channels_last,
        device=str(device),
        environment=environment(),
    )
    print(
        f"{Path(cfg.source).name}: {result['fps']:.2f} FPS at batch 1 on {device}, {described} "
        f"(end-to-end {result['end_to_end']['mean_ms']:.1f} ms = "
        f"network {result['network']['mean_ms']:.1f} ms "
        f"+ post-processing {result['postprocess']['mean_ms']:.1f} ms; {args.num_images} images after "
        f"{args.warmup} warm-up)"
    )
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2))
    return 0
