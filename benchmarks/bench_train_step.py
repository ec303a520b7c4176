"""Training-step time on mmdetection 3.3.0's ``train_step`` protocol: plain GFL, LD, the teacher's forward.

GFL R18 at real width (FPN/head 256, 4 stacked convs), batch 2 of 512x512, 5 random boxes per image,
random init, SGD (momentum 0.9, weight decay 1e-4). The inputs are random uint8 BGR images, and each
timed step starts from them: BGR -> RGB, normalise, pad to a multiple of 32 and stack (locdistill's
``Normalize`` and ``collate``), then forward, losses, backward and the SGD step, as mmdetection's
``train_step`` does with its ``DetDataPreprocessor``. LD is Main LD from a GFL R101 teacher (FPN/head
256), as mmdetection's ``ld_r18-gflv1-r101_fpn_1x_coco``. The teacher's forward alone is timed on the
preprocessed batch (no grad), as the LD step runs it. 2 warm-up and 5 timed steps; medians, min, max.

Every variant (``--variants``, ``+``-joined settings: ``eager``, ``channels_last``, ``compile``,
``bf16`` autocast, ``forloop``/``foreach``/``fused`` SGD (else ``train.optim.implementation: auto``),
``mkldnn_bf16``) has its own models, built with the same seed. With ``--mmdet PYTHON`` (the python of an
environment with mmdet 3.3.0, mmengine and mmcv-lite) mmdetection's own ``train_step`` runs in a
subprocess (``benchmarks/mmdet_worker.py``) on the same images and boxes, one step at a time,
interleaved with ours (A/B/A/B), in float32 and, when a variant uses bf16 autocast, also under bf16
autocast (like with like). Ratios to mmdetection are taken per round (our step over the mmdetection step
run next to it), then the median.

    python benchmarks/bench_train_step.py --mmdet /path/to/mmdet_venv/bin/python \\
        --variants eager,channels_last,compile,bf16 --out benchmarks/results/train_step.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write_results  # noqa: E402

from locdistill.config import DistillConfig, LDTermConfig, ModelConfig, OptimConfig, VLRConfig  # noqa: E402
from locdistill.data.collate import collate  # noqa: E402
from locdistill.data.transforms import Normalize  # noqa: E402
from locdistill.distill.distiller import Distiller  # noqa: E402
from locdistill.engine.build import DetectorLoss  # noqa: E402
from locdistill.engine.optim import build_optimizer  # noqa: E402
from locdistill.models.detectors.gfl import GFL, build_gfl  # noqa: E402
from locdistill.structures import Batch, ImageMeta, Targets  # noqa: E402

SETTINGS = ("eager", "channels_last", "compile", "bf16", "forloop", "foreach", "fused", "mkldnn_bf16")
LR = 1e-4  # small: random data must not blow up over the run


@dataclass
class Variant:
    """One way of running our step (``name`` is the ``+``-joined settings)."""

    name: str
    channels_last: bool = False
    compile: bool = False
    bf16: bool = False
    sgd: str = "auto"  # train.optim.implementation (auto: fused on CPU)
    mkldnn: str = "none"

    @classmethod
    def parse(cls, name: str) -> Variant:
        parts = name.split("+")
        unknown = [p for p in parts if p not in SETTINGS]
        if unknown:
            raise SystemExit(
                f"error: unknown variant setting(s) {unknown} in {name!r}; choose from {SETTINGS}"
            )
        sgd = next((s for s in ("fused", "foreach", "forloop") if s in parts), "auto").replace(
            "forloop", "for-loop"
        )
        return cls(
            name,
            channels_last="channels_last" in parts,
            compile="compile" in parts,
            bf16="bf16" in parts,
            sgd=sgd,
            mkldnn="bf16" if "mkldnn_bf16" in parts else "none",
        )


def random_inputs(batch: int, size: int, boxes: int, num_classes: int, seed: int = 0) -> dict[str, list]:
    """uint8 BGR images ``[3, size, size]`` and ``boxes`` random boxes (xyxy pixels) with labels per image."""
    g = torch.Generator().manual_seed(seed)
    images, all_boxes, labels = [], [], []
    for _ in range(batch):
        images.append(torch.randint(0, 256, (3, size, size), dtype=torch.uint8, generator=g))
        xy = torch.rand(boxes, 2, generator=g) * size * 0.7
        wh = 16 + torch.rand(boxes, 2, generator=g) * size * 0.3
        all_boxes.append(torch.cat([xy, (xy + wh).clamp(max=size)], 1))
        labels.append(torch.randint(0, num_classes, (boxes,), generator=g))
    return {"images": images, "boxes": all_boxes, "labels": labels}


def preprocess(raw: dict[str, list], normalize: Normalize) -> Batch:
    """uint8 BGR -> RGB, normalised, padded to a multiple of 32 and stacked (the timed part of a step)."""
    samples = []
    for i, (img, boxes, labels) in enumerate(zip(raw["images"], raw["boxes"], raw["labels"])):
        h, w = int(img.shape[1]), int(img.shape[2])
        meta = ImageMeta(i, f"random{i}", (h, w), (h, w), (h, w))
        samples.append(normalize(img.flip(0), Targets(boxes, labels), meta))
    return collate(samples, 32)


def model_cfg(depth: int) -> ModelConfig:
    cfg = ModelConfig()
    cfg.backbone.name = f"resnet{depth}"
    return cfg


def r18_student(channels_last: bool = False) -> GFL:
    """The timed student, GFL R18 at real width, seeded (``torch.manual_seed(0)``), in training mode."""
    torch.manual_seed(0)
    model = build_gfl(model_cfg(18)).train()
    if channels_last:
        model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    return model


class Ours:
    """Our plain and LD training steps and the teacher's forward for one :class:`Variant`."""

    def __init__(self, variant: Variant, raw: dict[str, list], batch_size: int) -> None:
        self.v, self.raw = variant, raw
        student = r18_student()
        teacher = build_gfl(model_cfg(101)).eval()
        distill = DistillConfig(
            main_ld=LDTermConfig(True, 0.25, 10.0),
            vlr_ld=VLRConfig(False),
            main_kd=LDTermConfig(False),
        )
        self.distiller = Distiller(student, teacher, distill, images_per_gpu=batch_size).train()
        self.plain = DetectorLoss(student).train()
        if variant.channels_last:
            self.distiller.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        if variant.compile:
            from locdistill.engine.performance import compile_training_module

            compile_training_module(self.distiller)
        optim = OptimConfig()
        # set only when asked, so the script also times earlier revisions (PYTHONPATH=OLD/src)
        if variant.sgd != "auto":
            optim.implementation = variant.sgd  # type: ignore[assignment]
        self.optimizer = build_optimizer(student, optim, LR)
        self.normalize = Normalize(student.mean, student.std)
        self.fixed = self.batch()  # for the teacher's forward alone

    @contextlib.contextmanager
    def settings(self) -> Iterator[None]:
        with contextlib.ExitStack() as stack:
            if self.v.mkldnn != "none":
                from locdistill.engine.performance import set_mkldnn_fp32_precision

                previous = set_mkldnn_fp32_precision(self.v.mkldnn)  # type: ignore[arg-type]
                stack.callback(set_mkldnn_fp32_precision, previous)
            stack.enter_context(torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.v.bf16))
            yield

    def batch(self) -> Batch:
        batch = preprocess(self.raw, self.normalize)
        if self.v.channels_last:
            batch.images = batch.images.contiguous(memory_format=torch.channels_last)
        return batch

    def step(self, kind: str) -> float:
        """One timed training step (``plain`` or ``ld``) as the training loop runs it; seconds."""
        module = self.plain if kind == "plain" else self.distiller
        with self.settings():
            t0 = time.perf_counter()
            batch = self.batch()
            losses = module(batch)
            loss: torch.Tensor = sum(losses.values())  # type: ignore[assignment]
            if not bool(torch.isfinite(loss)):  # the training loop's one host sync per step
                raise FloatingPointError(f"non-finite loss in the {kind} step of {self.v.name}")
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            return time.perf_counter() - t0

    def teacher(self) -> float:
        with self.settings():
            t0 = time.perf_counter()
            self.distiller.teacher_outputs(self.fixed.images)
            return time.perf_counter() - t0


class MMDet:
    """mmdetection's ``train_step`` in a subprocess (``mmdet_worker.py``), one command per step."""

    def __init__(self, python: str, inputs: Path, threads: int) -> None:
        worker = Path(__file__).resolve().parent / "mmdet_worker.py"
        self.proc = subprocess.Popen(
            [python, str(worker)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1
        )
        self.info = self.ask({"cmd": "init", "inputs": str(inputs), "threads": threads, "lr": LR})

    def ask(self, msg: dict[str, Any]) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps(msg) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"mmdetection worker exited (code {self.proc.wait()}); see its stderr above")
        reply = json.loads(line)
        if "error" in reply:
            raise RuntimeError(f"mmdetection worker: {reply['error']}")
        return reply

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.ask({"cmd": "quit"})
        self.proc.wait(timeout=60)


def stats(values: list[float]) -> dict[str, float]:
    return {
        "median_s": statistics.median(values),
        "min_s": min(values),
        "max_s": max(values),
        "n": len(values),
    }


def ratio_stats(a: list[float], b: list[float]) -> dict[str, float]:
    r = [x / y for x, y in zip(a, b)]
    return {"median": statistics.median(r), "min": min(r), "max": max(r), "n": len(r)}


def summary(plain: list[float], ld: list[float], teacher: list[float]) -> dict[str, Any]:
    p, d, t = statistics.median(plain), statistics.median(ld), statistics.median(teacher)
    return {
        "plain_step": stats(plain),
        "ld_step": stats(ld),
        "teacher_forward": stats(teacher),
        "ld_over_plain": d / p,
        "ld_minus_plain_over_teacher": (d - p) / t,
        "ld_target_met": d <= p + 1.05 * t,  # LD step <= plain + 1.05 x the teacher's forward
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    torch.set_num_threads(args.threads)
    variants = [Variant.parse(n) for n in args.variants.split(",") if n]
    if args.compile and not any(v.compile for v in variants):
        variants.append(Variant.parse("compile"))
    raw = random_inputs(args.batch, args.size, args.boxes, 80)
    ours = {v.name: Ours(v, raw, args.batch) for v in variants}
    # fp32 first; mmdetection's fp32 step (its CPU default) is always timed, bf16 when a variant uses it
    precisions = ["fp32"] + (["bf16"] if any(v.bf16 for v in variants) else [])
    mm: MMDet | None = None
    tmp = tempfile.TemporaryDirectory()
    if args.mmdet:
        inputs = Path(tmp.name) / "inputs.pt"
        torch.save(raw, inputs)
        mm = MMDet(args.mmdet, inputs, args.threads)

    # One round: for each kind of step, mmdetection's (per precision) next to each of our variants.
    times: dict[tuple[str, str, str], list[float]] = {}
    first: dict[str, float] = {}
    try:
        for r in range(args.warmup + args.iters):
            for kind in ("plain", "ld", "teacher"):
                for prec in precisions:
                    if mm is not None:
                        msg = {"cmd": kind, "amp": prec == "bf16"}
                        times.setdefault(("mmdet", prec, kind), []).append(mm.ask(msg)["s"])
                    for v in variants:
                        if ("bf16" if v.bf16 else "fp32") != prec:
                            continue
                        o = ours[v.name]
                        s = o.teacher() if kind == "teacher" else o.step(kind)
                        times.setdefault(("ours", v.name, kind), []).append(s)
                        if r == 0:
                            first[f"{v.name}/{kind}"] = s
            done = r + 1
            print(f"round {done}/{args.warmup + args.iters} done", file=sys.stderr, flush=True)
    finally:
        if mm is not None:
            mm.close()
        tmp.cleanup()

    timed = {k: v[args.warmup :] for k, v in times.items()}
    results: dict[str, Any] = {"locdistill": {}, "mmdetection": {}, "versus_mmdetection": {}}
    for v in variants:
        results["locdistill"][v.name] = {
            "settings": asdict(v),
            **summary(*(timed[("ours", v.name, k)] for k in ("plain", "ld", "teacher"))),
            "first_step_s": {k: first[f"{v.name}/{k}"] for k in ("plain", "ld", "teacher")},
        }
    if mm is not None:
        for prec in precisions:
            results["mmdetection"][prec] = summary(
                *(timed[("mmdet", prec, k)] for k in ("plain", "ld", "teacher"))
            )
        for v in variants:
            prec = "bf16" if v.bf16 else "fp32"
            vs = {
                kind: ratio_stats(timed[("ours", v.name, kind)], timed[("mmdet", prec, kind)])
                for kind in ("plain", "ld", "teacher")
            }
            # like with like (same precision), and against mmdetection's default CPU step (float32:
            # its AmpOptimWrapper refuses to run without a GPU)
            default = {
                kind: ratio_stats(timed[("ours", v.name, kind)], timed[("mmdet", "fp32", kind)])
                for kind in ("plain", "ld", "teacher")
            }
            results["versus_mmdetection"][v.name] = {
                "against": f"mmdetection {prec}",
                "step_time_ratio": vs,  # ours / mmdetection, per round
                "plain_target_met": vs["plain"]["median"] <= 0.7,  # plain step <= 0.7 x mmdetection's
                "step_time_ratio_vs_mmdetection_fp32": default,
                "plain_target_met_vs_mmdetection_fp32": default["plain"]["median"] <= 0.7,
            }
        results["mmdetection_versions"] = mm.info
    return results


def source_revision() -> dict[str, str]:
    """Which locdistill was timed: the imported package's folder and its git revision (the script also
    times earlier revisions: ``PYTHONPATH=OLD_CHECKOUT/src``)."""
    import locdistill

    folder = Path(locdistill.__file__).resolve().parent
    info = {"package": str(folder)}
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        rev = subprocess.run(
            ["git", "-C", str(folder), "rev-parse", "--short=12", "HEAD"], capture_output=True, text=True
        )
        dirty = subprocess.run(
            ["git", "-C", str(folder), "status", "--porcelain", "."], capture_output=True, text=True
        )
        if rev.returncode == 0:
            info["git_rev"] = rev.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    return info


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--variants", default="eager", help=f"comma-separated; each a '+'-joined subset of {SETTINGS}"
    )
    parser.add_argument("--compile", action="store_true", help="add the 'compile' variant")
    parser.add_argument("--mmdet", default=None, help="python of an mmdetection 3.3.0 environment")
    parser.add_argument("--iters", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--boxes", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    results = run(args)
    setup = {
        "student": "GFL R18, FPN/head 256, 4 stacked convs, random init",
        "teacher": "GFL R101, FPN/head 256, random init",
        "ld_terms": "Main LD (weight 0.25, T 10)",
        "batch": args.batch,
        "size": args.size,
        "boxes_per_image": args.boxes,
        "inputs": "random uint8 BGR; BGR->RGB, normalise, pad to 32 and stack inside each timed step",
        "warmup": args.warmup,
        "iters": args.iters,
        "threads": args.threads,
        "optimizer": f"SGD lr {LR}, momentum 0.9, weight decay 1e-4",
        "wall_s": round(time.perf_counter() - t0, 1),
        "locdistill_source": source_revision(),
    }
    write_results(args.out, "train_step", results, setup=setup)
    return 0


if __name__ == "__main__":
    sys.exit(main())
