#!/usr/bin/env bash
# Every benchmark of docs/benchmarks.md, one after the other, each writing JSON to benchmarks/results/.
#   bash benchmarks/run_all.sh            # from the repository root, in the project's venv
# Run it on an otherwise idle machine: the scripts time side by side, but other load still adds noise.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p benchmarks/results
bash benchmarks/run_speed.sh  # train_step.json (with mmdetection when its python is found), profile_train_step.json
python benchmarks/bench_inference.py --out benchmarks/results/inference.json
python benchmarks/bench_nms.py --out benchmarks/results/nms.json
python benchmarks/bench_coco_eval.py --out benchmarks/results/coco_eval.json
python benchmarks/bench_data_check.py --out benchmarks/results/data_check.json
python benchmarks/bench_distill_epoch.py --out benchmarks/results/distill_epoch.json
# data loading beside mmdetection's pipeline (its side skipped without an mmdet environment)
mmdet="${MMDET_PYTHON:-/work/mmdet_venv/bin/python}"
python benchmarks/bench_loader.py ${mmdet:+--mmdet "$mmdet"} --loader-workers 1,2 --out benchmarks/results/loader.json
