#!/usr/bin/env bash
# The training-speed figures of docs/benchmarks.md section 1, in one command, from the repository root:
#   bash benchmarks/run_speed.sh [MMDET_PYTHON]
# MMDET_PYTHON: the python of a separate environment with mmdet 3.3.0, mmengine and mmcv-lite (default
# $MMDET_PYTHON, else /work/mmdet_venv/bin/python when it exists); without one, only our side is timed.
# Writes benchmarks/results/train_step.json (plain, LD, teacher forward per variant, side by side with
# mmdetection's train_step in fp32 and bf16 autocast) and benchmarks/results/profile_train_step.json.
# Run it on an otherwise idle machine: the steps are interleaved, but other load still adds noise.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python}"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
mmdet="${1:-${MMDET_PYTHON:-/work/mmdet_venv/bin/python}}"
mmdet_args=()
if [[ -x "$mmdet" ]]; then mmdet_args=(--mmdet "$mmdet"); else echo "no mmdetection python at $mmdet: timing locdistill only" >&2; fi
mkdir -p benchmarks/results
"$PYTHON" benchmarks/bench_train_step.py "${mmdet_args[@]}" \
    --variants eager,forloop,channels_last,compile,channels_last+compile,bf16,bf16+channels_last,bf16+channels_last+compile --iters 7 \
    --out benchmarks/results/train_step.json
"$PYTHON" benchmarks/profile_train_step.py --out benchmarks/results/profile_train_step.json
