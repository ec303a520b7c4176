"""Mean +- std over seeds of the final evaluation of experiment work dirs (docs/results.md).

Reads the last ``{"type": "val"}`` record of ``<work>/<run>_s<seed>/metrics.jsonl`` (and of runs
without a seed suffix, e.g. the teacher), groups by run name, prints a Markdown table in percent and
optionally writes JSON.

    python experiments/summarize.py work_dirs/bccd --out work_dirs/bccd/summary.json
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
from pathlib import Path

METRICS = ("AP", "AP50", "AP75")
ORDER = ("teacher_effl2", "baseline", "ld", "kd_ld_vlr", "crosskd", "crosskd_ld")


def final_eval(metrics_file: Path) -> dict[str, float] | None:
    """The last validation record of a run, or ``None`` when it has none yet."""
    last = None
    for line in metrics_file.read_text(encoding="utf-8").splitlines():
        if line.strip():
            record = json.loads(line)
            if record.get("type") == "val":
                last = record
    return last


def collect(work: Path) -> dict[str, dict[int, dict[str, float]]]:
    """``{run name: {seed: final metrics}}`` (seed -1 for runs without a ``_s<seed>`` suffix)."""
    runs: dict[str, dict[int, dict[str, float]]] = {}
    for metrics_file in sorted(work.glob("*/metrics.jsonl")):
        match = re.fullmatch(r"(.+)_s(\d+)", metrics_file.parent.name)
        name, seed = (match.group(1), int(match.group(2))) if match else (metrics_file.parent.name, -1)
        record = final_eval(metrics_file)
        if record is not None:
            runs.setdefault(name, {})[seed] = {m: float(record[m]) for m in METRICS}
    return runs


def summarize(runs: dict[str, dict[int, dict[str, float]]]) -> dict[str, dict[str, object]]:
    out: dict[str, dict[str, object]] = {}
    for name in sorted(runs, key=lambda n: ORDER.index(n) if n in ORDER else len(ORDER)):
        seeds = runs[name]
        row: dict[str, object] = {
            "seeds": sorted(seeds),
            "per_seed": {str(s): v for s, v in sorted(seeds.items())},
        }
        for m in METRICS:
            values = [100 * v[m] for v in seeds.values()]
            row[m] = statistics.mean(values)
            row[m + "_std"] = statistics.stdev(values) if len(values) > 1 else 0.0
        out[name] = row
    return out


def markdown(summary: dict[str, dict[str, object]]) -> str:
    lines = ["| run | seeds | " + " | ".join(METRICS) + " |", "|---|---|" + "---|" * len(METRICS)]
    for name, row in summary.items():
        seeds = row["seeds"]
        assert isinstance(seeds, list)
        cells = " | ".join(f"{row[m]:.1f} ± {row[m + '_std']:.1f}" for m in METRICS)
        lines.append(f"| {name} | {len([s for s in seeds if s >= 0]) or 1} | {cells} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("work", type=Path, help="the experiment's work root (e.g. work_dirs/bccd)")
    parser.add_argument("--out", type=Path, help="write the summary as JSON")
    args = parser.parse_args()
    summary = summarize(collect(args.work))
    print(markdown(summary))
    if args.out:
        args.out.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
