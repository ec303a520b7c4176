"""``locdistill demo``: LD end to end on data it makes itself, on a CPU, in a few minutes.

1. A synthetic detection dataset (:mod:`locdistill.data.synthetic`: five shape classes on textured
   backgrounds, tiny to large, overlapping) is generated in memory; nothing is downloaded.
2. A teacher (``configs/demo/demo_teacher.yaml``: wider and deeper, trained longer) is trained.
3. A baseline student (``configs/demo/demo_base.yaml``) and an LD student (``configs/demo/demo_ld.yaml``:
   the same student, schedule and seed, plus Main LD and VLR LD from that teacher) are trained.
   ``--method crosskd`` trains a CrossKD student instead (``demo_crosskd.yaml``), ``crosskd+ld`` one with
   both (``demo_crosskd_ld.yaml``), ``all`` the three of them.
4. All models are evaluated with the COCO metric on held-out images; the table is printed and saved.

``OUT`` receives ``teacher/``, ``baseline/`` and ``ld_student/`` (or ``crosskd_student/``,
``crosskd_ld_student/``; ordinary work dirs: config.yaml,
train.log, metrics.jsonl, checkpoints), ``results.json`` (the table and timings), ``loss_curves.png``
and ``edge_distributions.png`` (the four edge distributions of teacher, baseline and LD student at a
few objects, with the ground-truth edges marked).
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from locdistill.config import Config, load_config
from locdistill.models.detectors.gfl import GFL, require_gfl

logger = logging.getLogger(__name__)

METRICS = ("AP", "AP50", "AP75", "APs", "APm", "APl")

QUICK_OVERRIDES = [
    "data.train.num_images=16",
    "data.val.num_images=8",
    "data.train.image_size=128",
    "data.val.image_size=128",
    "data.img_scale=[128, 128]",
    "train.epochs=1",
    "train.optim.warmup_iters=2",
    "train.optim.steps=[]",
    "train.log_interval=2",
]
"""``--quick``: a smoke run of every stage (seconds); its numbers mean nothing."""


@dataclass
class Stage:
    """One model of the demo: its name in the table, config and work dir."""

    name: str
    cfg: Config
    work_dir: Path


METHODS = {
    "ld": ("LD student", "demo/demo_ld", "ld_student"),
    "crosskd": ("CrossKD student", "demo/demo_crosskd", "crosskd_student"),
    "crosskd+ld": ("CrossKD+LD student", "demo/demo_crosskd_ld", "crosskd_ld_student"),
}
"""``--method``: table name, config and work dir of each distilled student (``all``: every one)."""


def demo_configs(out: Path, seed: int, quick: bool, method: str = "ld") -> list[Stage]:
    """The teacher, baseline and distilled stages (``method``: a key of :data:`METHODS` or ``all``); the
    distilled stages' teacher is the teacher stage's output."""
    if method != "all" and method not in METHODS:
        raise ValueError(f"demo --method must be one of {', '.join([*METHODS, 'all'])}, got {method!r}")
    overrides = [f"train.seed={seed}", f"data.train.seed={seed}", f"data.val.seed={seed}"]
    if quick:
        overrides += QUICK_OVERRIDES
    teacher = Stage("teacher", load_config("demo/demo_teacher", overrides), out / "teacher")
    baseline = Stage("baseline student", load_config("demo/demo_base", overrides), out / "baseline")
    students = []
    for name, config, folder in [METHODS[m] for m in (METHODS if method == "all" else [method])]:
        stage = Stage(name, load_config(config, overrides), out / folder)
        assert stage.cfg.distill is not None
        # The teacher's resolved config and final checkpoint, both written by its training.
        stage.cfg.distill.teacher_config = str((teacher.work_dir / "config.yaml").resolve())
        stage.cfg.distill.teacher_checkpoint = str((teacher.work_dir / "latest.pth").resolve())
        students.append(stage)
    for stage in (teacher, baseline, *students):
        stage.cfg.work_dir = str(stage.work_dir)
    return [teacher, baseline, *students]


def evaluate_stage(model: GFL, cfg: Config) -> dict[str, float]:
    """COCO metrics of ``model`` on the demo's validation images."""
    from locdistill.data import build_dataset, build_test_loader
    from locdistill.engine.evaluate import evaluate

    dataset = build_dataset(cfg.data.val, cfg.data, train=False, mean=model.mean, std=model.std)
    loader = build_test_loader(dataset, cfg.data.test_images_per_gpu, 0, False)
    metrics, _, _ = evaluate(model, loader, dataset, "coco", torch.device("cpu"), progress=False)
    return metrics


def _clear_previous_run(work_dir: Path) -> None:
    """Remove an earlier demo's work dir (its metrics would be appended to); refuse a folder that is
    not a locdistill work dir, so that a mistyped ``--out`` never deletes anything else."""
    if not work_dir.exists():
        return
    if not (work_dir / "config.yaml").is_file():
        raise FileExistsError(
            f"{work_dir} exists and is not a locdistill work dir; choose another --out for the demo"
        )
    shutil.rmtree(work_dir)


def format_table(rows: dict[str, dict[str, float]], seconds: dict[str, float]) -> str:
    """The AP table (percent), one row per model, with the training time of each."""
    head = f"{'model':<20}" + "".join(f"{m:>7}" for m in METRICS) + f"{'train s':>9}"
    lines = [head, "-" * len(head)]
    for name, metrics in rows.items():
        cells = "".join(_percent(metrics.get(m, float("nan"))) for m in METRICS)
        lines.append(f"{name:<20}{cells}{seconds.get(name, float('nan')):9.0f}")
    return "\n".join(lines)


def _percent(value: float) -> str:
    """A metric in percent, 7 wide; ``n/a`` for pycocotools' ``-1`` (no object in that size range)."""
    return f"{'n/a':>7}" if value < 0 else f"{100 * value:7.1f}"


def run_demo(args: argparse.Namespace) -> int:
    """Entry point of ``locdistill demo`` (``args``: ``out``, ``quick``, ``seed``); returns the exit code."""
    from locdistill.engine.logger import setup_logger
    from locdistill.engine.train import train
    from locdistill.models.from_checkpoint import build_detector_from_checkpoint

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    setup_logger(None, 0)
    stages = demo_configs(out, args.seed, args.quick, getattr(args, "method", "ld"))
    start = time.perf_counter()
    seconds: dict[str, float] = {}
    finals: dict[str, Path] = {}
    for stage in stages:
        _clear_previous_run(stage.work_dir)
    for stage in stages:
        t0 = time.perf_counter()
        print(f"== training the {stage.name} ({stage.work_dir})", flush=True)
        finals[stage.name] = train(stage.cfg, stage.work_dir)
        seconds[stage.name] = time.perf_counter() - t0
    models = {
        s.name: require_gfl(build_detector_from_checkpoint(finals[s.name], s.cfg)[0], "the demo")
        for s in stages
    }
    rows = {s.name: evaluate_stage(models[s.name], s.cfg) for s in stages}
    table = format_table(rows, seconds)
    gains = {s.name: {m: rows[s.name][m] - rows["baseline student"][m] for m in METRICS} for s in stages[2:]}
    total = time.perf_counter() - start

    figures = []
    try:
        from locdistill.analysis.curves import plot_runs

        names = [s.name for s in stages]
        figures.append(plot_runs([s.work_dir for s in stages], out / "loss_curves.png", names))
        figures.append(plot_edge_distributions(models, stages[1].cfg, out / "edge_distributions.png"))
    except ImportError as e:  # matplotlib is a dependency; a broken install still gets the table
        logger.warning("plots skipped: %s", e)
    result = {
        "metrics": rows,
        "ld_minus_baseline": gains.get("LD student"),
        "minus_baseline": gains,
        "train_seconds": seconds,
        "total_seconds": total,
        "seed": args.seed,
        "quick": bool(args.quick),
        "threads": torch.get_num_threads(),
        "figures": [str(f) for f in figures],
    }
    (out / "results.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print("\nCOCO metrics on the held-out synthetic images (percent):")
    print(table)
    lines = [
        f"{name.removesuffix(' student')} - baseline: AP {100 * gain['AP']:+.1f}, "
        f"AP50 {100 * gain['AP50']:+.1f}, AP75 {100 * gain['AP75']:+.1f}"
        for name, gain in gains.items()
    ]
    print("\n" + "\n".join(lines) + f"   ({total / 60:.1f} min in all)")
    print(f"written: {out / 'results.json'}" + "".join(f", {f}" for f in figures))
    return 0


# ---------------------------------------------------------------------------------------------- plots
def plot_edge_distributions(models: dict[str, GFL], cfg: Config, path: Path, num_objects: int = 3) -> Path:
    """:func:`locdistill.analysis.edges.plot_edge_distributions` on the first validation batch: for a
    few objects, the four edge distributions of teacher, baseline and LD student with the ground truth."""
    from locdistill.analysis.edges import plot_edge_distributions as draw
    from locdistill.data import build_dataset, build_test_loader

    student = models["baseline student"]
    dataset = build_dataset(cfg.data.val, cfg.data, train=False, mean=student.mean, std=student.std)
    batch = next(iter(build_test_loader(dataset, min(4, len(dataset)), 0, False)))
    colors = {
        "teacher": "tab:green",
        "baseline student": "tab:gray",
        "LD student": "tab:red",
        "CrossKD student": "tab:blue",
        "CrossKD+LD student": "tab:purple",
    }
    normalization = (student.mean, student.std)
    return draw(models, batch, normalization, dataset.class_names, path, num_objects, colors)
