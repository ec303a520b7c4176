#!/usr/bin/env bash
# The CrossKD rows of docs/results.md on BCCD (../shared/data/bccd): EfficientNet-Lite2 teacher ->
# EfficientNet-Lite0 student, as experiments/bccd_ld.sh, adding a CrossKD and a CrossKD + Main LD student
# per seed. Stages already done (by this script or by bccd_ld.sh in the same WORK) are not rerun, so with
# the default WORK the table gets baseline, LD, CrossKD and CrossKD + LD over the same seeds and teacher.
#
#   bash experiments/bccd_crosskd.sh            # from the repository root, in the project's venv
#   SEEDS="0 1 2" WORK=work_dirs/bccd bash experiments/bccd_crosskd.sh
#
# About 25 minutes of 2 CPU cores per CrossKD student (6 epochs of 73 iterations); the teacher (15 min),
# baseline and LD runs come from bccd_ld.sh when present and are trained here otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."
SEEDS=${SEEDS:-"0 1 2"}
WORK=${WORK:-work_dirs/bccd}
mkdir -p "$WORK"

run() {  # run WORK_DIR CONFIG [--set ...]
  local dir=$1; shift
  if [ -e "$dir/latest.pth" ] && grep -q '"type": "val"' "$dir/metrics.jsonl" 2>/dev/null; then
    echo "done already: $dir"; return
  fi
  locdistill train "$@" --work-dir "$dir"
}

TEACHER="distill.teacher_checkpoint=$WORK/teacher_effl2/latest.pth"
run "$WORK/teacher_effl2" configs/gfl/gfl_effl2_fpn_bccd.yaml
for seed in $SEEDS; do
  run "$WORK/baseline_s$seed" configs/gfl/gfl_effl0_fpn_bccd.yaml --set train.seed="$seed"
  run "$WORK/ld_s$seed" configs/ld/ld_gflv1_effl2_effl0_fpn_bccd.yaml --set train.seed="$seed" "$TEACHER"
  run "$WORK/crosskd_s$seed" configs/ld/crosskd_gflv1_effl2_effl0_fpn_bccd.yaml \
    --set train.seed="$seed" "$TEACHER"
  run "$WORK/crosskd_ld_s$seed" configs/ld/crosskd_ld_gflv1_effl2_effl0_fpn_bccd.yaml \
    --set train.seed="$seed" "$TEACHER"
done
python experiments/summarize.py "$WORK" --out "$WORK/summary.json"
