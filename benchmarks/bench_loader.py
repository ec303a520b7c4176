"""Data loading rate of the COCO training pipeline, ours and mmdetection 3.3.0's side by side.

On the coco128 photos (COCO json, mmdetection's training filter: images with boxes, sides >= 32 px), at
the seed's scale: keep-ratio resize to 1333x800 (``fixed``) or to a short side drawn from 480-960
(``ms``, long side <= 1333), flip with probability 0.5, batches of 2. Images per second per worker:

* ``single_process``: the work one DataLoader worker does, in one process without a DataLoader: for each
  batch, every sample (decode, boxes, resize, flip; ours also normalises) and the collate (ours: pad to
  32 into one float32 batch; mmdet: ``pseudo_collate``, a list of uint8 BGR tensors, normalised and
  padded later in the model's ``DetDataPreprocessor``, on the GPU). One thread each (torch 1, OpenCV
  sequential as mmengine sets it).
* ``dataloader``: one epoch through a ``torch.utils.data.DataLoader`` with ``W`` persistent workers
  (``--loader-workers``), rate / ``W``; ours is ``build_train_loader`` (collate in the worker, the batch
  in shared memory; ``pin_memory`` only with CUDA).

Every side runs in its own process with the same protocol: ours (this script ``--serve``), optionally
ours from another checkout (``--baseline SRC``: before/after), and mmdetection's
(``mmdet_loader_worker.py`` under ``--mmdet PYTHON``). Same images, same order, same random draws
(ours draws the scales and flips; mmdet's ``RandomResize``/``RandomFlip`` are handed them), checked by
the output shapes; rounds interleaved (A/B/A/B...), median and min-max over the rounds, ratios per
round. The first ``--check`` images are compared pixel by pixel with mmdetection's (resize kernels).

    python benchmarks/bench_loader.py --mmdet /work/mmdet_venv/bin/python --loader-workers 1,2 \\
        --baseline /path/to/old/src --out benchmarks/results/loader.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "coco128"
ANN_FILE = "annotations/instances_train2017.json"
IMG_PREFIX = "images/train2017/"
MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]  # ImageNet (the ResNet backbones')
SCALES = {"fixed": None, "ms": [[1333, 480], [1333, 960]]}
WHERE = {
    "ours": "worker: decode, resize, flip, pad to 32 into one uint8 batch; device: Batch.to normalises "
    "(float, normalise, zero the padding), as a training run does (build_dataset normalize_on_device)",
    "ours_worker_norm": "worker: decode, resize, flip, normalise (float32), pad to 32 into one batch; "
    "device: nothing (the float32 batch is copied as it is); the evaluation pipeline's way",
    "baseline": "the other checkout's training pipeline (before this change: normalise in the worker)",
    "mmdet": "worker: decode (BGR), resize, flip, pack uint8 tensors (pseudo_collate); device: "
    "DetDataPreprocessor in the model: BGR->RGB, float, normalise, pad to 32, stack",
}


# ----------------------------------------------------------------------------------------- our server
class OurSide:
    """Our pipeline for one scale mode: ``build_train_loader``'s samples of epoch 0, first ``images``."""

    def __init__(self, msg: dict[str, Any]) -> None:
        from locdistill.data import CocoDataset
        from locdistill.data.loader import build_train_loader
        from locdistill.data.transforms import build_transforms

        torch.set_num_threads(int(msg.get("threads", 1)))
        root = Path(msg["root"])
        self.on_device = msg.get("normalize") == "device"
        options = {"normalize": False} if self.on_device else {}  # an older checkout lacks the option
        transform = build_transforms(
            train=True, img_scale=(1333, 800), mean=MEAN, std=STD, multiscale=SCALES[msg["mode"]], **options
        )
        self.dataset = CocoDataset(
            root / ANN_FILE,
            root / IMG_PREFIX,
            transform=transform,
            skip_bad=True,
            filter_empty_gt=True,
            min_size=32,
        )
        self.dataset.records = self.dataset.records[: int(msg["images"])]
        if self.on_device:  # as build_dataset(..., normalize_on_device=True)
            from locdistill.data.transforms import Normalize

            self.dataset.pixel_norm = Normalize(MEAN, STD).pixel_norm
        self.batch = int(msg["batch"])
        self.pin = bool(msg.get("pin_memory", False))
        self.loaders: dict[int, Any] = {}
        loader = build_train_loader(self.dataset, self.batch, 0, seed=0, pin_memory=False)
        self.sampled = loader.dataset  # SeededDataset: indexed by (index, seed)
        self.collate = loader.collate_fn
        self.batches: list[list[tuple[int, int]]] = list(loader.batch_sampler)  # type: ignore[arg-type]
        self.resize = transform.transforms[0]

    def samples(self) -> list[dict[str, Any]]:
        """File, drawn ``(long, short)`` scale, flip and output shape of every sample, in order."""
        from locdistill.data.transforms import rescale_size

        out = []
        for index, seed in (item for batch in self.batches for item in batch):
            torch.random.default_generator.manual_seed(seed)  # as SeededDataset: the resize draws first
            scale = self.resize.sample_scale()
            _, _, meta = self.sampled[(index, seed)]
            record = self.dataset.records[index]
            if rescale_size(record.height, record.width, scale) != tuple(meta.img_shape):
                raise SystemExit(f"{record.path}: scale draw {scale} does not give {meta.img_shape}")
            out.append(
                {
                    "file": Path(record.path).name,
                    "scale": list(scale),
                    "flip": meta.flipped,
                    "shape": list(meta.img_shape),
                }
            )
        return out

    def round(self) -> tuple[float, int]:
        t0 = time.perf_counter()
        n = 0
        for items in self.batches:
            batch = self.collate([self.sampled[item] for item in items])
            n += len(batch)
        return time.perf_counter() - t0, n

    def loader(self, workers: int) -> tuple[float, int]:
        from locdistill.data.loader import build_train_loader

        if workers not in self.loaders:
            self.loaders[workers] = build_train_loader(
                self.dataset, self.batch, workers, seed=0, pin_memory=self.pin
            )
            for _ in self.loaders[workers]:  # warm-up: starts the workers
                pass
        t0 = time.perf_counter()
        n = sum(len(batch) for batch in self.loaders[workers])
        return time.perf_counter() - t0, n

    def check(self, k: int, path: str) -> None:
        """The first ``k`` images as uint8 RGB (de-normalised if need be: exact for values from uint8)."""
        mean = torch.tensor(MEAN).view(3, 1, 1) * 255
        std = torch.tensor(STD).view(3, 1, 1) * 255
        items = [item for batch in self.batches for item in batch][:k]
        images = [self.sampled[item][0] for item in items]
        if not self.on_device:
            images = [(x * std + mean).round().clamp(0, 255).to(torch.uint8) for x in images]
        torch.save({"images": images}, path)


def serve() -> None:
    """The JSON-lines protocol of ``mmdet_loader_worker.py``, for our pipeline (see its docstring)."""
    import locdistill

    out = sys.stdout
    sys.stdout = sys.stderr
    side: OurSide | None = None
    for line in sys.stdin:
        msg = json.loads(line)
        reply: dict[str, Any] = {}
        if msg["cmd"] == "init":
            side = OurSide(msg)
            reply = {"locdistill": str(Path(locdistill.__file__).parent), "samples": side.samples()}
        elif msg["cmd"] == "round":
            assert side is not None
            s, n = side.round()
            reply = {"s": s, "n": n}
        elif msg["cmd"] == "loader":
            assert side is not None
            s, n = side.loader(int(msg["workers"]))
            reply = {"s": s, "n": n}
        elif msg["cmd"] == "check":
            assert side is not None
            side.check(int(msg["k"]), msg["path"])
        elif msg["cmd"] == "quit":
            break
        out.write(json.dumps(reply) + "\n")
        out.flush()


# ------------------------------------------------------------------------------------- orchestration
class Side:
    """One pipeline in a subprocess, one JSON command per line."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> None:
        self.name = name
        self.proc = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1, env=env
        )

    def ask(self, **msg: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps(msg) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise SystemExit(f"{self.name}: the worker exited (rc {self.proc.wait()})")
        return json.loads(line)

    def close(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.write(json.dumps({"cmd": "quit"}) + "\n")
            self.proc.stdin.close()
            self.proc.wait(timeout=120)


def rate_stats(rates: list[float]) -> dict[str, Any]:
    return {
        "median": statistics.median(rates),
        "min": min(rates),
        "max": max(rates),
        "rounds": [round(r, 2) for r in rates],
    }


def interleaved(sides: list[Side], rounds: int, **cmd: Any) -> dict[str, list[float]]:
    """Images per second of each side over ``rounds`` rounds, one command of each side per round."""
    rates: dict[str, list[float]] = {s.name: [] for s in sides}
    for _ in range(rounds):
        for side in sides:
            reply = side.ask(**cmd)
            rates[side.name].append(reply["n"] / reply["s"])
    return rates


def compare(rates: dict[str, list[float]], per: int = 1) -> dict[str, Any]:
    """Per-side stats (divided by ``per`` workers) and per-round ratios of ours to the others."""
    out: dict[str, Any] = {name: rate_stats([r / per for r in rs]) for name, rs in rates.items()}
    for other in rates:
        if other != "ours":
            ratios = [a / b for a, b in zip(rates["ours"], rates[other])]
            out[f"ours_over_{other}"] = {k: v for k, v in rate_stats(ratios).items() if k != "rounds"}
    return out


def pixel_diff(ours: list[torch.Tensor], mmdet: list[torch.Tensor]) -> dict[str, Any]:
    """Our RGB images vs mmdet's BGR ones: largest difference and share of values that differ."""
    diffs = [(a.int() - b.flip(0).int()).abs() for a, b in zip(ours, mmdet)]
    return {
        "images": len(diffs),
        "max_abs": int(max(int(d.max()) for d in diffs)),
        "share_differing": sum(int((d > 0).sum()) for d in diffs) / sum(d.numel() for d in diffs),
        "mean_abs": sum(float(d.float().sum()) for d in diffs) / sum(d.numel() for d in diffs),
    }


def run_mode(mode: str, args: argparse.Namespace) -> dict[str, Any]:
    common = {
        "root": str(args.data),
        "images": args.images,
        "batch": args.batch,
        "mode": mode,
        "threads": 1,
        "pin_memory": args.pin_memory,
    }
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    serve = [sys.executable, __file__, "--serve"]
    sides = [Side("ours", serve, env)]
    if args.worker_norm:
        sides.append(Side("ours_worker_norm", serve, env))
    if args.baseline:
        sides.append(
            Side("baseline", serve, {**os.environ, "PYTHONPATH": str(Path(args.baseline).resolve())})
        )
    result: dict[str, Any] = {}
    try:
        samples = sides[0].ask(cmd="init", normalize="device", **common)["samples"]
        shapes = [s["shape"] for s in samples]
        for side in sides[1:]:
            other = side.ask(cmd="init", normalize="worker", **common)
            if other["samples"] != samples:
                raise SystemExit(f"{side.name}: its samples differ from ours (scales or flips)")
        if args.mmdet:
            mm = Side("mmdet", [args.mmdet, str(HERE / "mmdet_loader_worker.py")])
            sides.append(mm)
            result["mmdet_versions"] = mm.ask(
                cmd="init",
                root=str(args.data) + "/",
                ann_file=ANN_FILE,
                img_prefix=IMG_PREFIX,
                samples=samples,
                batch=args.batch,
                multiscale=mode == "ms",
                threads=1,
            )
            with tempfile.TemporaryDirectory() as tmp:
                mm.ask(cmd="check", k=args.check, path=f"{tmp}/mmdet.pt")
                sides[0].ask(cmd="check", k=args.check, path=f"{tmp}/ours.pt")
                theirs = torch.load(f"{tmp}/mmdet.pt", weights_only=False)
                ours = torch.load(f"{tmp}/ours.pt", weights_only=False)
            if theirs["shapes"] != shapes or theirs["flips"] != [s["flip"] for s in samples]:
                raise SystemExit("mmdet's output shapes or flips differ from ours")
            result["pixels_vs_mmdet"] = pixel_diff(ours["images"], theirs["images"])
        result["images"] = len(samples)
        result["output_pixels_mean"] = statistics.mean(h * w for h, w in shapes)
        result["where"] = {side.name: WHERE[side.name] for side in sides}
        interleaved(sides, 1, cmd="round")  # warm-up round: file cache, allocator
        result["single_process"] = compare(interleaved(sides, args.rounds, cmd="round"))
        result["dataloader"] = {}
        for workers in args.loader_workers:
            rates = interleaved(sides, args.loader_rounds, cmd="loader", workers=workers)
            result["dataloader"][str(workers)] = compare(rates, per=workers)
    finally:
        for side in sides:
            side.close()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="coco128 folder (COCO json inside)")
    parser.add_argument(
        "--mmdet",
        default=os.environ.get("LOCDISTILL_MMDET_PYTHON"),
        help="python of an environment with mmdet 3.3.0 (else env LOCDISTILL_MMDET_PYTHON; "
        "without either, or when it cannot import mmdet, mmdetection's side is skipped)",
    )
    parser.add_argument("--baseline", help="the src/ folder of another locdistill checkout (before/after)")
    parser.add_argument(
        "--no-worker-norm",
        dest="worker_norm",
        action="store_false",
        help="leave out our pipeline with the normalisation in the worker (ours_worker_norm)",
    )
    parser.add_argument("--modes", default="fixed,ms", help="fixed (1333x800), ms (short side 480-960)")
    parser.add_argument("--images", type=int, default=10_000, help="at most this many images")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5, help="timed single-process rounds (epochs)")
    parser.add_argument("--loader-workers", default="", help="comma-separated DataLoader worker counts")
    parser.add_argument("--loader-rounds", type=int, default=3)
    parser.add_argument("--check", type=int, default=8, help="images compared pixel by pixel with mmdet's")
    parser.add_argument("--out", help="JSON file to write")
    args = parser.parse_args()
    if args.serve:
        serve()
        return
    args.loader_workers = [int(w) for w in args.loader_workers.split(",") if w.strip()]
    args.pin_memory = torch.cuda.is_available()
    skipped = None
    if args.mmdet:
        probe = subprocess.run([args.mmdet, "-c", "import mmdet, mmengine, cv2"], capture_output=True)
        if probe.returncode != 0:
            skipped, args.mmdet = f"{args.mmdet} cannot import mmdet/mmengine/cv2", None
    else:
        skipped = "no --mmdet PYTHON given"
    sys.path.insert(0, str(HERE))
    from _common import write_results

    load_before = os.getloadavg()
    results = {mode: run_mode(mode, args) for mode in args.modes.split(",")}
    write_results(
        args.out,
        "loader",
        results,
        protocol={
            "batch": args.batch,
            "rounds": args.rounds,
            "loader_rounds": args.loader_rounds,
            "pin_memory": args.pin_memory,
            "unit": "images/s per worker",
            "mmdet_skipped": skipped,
        },
        load={"before": list(load_before), "after": list(os.getloadavg())},
    )


if __name__ == "__main__":
    main()
