"""Evaluate both sides' detections with the same pycocotools COCOeval and print the comparison table.

    python experiments/e2e_mmdet/summarize.py [--data /work/e2e_data] [--runs /work/e2e_runs] [--json OUT]

Reads ``RUNS/{ours,mmdet}/seed*/dets.json`` (COCO results) and ``train_seconds.txt``, evaluates every
file against ``DATA/annotations/instances_val.json`` with plain pycocotools (``COCOeval(gt, dt,
"bbox")``, the evaluator locdistill's ``evaluation/coco.py`` wraps), and prints a Markdown table: per seed
AP / AP50 / AP75 (percent) and training time, mean and sample standard deviation per side, and a Welch
t-test of the difference of the AP means.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import re
import statistics
from pathlib import Path

from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

SIDES = {
    "ours": "locdistill",
    "ours_main_init": "locdistill, BN 1 in residual branches",
    "mmdet": "mmdetection 3.3.0",
}
"""Run folder -> row label (``ours_main_init``: our side before the ResNet zero-init fix, if present)."""
METRICS = ("AP", "AP50", "AP75")


def coco_metrics(gt: COCO, dets: Path) -> dict[str, float]:
    """AP, AP50, AP75 (percent) of the results file ``dets`` against ``gt``."""
    results = json.loads(dets.read_text())
    if not results:
        return dict.fromkeys(METRICS, 0.0)
    with contextlib.redirect_stdout(io.StringIO()):
        dt = gt.loadRes(results)
        ev = COCOeval(gt, dt, "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return {name: 100 * float(ev.stats[i]) for i, name in enumerate(METRICS)}


def t_sf(t: float, df: float) -> float:
    """P(T > t) of Student's t with ``df`` degrees of freedom (Simpson's rule on the density)."""
    if t < 0:
        return 1 - t_sf(-t, df)
    c = math.exp(math.lgamma((df + 1) / 2) - math.lgamma(df / 2)) / math.sqrt(df * math.pi)
    n = 2000
    h = t / n
    total = 0.0
    for i in range(n + 1):
        x = i * h
        w = 1 if i in (0, n) else (4 if i % 2 else 2)
        total += w * c * (1 + x * x / df) ** (-(df + 1) / 2)
    return 0.5 - total * h / 3


def welch(a: list[float], b: list[float]) -> tuple[float, float, float]:
    """Welch's t statistic, degrees of freedom and two-sided p-value of mean(a) - mean(b)."""
    va, vb = statistics.variance(a) / len(a), statistics.variance(b) / len(b)
    t = (statistics.mean(a) - statistics.mean(b)) / math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    return t, df, 2 * t_sf(abs(t), df)


def collect(data: Path, runs: Path) -> dict[str, dict[int, dict[str, float]]]:
    """side -> seed -> metrics (and ``train_s``) of every finished run."""
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(data / "annotations" / "instances_val.json"))
    out: dict[str, dict[int, dict[str, float]]] = {}
    for side in SIDES:
        out[side] = {}
        for dets in sorted((runs / side).glob("seed*/dets.json")):
            seed = int(dets.parent.name.removeprefix("seed"))
            row = coco_metrics(gt, dets)
            seconds = dets.parent / "train_seconds.txt"
            row["train_s"] = float(seconds.read_text()) if seconds.is_file() else float("nan")
            out[side][seed] = row
    return out


LOG_FILES = {"ours": "train.out", "ours_main_init": "train.out", "mmdet": "run.out"}
LOSSES = ("loss_cls", "loss_bbox", "loss_dfl")
OURS_LINE = re.compile(
    r"epoch (\d+) iter (\d+)/\d+ .*?loss_bbox ([\d.]+) loss_cls ([\d.]+) loss_dfl ([\d.]+)"
)
MMDET_LINE = re.compile(
    r"Epoch\(train\)\s*\[(\d+)\]\[\s*(\d+)/\d+\].*?"
    r"loss_cls: ([\d.]+)\s+loss_bbox: ([\d.]+)\s+loss_dfl: ([\d.]+)"
)


def epoch_losses(runs: Path, side: str) -> dict[int, dict[str, float]]:
    """epoch (1-based) -> mean of each logged loss term over that epoch's log points (20-iteration
    means on both sides) and over the seeds with a finished run."""
    sums: dict[int, dict[str, list[float]]] = {}
    for dets in sorted((runs / side).glob("seed*/dets.json")):
        text = (dets.parent / LOG_FILES[side]).read_text(errors="replace")
        for m in (OURS_LINE if side != "mmdet" else MMDET_LINE).finditer(text):
            epoch = int(m.group(1))
            values = [float(v) for v in m.groups()[2:]]
            if side != "mmdet":  # ours logs bbox, cls, dfl
                values = [values[1], values[0], values[2]]
            for name, v in zip(LOSSES, values):
                sums.setdefault(epoch, {}).setdefault(name, []).append(v)
    return {e: {k: statistics.mean(v) for k, v in d.items()} for e, d in sorted(sums.items())}


def loss_table(runs: Path, sides: list[str]) -> str:
    """Per epoch, each side's mean QFL / GIoU / DFL training loss (Markdown)."""
    curves = {side: epoch_losses(runs, side) for side in sides}
    head = "| epoch | " + " | ".join(f"{SIDES[s]} {n}" for s in sides for n in ("QFL", "GIoU", "DFL")) + " |"
    lines = [head, "|" + " --- |" * (1 + 3 * len(sides))]
    epochs = sorted(set().union(*[c.keys() for c in curves.values()]))
    for e in epochs:
        cells = [f"{curves[s][e][n]:.3f}" if e in curves[s] else "" for s in sides for n in LOSSES]
        lines.append(f"| {e} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def table(results: dict[str, dict[int, dict[str, float]]]) -> str:
    """The Markdown table and the Welch test lines."""
    lines = ["| side | seed | AP | AP50 | AP75 | train s |", "| --- | --- | --- | --- | --- | --- |"]
    for side, rows in results.items():
        for seed, row in sorted(rows.items()):
            cells = " | ".join(f"{row[m]:.1f}" for m in METRICS)
            lines.append(f"| {SIDES[side]} | {seed} | {cells} | {row['train_s']:.0f} |")
        if len(rows) >= 2:
            cells = " | ".join(
                f"**{statistics.mean(r[m] for r in rows.values()):.2f} ± "
                f"{statistics.stdev(r[m] for r in rows.values()):.2f}**"
                for m in METRICS
            )
            secs = statistics.mean(r["train_s"] for r in rows.values())
            lines.append(f"| {SIDES[side]} | mean ± std | {cells} | {secs:.0f} |")
    theirs = results.get("mmdet", {})
    for side in ("ours", "ours_main_init"):
        ours = results.get(side, {})
        if len(ours) < 2 or len(theirs) < 2:
            continue
        lines.append("")
        for m in METRICS:
            a, b = [r[m] for r in ours.values()], [r[m] for r in theirs.values()]
            t, df, p = welch(a, b)
            diff = statistics.mean(a) - statistics.mean(b)
            pooled = math.sqrt((statistics.variance(a) + statistics.variance(b)) / 2)
            lines.append(
                f"- {m}: {SIDES[side]} - mmdetection = {diff:+.2f} (pooled std {pooled:.2f}); "
                f"Welch t = {t:+.2f}, df = {df:.1f}, two-sided p = {p:.3f}"
            )
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=Path("/work/e2e_data"))
    p.add_argument("--runs", type=Path, default=Path("/work/e2e_runs"))
    p.add_argument("--json", type=Path, help="also write the numbers here")
    a = p.parse_args()
    results = collect(a.data, a.runs)
    print(table(results))
    print()
    print(loss_table(a.runs, [s for s in ("ours", "mmdet") if results.get(s)]))
    if a.json:
        a.json.write_text(
            json.dumps({s: {str(k): v for k, v in r.items()} for s, r in results.items()}, indent=1)
        )


if __name__ == "__main__":
    main()
