#!/usr/bin/env bash
# Does CPU bfloat16 training (train.amp with amp_dtype bfloat16, plus channels-last: the fastest CPU
# setting in docs/benchmarks.md) train as well as float32? The demo's teacher network
# (configs/demo/demo_teacher.yaml: 400 synthetic 192 px images, 8 epochs, COCO AP on 100 held-out
# images) trained in float32 and in bf16 + channels-last, over SEEDS, then the table of final APs and
# the wall time of each run (docs/benchmarks.md, "Does bf16 train as well").
#
#   bash experiments/cpu_bf16.sh            # from the repository root, in the project's venv
#   SEEDS="0 1" WORK=work_dirs/cpu_bf16 bash experiments/cpu_bf16.sh
#
# A run whose final evaluation exists is not trained again. About 4 minutes per float32 run on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
SEEDS=${SEEDS:-"0 1"}
WORK=${WORK:-work_dirs/cpu_bf16}
mkdir -p "$WORK"
DATA=(data.train.root="$WORK/data" data.val.root="$WORK/data" train.eval_interval=8 train.checkpoint_interval=8)
BF16=(train.amp=true train.amp_dtype=bfloat16 train.channels_last=true)

run() {  # run WORK_DIR [overrides...]
  local dir=$1; shift
  if [ -e "$dir/latest.pth" ] && grep -q '"type": "val"' "$dir/metrics.jsonl" 2>/dev/null; then
    echo "done already: $dir"; return
  fi
  local start=$SECONDS
  locdistill train configs/demo/demo_teacher.yaml --work-dir "$dir" --set "${DATA[@]}" "$@"
  echo "$((SECONDS - start))" > "$dir/wall_s.txt"
}

for seed in $SEEDS; do
  run "$WORK/fp32_s$seed" train.seed="$seed"
  run "$WORK/bf16_channels_last_s$seed" train.seed="$seed" "${BF16[@]}"
done
python experiments/summarize.py "$WORK" --out "$WORK/summary.json"
for f in "$WORK"/*/wall_s.txt; do echo "$(basename "$(dirname "$f")"): $(cat "$f") s"; done
