#!/usr/bin/env bash
# A small CPU comparison of baseline, LD, CrossKD and CrossKD + LD on the demo's synthetic shapes
# (docs/results.md), at a reduced scale: 200 training and 100 held-out images of 128 px, the demo's models
# (configs/demo/), a teacher of 5 epochs (step at 4) and students of 4 epochs (step at 3); about 15
# minutes of 2 idle cores per seed. The students share the teacher and the data; SEEDS vary the students.
#
#   bash experiments/synthetic_crosskd.sh            # from the repository root, in the project's venv
#   SEEDS="0 1" WORK=work_dirs/synthetic_crosskd bash experiments/synthetic_crosskd.sh
#
# A stage whose final evaluation exists is not trained again; an interrupted stage resumes from its last
# epoch checkpoint.
set -euo pipefail
cd "$(dirname "$0")/.."
SEEDS=${SEEDS:-"0"}
WORK=${WORK:-work_dirs/synthetic_crosskd}
mkdir -p "$WORK"

SMALL=(data.train.num_images=200 data.val.num_images=100 data.train.image_size=128 data.val.image_size=128
  "data.img_scale=[128, 128]" data.train.seed=0 data.val.seed=0 train.log_interval=25)
TEACHER=(train.epochs=5 "train.optim.steps=[4]" train.eval_interval=5 train.checkpoint_interval=1)
STUDENT=(train.epochs=4 "train.optim.steps=[3]" train.eval_interval=4 train.checkpoint_interval=1)

run() {  # run WORK_DIR CONFIG [overrides...]
  local dir=$1 config=$2; shift 2
  if [ -e "$dir/latest.pth" ] && grep -q '"type": "val"' "$dir/metrics.jsonl" 2>/dev/null; then
    echo "done already: $dir"; return
  fi
  local resume=()
  if [ -e "$dir/latest.pth" ]; then resume=(--resume); fi
  locdistill train "$config" --work-dir "$dir" "${resume[@]}" --set "${SMALL[@]}" "$@"
}

run "$WORK/teacher" configs/demo/demo_teacher.yaml "${TEACHER[@]}" train.seed=0
DISTILL=("distill.teacher_config=$WORK/teacher/config.yaml" "distill.teacher_checkpoint=$WORK/teacher/latest.pth")
for seed in $SEEDS; do
  run "$WORK/baseline_s$seed" configs/demo/demo_base.yaml "${STUDENT[@]}" train.seed="$seed"
  run "$WORK/ld_s$seed" configs/demo/demo_ld.yaml "${STUDENT[@]}" train.seed="$seed" "${DISTILL[@]}"
  run "$WORK/crosskd_s$seed" configs/demo/demo_crosskd.yaml "${STUDENT[@]}" train.seed="$seed" "${DISTILL[@]}"
  run "$WORK/crosskd_ld_s$seed" configs/demo/demo_crosskd_ld.yaml "${STUDENT[@]}" train.seed="$seed" \
    "${DISTILL[@]}"
done
python experiments/summarize.py "$WORK" --out "$WORK/summary.json"
