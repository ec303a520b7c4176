#!/usr/bin/env bash
# Our training step before and after a change, each side by side with mmdetection in the same job:
# bench_train_step.py runs alternately on an earlier checkout's src/ and on this one's (A/B/A/B), each
# run interleaved step by step with mmdetection's train_step, so the two revisions are compared through
# their ratio to mmdetection measured next to them, and directly (same machine, same job).
#   git worktree add --detach ../before REV
#   bash benchmarks/before_after.sh ../before [MMDET_PYTHON]
# Writes benchmarks/results/before_after/{before,after}_{1,2}.json and before_after.json (the summary).
set -euo pipefail
cd "$(dirname "$0")/.."
before="$(cd "$1" && pwd)"
mmdet="${2:-${MMDET_PYTHON:-/work/mmdet_venv/bin/python}}"
PYTHON="${PYTHON:-python}"
out=benchmarks/results/before_after
mkdir -p "$out"
args=(--mmdet "$mmdet" --variants "${VARIANTS:-eager,bf16+channels_last}" --iters "${ITERS:-5}")
for round in 1 2; do
    PYTHONPATH="$before/src" "$PYTHON" benchmarks/bench_train_step.py "${args[@]}" --out "$out/before_$round.json" >/dev/null
    PYTHONPATH="$PWD/src" "$PYTHON" benchmarks/bench_train_step.py "${args[@]}" --out "$out/after_$round.json" >/dev/null
done
"$PYTHON" benchmarks/summarize_before_after.py "$out" --out benchmarks/results/before_after.json
