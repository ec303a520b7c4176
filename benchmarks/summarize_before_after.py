"""Summarise ``before_after.sh``: per revision and variant, the plain and LD step medians of each run
and their ratios to the mmdetection step timed next to them (median over the runs, with the spread).

    python benchmarks/summarize_before_after.py benchmarks/results/before_after --out summary.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any


def summarize(folder: Path) -> dict[str, Any]:
    runs: dict[str, list[dict[str, Any]]] = {}
    for path in sorted(folder.glob("*_*.json")):
        side = path.stem.rsplit("_", 1)[0]  # before / after
        runs.setdefault(side, []).append(json.loads(path.read_text()))
    summary: dict[str, Any] = {}
    for side, payloads in runs.items():
        summary[side] = {
            "revisions": [p["setup"].get("locdistill_source", {}).get("git_rev", "?") for p in payloads],
            "variants": {},
        }
        for name in payloads[0]["results"]["locdistill"]:
            row: dict[str, Any] = {}
            for kind in ("plain", "ld"):
                steps = [p["results"]["locdistill"][name][f"{kind}_step"]["median_s"] for p in payloads]
                ratios = [
                    p["results"]["versus_mmdetection"][name]["step_time_ratio"][kind]["median"]
                    for p in payloads
                ]
                row[kind] = {
                    "step_median_s_per_run": [round(s, 3) for s in steps],
                    "vs_mmdetection_per_run": [round(r, 3) for r in ratios],
                    "vs_mmdetection_median": round(statistics.median(ratios), 3),
                }
            summary[side]["variants"][name] = row
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("folder", type=Path)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    summary = summarize(args.folder)
    text = json.dumps(summary, indent=2)
    print(text)
    if args.out is not None:
        args.out.write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
