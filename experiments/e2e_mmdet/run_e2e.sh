#!/usr/bin/env bash
# End to end: the demo baseline GFL trained from scratch by locdistill and by mmdetection 3.3.0 on the
# same files, seeds 0-4, both evaluated by the same pycocotools evaluator (summarize.py).
#
#   experiments/e2e_mmdet/run_e2e.sh [ours|mmdet|both] [SEED ...]      (default: both 0 1 2 3 4)
#
# Env: E2E_DATA (default /work/e2e_data; written by write_demo_coco.py when missing), E2E_RUNS (default
# /work/e2e_runs), LOCDISTILL_PY (default /work/main/.venv/bin/python), MMDET_PY (default
# /work/mmdet_venv/bin/python), THREADS (default 2). Runs one at a time, niced; a seed whose dets.json
# exists is skipped, so an interrupted run is resumed by running the same command again.
set -euo pipefail
cd "$(dirname "$0")/../.."
SIDE=${1:-both}
shift || true
SEEDS=${*:-0 1 2 3 4}
DATA=${E2E_DATA:-/work/e2e_data}
RUNS=${E2E_RUNS:-/work/e2e_runs}
PY=${LOCDISTILL_PY:-/work/main/.venv/bin/python}
MMPY=${MMDET_PY:-/work/mmdet_venv/bin/python}
THREADS=${THREADS:-2}
export PYTHONPATH=$PWD/src OMP_NUM_THREADS=$THREADS MKL_NUM_THREADS=$THREADS
mkdir -p "$RUNS"
if [ ! -f "$DATA/annotations/instances_val.json" ]; then
  nice -n 5 "$PY" experiments/e2e_mmdet/write_demo_coco.py "$DATA"
fi

run_ours() {
  local seed=$1 dir=$RUNS/ours/seed$1
  if [ -f "$dir/dets.json" ]; then echo "ours seed $seed: done"; return; fi
  mkdir -p "$dir"
  echo "ours seed $seed: training ($(date +%T))"
  local t0=$SECONDS
  nice -n 5 "$PY" -m locdistill train experiments/e2e_mmdet/demo_base_coco.yaml --work-dir "$dir/work" \
    --data-root "$DATA" --overwrite --set train.seed="$seed" >"$dir/train.out" 2>&1
  echo $((SECONDS - t0)) >"$dir/train_seconds.txt"
  nice -n 5 "$PY" -m locdistill test "$dir/work/latest.pth" --split val --data-root "$DATA" \
    --out "$dir/dets.json.tmp" >"$dir/test.out" 2>&1
  mv "$dir/dets.json.tmp" "$dir/dets.json"
  echo "ours seed $seed: $(cat "$dir/train_seconds.txt") s"
}

run_mmdet() {
  local seed=$1 dir=$RUNS/mmdet/seed$1
  if [ -f "$dir/dets.json" ]; then echo "mmdet seed $seed: done"; return; fi
  mkdir -p "$dir"
  echo "mmdet seed $seed: training ($(date +%T))"
  nice -n 5 "$MMPY" experiments/e2e_mmdet/mmdet_gfl.py --data "$DATA" --seed "$seed" --work-dir "$dir" \
    --threads "$THREADS" >"$dir/run.out" 2>&1
  echo "mmdet seed $seed: $(cat "$dir/train_seconds.txt") s"
}

for seed in $SEEDS; do
  case $SIDE in
    ours) run_ours "$seed" ;;
    mmdet) run_mmdet "$seed" ;;
    both) run_ours "$seed"; run_mmdet "$seed" ;;
    *) echo "side must be ours, mmdet or both, got $SIDE" >&2; exit 2 ;;
  esac
done
