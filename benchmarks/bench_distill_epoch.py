"""Training time of plain GFL vs LD with the live teacher vs LD from the teacher cache (and CrossKD), on
BCCD at the EfficientNet-Lite recipe (configs/ld/ld_gflv1_effl2_effl0_fpn_bccd.yaml), side by side.

Every variant runs full training steps (forward, losses, backward, SGD step) over the same ``--iters``
batches of the epoch, loaded once beforehand (data loading is the same for every variant and is timed
separately); the variants are interleaved round-robin, ``--repeats`` rounds after one warm-up round, and
reported as median, min and max seconds per iteration.

* ``plain``: the Lite0 student alone (configs/gfl/gfl_effl0_fpn_bccd.yaml).
* ``ld_live``: Main LD with the Lite2 teacher run on every batch.
* ``ld_cache_epoch2``: Main LD on the batches of the second epoch, from a cache holding what the first
  epoch wrote for those images (their first-epoch samples, with the flips training drew, are run through
  the cache beforehand; other images are never read): flips are drawn anew each epoch, so about half the
  images hit. Entries the timed steps add are deleted after each round, so every round sees the cache as
  the second epoch does.
* ``ld_cache_hits``: Main LD where every image of the batches is cached (a later epoch, once both flips
  of an image have been seen): the teacher never runs.
* ``crosskd_live`` / ``crosskd_cache_hits`` (unless ``--no-crosskd``): CrossKD
  (configs/ld/crosskd_gflv1_effl2_effl0_fpn_bccd.yaml); with the cache the teacher's backbone, FPN and
  first tower convs are skipped, its last tower conv and output convs still run on the student's features.

The teacher has the real architecture (Lite2 backbone with its ImageNet weights, FPN/head 128 x 4) and a
random head: timing does not depend on its weights. Writes JSON.

    python benchmarks/bench_distill_epoch.py --out benchmarks/results/distill_epoch.json
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import time_interleaved, write_results  # noqa: E402

from locdistill.config import Config, load_config  # noqa: E402
from locdistill.distill.distiller import Distiller  # noqa: E402
from locdistill.distill.teacher_cache import build_teacher_cache  # noqa: E402
from locdistill.engine.build import DetectorLoss, build_data  # noqa: E402
from locdistill.engine.loader import set_epoch  # noqa: E402
from locdistill.engine.teacher import resolve_teacher_config  # noqa: E402
from locdistill.models.detectors.gfl import GFL, build_gfl  # noqa: E402
from locdistill.structures import Batch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
LD_CONFIG = "configs/ld/ld_gflv1_effl2_effl0_fpn_bccd.yaml"
CROSSKD_CONFIG = "configs/ld/crosskd_gflv1_effl2_effl0_fpn_bccd.yaml"


def load(path: str, data_root: str | None, cache: Path | None = None) -> Config:
    overrides = [f"data.train.root={data_root}", f"data.val.root={data_root}"] if data_root else []
    if cache is not None:
        overrides.append(f"distill.cache={cache}")
    return load_config(ROOT / path, overrides)


def build_teacher(cfg: Config) -> GFL:
    teacher_cfg = load_config(resolve_teacher_config(cfg))
    return build_gfl(teacher_cfg.model)


class Stepper:
    """One training module and its SGD optimiser; ``run(batches)`` does a step per batch."""

    def __init__(self, module: torch.nn.Module, lr: float) -> None:
        self.module = module.train()
        params = [p for p in module.parameters() if p.requires_grad]
        self.optimizer = torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=1e-4)

    def run(self, batches: list) -> None:
        for batch in batches:
            losses = self.module(batch)
            self.optimizer.zero_grad(set_to_none=True)
            sum(losses.values()).backward()  # type: ignore[union-attr]
            self.optimizer.step()


def sub_batch(batch: Batch, index: list[int]) -> Batch:
    """The images ``index`` of a batch (same padded size)."""
    return Batch(batch.images[index], [batch.targets[i] for i in index], [batch.metas[i] for i in index])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--iters", type=int, default=10, help="training steps per variant and round")
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds (after one warm-up round)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--data-root", default=None, help="BCCD root (default: the config's)")
    parser.add_argument("--no-crosskd", action="store_true", help="leave out the CrossKD variants")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    work = Path(tempfile.mkdtemp(prefix="bench_distill_epoch_"))
    try:
        run(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run(args: argparse.Namespace, work: Path) -> None:
    ld_cfg = load(LD_CONFIG, args.data_root)
    teacher = build_teacher(ld_cfg)
    lr = ld_cfg.train.optim.lr * ld_cfg.data.images_per_gpu / 16

    def student() -> GFL:
        torch.manual_seed(0)
        return build_gfl(ld_cfg.model)

    def distiller(cfg: Config, cache_dir: Path | None) -> Distiller:
        s = student()
        cache = None
        if cache_dir is not None:
            cfg = load(cfg.source, args.data_root, cache_dir)
            cache = build_teacher_cache(cfg, s, teacher)
        assert cfg.distill is not None
        return Distiller(s, teacher, cfg.distill, cfg.data.images_per_gpu, cache=cache)

    # The data: epoch 1 (fills the cache) and the timed batches of epoch 2.
    s0 = student()
    _, loader, _, _ = build_data(ld_cfg, s0.mean, s0.std, False)
    t0 = time.perf_counter()
    set_epoch(loader, 1)
    it = iter(loader)
    batches = [next(it).to("cpu") for _ in range(args.iters)]  # .to(): normalises the uint8 batch
    data_s = (time.perf_counter() - t0) / args.iters
    del it

    modules: dict[str, Stepper] = {
        "plain": Stepper(DetectorLoss(student()), lr),
        "ld_live": Stepper(distiller(ld_cfg, None), lr),
    }
    epoch2 = distiller(ld_cfg, work / "ld_epoch2")
    assert epoch2.cache is not None
    # What the first epoch would have written for the timed images: their epoch-1 samples (same
    # random flips as training draws them), through the cache. Other images are never read here.
    t0 = time.perf_counter()
    timed_ids = {m.image_id for b in batches for m in b.metas}
    set_epoch(loader, 0)
    for raw in loader:
        batch = raw.to("cpu")
        keep = [i for i, m in enumerate(batch.metas) if m.image_id in timed_ids]
        if keep:
            with torch.no_grad():
                epoch2.teacher_result(sub_batch(batch, keep))
    fill_s = time.perf_counter() - t0
    first_epoch_images = epoch2.cache.misses
    written = set((work / "ld_epoch2").rglob("*.pt"))
    epoch2.cache.hits = epoch2.cache.misses = 0
    modules["ld_cache_epoch2"] = Stepper(epoch2, lr)
    modules["ld_cache_hits"] = Stepper(distiller(ld_cfg, work / "ld_hits"), lr)
    if not args.no_crosskd:
        ck_cfg = load(CROSSKD_CONFIG, args.data_root)
        modules["crosskd_live"] = Stepper(distiller(ck_cfg, None), lr)
        modules["crosskd_cache_hits"] = Stepper(distiller(ck_cfg, work / "crosskd_hits"), lr)

    calls: dict[str, list[tuple[int, int]]] = {name: [] for name in modules}

    def step_fn(name: str):
        stepper = modules[name]
        cache = getattr(stepper.module, "cache", None)

        def fn() -> None:
            before = (cache.hits, cache.misses) if cache is not None else (0, 0)
            stepper.run(batches)
            if cache is not None:
                calls[name].append((cache.hits - before[0], cache.misses - before[1]))
            if name == "ld_cache_epoch2":  # forget what this round added: every round is the 2nd epoch
                for path in set((work / "ld_epoch2").rglob("*.pt")) - written:
                    path.unlink()

        return fn

    timings = time_interleaved({name: step_fn(name) for name in modules}, args.repeats, warmup=1)
    per_iter = {
        name: {k: (v / args.iters if k.endswith("_s") else v) for k, v in t.items()}
        for name, t in timings.items()
    }
    hits = {  # over the timed rounds (the warm-up round fills the "hits" caches)
        name: sum(h for h, _ in c[1:]) / max(sum(h + m for h, m in c[1:]), 1)
        for name, c in calls.items()
        if c
    }
    plain = per_iter["plain"]["median_s"]
    ratios = {name: t["median_s"] / plain for name, t in per_iter.items()}
    iters_per_epoch = len(loader)
    write_results(
        args.out,
        "distill_epoch",
        {
            "seconds_per_iteration": per_iter,
            "ratio_to_plain": ratios,
            "cache_hit_rate_timed": hits,
            "epoch_seconds_estimate": {
                name: iters_per_epoch * (t["median_s"] + data_s) for name, t in per_iter.items()
            },
        },
        config=LD_CONFIG,
        crosskd_config=None if args.no_crosskd else CROSSKD_CONFIG,
        iters=args.iters,
        repeats=args.repeats,
        images_per_iteration=ld_cfg.data.images_per_gpu,
        iterations_per_epoch=iters_per_epoch,
        data_seconds_per_iteration=data_s,
        workers=ld_cfg.data.workers_per_gpu,
        fill_seconds=fill_s,
        fill_images=first_epoch_images,
        cache_dtype=ld_cfg.distill.cache_dtype if ld_cfg.distill else None,
        cache_kilobytes_per_image=sum(p.stat().st_size for p in written) / 1024 / max(len(written), 1),
        threads=args.threads,
    )


if __name__ == "__main__":
    main()
