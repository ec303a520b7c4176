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
from typing import Any

import torch
from torch import Tensor

from locdistill.config import Config, load_config
from locdistill.models.gfl import GFL
from locdistill.models.gfl_head import HeadOutputs
from locdistill.ops.box_ops import box_centers

log = logging.getLogger("locdistill")

METRICS = ("AP", "AP50", "AP75", "APs", "APm", "APl")
SIDES = ("left", "top", "right", "bottom")

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
        cells = "".join(f"{100 * metrics.get(m, float('nan')):7.1f}" for m in METRICS)
        lines.append(f"{name:<20}{cells}{seconds.get(name, float('nan')):9.0f}")
    return "\n".join(lines)


def run_demo(args: argparse.Namespace) -> int:
    """Entry point of ``locdistill demo`` (``args``: ``out``, ``quick``, ``seed``); returns the exit code."""
    from locdistill.engine.checkpoint import load_detector
    from locdistill.engine.logger import setup_logger
    from locdistill.engine.train import train

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
    models = {s.name: load_detector(s.cfg, finals[s.name])[0] for s in stages}
    rows = {s.name: evaluate_stage(models[s.name], s.cfg) for s in stages}
    table = format_table(rows, seconds)
    gains = {s.name: {m: rows[s.name][m] - rows["baseline student"][m] for m in METRICS} for s in stages[2:]}
    total = time.perf_counter() - start

    figures = []
    try:
        figures.append(
            plot_loss_curves({s.name: s.work_dir / "metrics.jsonl" for s in stages}, out / "loss_curves.png")
        )
        figures.append(plot_edge_distributions(models, stages[1].cfg, out / "edge_distributions.png"))
    except ImportError as e:  # matplotlib is a dependency; a broken install still gets the table
        log.warning("plots skipped: %s", e)
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
def _read_train_records(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [r for r in records if r.get("type") == "train"]


def plot_loss_curves(metrics_files: dict[str, Path], path: Path) -> Path:
    """Total loss and the box losses (GIoU, DFL) against the iteration, one line per model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = [
        ("loss", "total loss"),
        ("loss_bbox", "GIoU loss"),
        ("loss_dfl", "DFL loss"),
        ("loss_ld", "distillation losses"),
    ]
    fig, axes = plt.subplots(1, len(keys), figsize=(4 * len(keys), 3.2))
    for name, file in metrics_files.items():
        records = _read_train_records(file)
        steps = [r["global_iter"] for r in records]
        for ax, (key, title) in zip(axes, keys):
            if key == "loss_ld":
                names = ("loss_ld", "loss_ld_vlr", "loss_kd", "loss_crosskd_cls", "loss_crosskd_reg")
                terms = [k for k in names if records and k in records[0]]
                for term in terms:
                    ax.plot(steps, [r[term] for r in records], label=f"{name}: {term}")
            elif records and key in records[0]:
                ax.plot(steps, [r[key] for r in records], label=name)
            ax.set_title(title)
            ax.set_xlabel("iteration")
    for ax in axes:
        if ax.lines:
            ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def flat_box_logits(outputs: HeadOutputs) -> Tensor:
    """``[B, 4*(reg_max+1), A]`` edge-distribution logits, levels concatenated in anchor order."""
    return torch.cat([p.flatten(2) for p in outputs.bbox_preds], dim=2)


def plot_edge_distributions(models: dict[str, GFL], cfg: Config, path: Path, num_objects: int = 3) -> Path:
    """For a few validation objects: the image crop with the box, then the distribution of each edge
    (left, top, right, bottom; in stride units) by teacher, baseline and LD student at the positive
    anchor nearest the object's centre, with the ground-truth distance marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from locdistill.data import build_dataset, build_test_loader

    student = models["baseline student"]
    dataset = build_dataset(cfg.data.val, cfg.data, train=False, mean=student.mean, std=student.std)
    batch = next(iter(build_test_loader(dataset, min(4, len(dataset)), 0, False)))
    with torch.inference_mode():
        outputs = {name: model(batch.images) for name, model in models.items()}
    targets = student.get_targets(outputs["baseline student"], batch.targets, batch.metas)
    logits = {name: flat_box_logits(out) for name, out in outputs.items()}
    picks = _pick_objects(targets, batch.targets, num_objects)
    fig, axes = plt.subplots(len(picks), 5, figsize=(15, 2.6 * max(len(picks), 1)), squeeze=False)
    mean = torch.tensor(student.mean)[:, None, None]
    std = torch.tensor(student.std)[:, None, None]
    colors = {
        "teacher": "tab:green",
        "baseline student": "tab:gray",
        "LD student": "tab:red",
        "CrossKD student": "tab:blue",
        "CrossKD+LD student": "tab:purple",
    }
    for row, (b, g, a) in enumerate(picks):
        box = batch.targets[b].boxes[g]
        centre = box_centers(targets.anchors[a])
        stride = float(targets.anchor_strides[a])
        gt_dist = (
            torch.stack([centre[0] - box[0], centre[1] - box[1], box[2] - centre[0], box[3] - centre[1]])
            / stride
        )
        image = (batch.images[b] * std + mean).clamp(0, 1).permute(1, 2, 0).numpy()
        x1, y1, x2, y2 = box.tolist()
        pad = 0.3 * max(x2 - x1, y2 - y1) + 4
        ax = axes[row, 0]
        ax.imshow(image)
        ax.add_patch(plt.Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, color="yellow", lw=1.5))
        ax.plot([float(centre[0])], [float(centre[1])], "c+")
        ax.set_xlim(max(x1 - pad, 0), min(x2 + pad, image.shape[1]))
        ax.set_ylim(min(y2 + pad, image.shape[0]), max(y1 - pad, 0))
        ax.set_title(
            f"{dataset.class_names[int(batch.targets[b].labels[g])]} (stride {int(stride)})", fontsize=9
        )
        ax.axis("off")
        bins = torch.arange(student.reg_max + 1)
        for side in range(4):
            ax = axes[row, side + 1]
            for name, flat in logits.items():
                prob = flat[b, :, a].reshape(4, -1).softmax(dim=-1)
                ax.plot(bins, prob[side], marker=".", label=name, color=colors.get(name))
            ax.axvline(float(gt_dist[side]), color="black", ls="--", lw=1, label="ground truth")
            ax.set_title(f"{SIDES[side]} edge", fontsize=9)
            ax.set_xlabel("distance (strides)", fontsize=8)
    if picks:
        axes[0, -1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _pick_objects(targets: Any, gts: list[Any], num: int) -> list[tuple[int, int, int]]:
    """Up to ``num`` ``(image, gt, anchor)`` triples, spread over object sizes: for each chosen GT the
    ATSS positive anchor nearest its centre."""
    candidates = []
    for b, t in enumerate(gts):
        for g in range(len(t)):
            anchors = (targets.gt_index[b] == g).nonzero().flatten()
            if len(anchors) == 0:
                continue
            box = t.boxes[g]
            distance = (box_centers(targets.anchors[anchors]) - box_centers(box)).pow(2).sum(1)
            best = anchors[distance.argmin()]
            area = float((box[2] - box[0]) * (box[3] - box[1]))
            candidates.append((area, b, g, int(best)))
    candidates.sort()
    if len(candidates) <= num:
        return [(b, g, a) for _, b, g, a in candidates]
    step = (len(candidates) - 1) / max(num - 1, 1)
    return [candidates[round(i * step)][1:] for i in range(num)]
