"""Training curves of one or more work dirs (``locdistill plot``; the demo's ``loss_curves.png``).

Reads each work dir's ``metrics.jsonl`` (one JSON object per line, written by
:class:`locdistill.engine.logger.MetricsWriter`): ``type: train`` records carry ``global_iter``,
``lr``, ``loss`` and its terms (``loss_cls`` QFL, ``loss_bbox`` GIoU, ``loss_dfl`` DFL, and for LD
runs ``loss_ld``, ``loss_ld_vlr``, ``loss_kd``, for CrossKD ``loss_crosskd_*``), averaged over the
logging interval; ``type: val``
records carry ``global_iter`` and the validation metrics (COCO or VOC ``AP``, ``AP50``, ...). A
resumed run appends to the file: a later record of the same type and iteration replaces an earlier one.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

from locdistill.analysis.edges import PALETTE

LOSS_PANELS = (
    ("loss", "total loss"),
    ("loss_cls", "classification (QFL)"),
    ("loss_bbox", "box (GIoU)"),
    ("loss_dfl", "box distribution (DFL)"),
)
DISTILL_TERMS = (
    "loss_ld",
    "loss_ld_vlr",
    "loss_kd",
    "loss_crosskd_cls",
    "loss_crosskd_reg",
    "loss_crosskd_bbox",
)


def _number(value: Any) -> float:
    """A metric value as float (``"nan"``/``"inf"`` strings, as the writer stores them, included)."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def read_metrics(work_dir: Path) -> dict[str, list[dict[str, Any]]]:
    """``{"train": [...], "val": [...]}`` records of ``work_dir/metrics.jsonl``, sorted by
    ``global_iter`` (the last record of a type at an iteration kept)."""
    path = Path(work_dir) / "metrics.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"{work_dir} has no metrics.jsonl (not a locdistill work dir?): {path}")
    by_type: dict[str, dict[int, dict[str, Any]]] = {"train": {}, "val": {}}
    for line_no, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            raise ValueError(f"{path}: line {line_no} is not JSON: {line[:80]!r}") from None
        kind = record.get("type")
        if kind in by_type and "global_iter" in record:
            by_type[kind][int(record["global_iter"])] = record
    return {kind: [recs[i] for i in sorted(recs)] for kind, recs in by_type.items()}


def run_names(work_dirs: list[Path]) -> list[str]:
    """Legend names: the folder names, with the parent folder added where two would be equal."""
    names = [Path(w).resolve().name for w in work_dirs]
    if len(set(names)) < len(names):
        names = [f"{Path(w).resolve().parent.name}/{Path(w).resolve().name}" for w in work_dirs]
    return names


def plot_runs(work_dirs: list[Path], path: Path, names: list[str] | None = None) -> Path:
    """One PNG with, against the training iteration, the total loss and each GFL loss term, the LD
    terms (when a run has them), the learning rate and the validation AP (when a run was evaluated),
    one colour per run (``names``, default :func:`run_names`)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = names or run_names(work_dirs)
    runs = {name: read_metrics(w) for name, w in zip(names, work_dirs)}
    if not any(r["train"] for r in runs.values()):
        raise ValueError("no training records in " + ", ".join(str(w) for w in work_dirs))
    has_terms = [t for t in DISTILL_TERMS if any(t in rec for r in runs.values() for rec in r["train"])]
    has_val = any("AP" in rec for r in runs.values() for rec in r["val"])
    panels: list[tuple[str, str]] = list(LOSS_PANELS)
    if has_terms:
        panels.append(("distill", "distillation terms"))
    panels.append(("lr", "learning rate"))
    if has_val:
        panels.append(("val", "validation AP"))
    cols = 4 if len(panels) > 4 else len(panels)
    rows = math.ceil(len(panels) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.3 * rows), squeeze=False)
    styles = ("-", "--", ":", "-.")
    for k, (name, records) in enumerate(runs.items()):
        color = PALETTE[k % len(PALETTE)]
        train, val = records["train"], records["val"]
        steps = [int(r["global_iter"]) for r in train]
        for ax, (key, _) in zip(axes.flat, panels):
            if key == "distill":
                for term, style in zip(has_terms, styles):
                    if any(term in r for r in train):
                        values = [_number(r.get(term)) for r in train]
                        ax.plot(steps, values, style, color=color, label=f"{name}: {term}")
            elif key == "val":
                v_steps = [int(r["global_iter"]) for r in val if "AP" in r]
                for metric, style in (("AP", "-o"), ("AP50", "--s")):
                    values = [100 * _number(r.get(metric)) for r in val if "AP" in r]
                    if v_steps and any(metric in r for r in val):
                        ax.plot(v_steps, values, style, color=color, ms=4, label=f"{name}: {metric}")
            elif any(key in r for r in train):
                ax.plot(steps, [_number(r.get(key)) for r in train], color=color, label=name)
    for ax, (key, title) in zip(axes.flat, panels):
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("iteration")
        ax.set_ylabel({"lr": "learning rate", "val": "AP (%)"}.get(key, "loss"))
        if key == "lr":
            ax.ticklabel_format(axis="y", style="sci", scilimits=(-2, 2))
        if ax.lines and key in ("loss", "distill", "val"):  # the other panels share the first's colours
            ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(panels) :]:
        ax.axis("off")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def run_plot(args: argparse.Namespace) -> int:
    """Entry point of ``locdistill plot`` (``args``: work_dirs, out); returns the exit code."""
    out = Path(args.out) if args.out is not None else Path("curves.png")
    if args.out is None and out.exists():
        raise FileExistsError(
            f"{out} exists; name the output file with --out to replace it or write elsewhere"
        )
    path = plot_runs(list(args.work_dirs), out)
    print(f"written: {path}")
    return 0
