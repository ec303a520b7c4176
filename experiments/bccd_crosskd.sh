#!/usr/bin/env bash
# The CrossKD rows and the box-weight control of docs/results.md on BCCD (../shared/data/bccd):
# EfficientNet-Lite2 teacher -> EfficientNet-Lite0 student, as experiments/bccd_ld.sh. Per seed: the
# baseline with doubled box-loss weights (no teacher), a CrossKD student and a CrossKD + Main LD student;
# then (unless BASELINES=0) the baseline and Main LD students again with the same teacher. Methods run
# seed after seed, method after method, so that whole rows finish first. Stages already done (by this
# script or bccd_ld.sh in the same WORK) are not rerun; an interrupted stage resumes from its last
# checkpoint.
#
#   bash experiments/bccd_crosskd.sh            # from the repository root, in the project's venv
#   SEEDS="0 1 2" WORK=work_dirs/bccd CACHE=1 bash experiments/bccd_crosskd.sh
#
# CACHE=1: the distilled students share a float32 teacher-output cache in $WORK/teacher_cache (the same
# numbers as the live teacher in float32; later epochs skip the teacher). On 2 idle CPU cores: teacher
# 15 min, control 6 min, CrossKD and CrossKD + LD students about 10-12 min each.
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
  local resume=()
  if ls "$dir"/epoch_*.pth >/dev/null 2>&1 || [ -e "$dir/latest.pth" ]; then resume=(--resume); fi
  locdistill train "$@" --work-dir "$dir" "${resume[@]}"
}

TEACHER="distill.teacher_checkpoint=$WORK/teacher_effl2/latest.pth"
DISTILL=("$TEACHER")
if [ "${CACHE:-0}" = 1 ]; then
  DISTILL+=("distill.cache=$WORK/teacher_cache" distill.cache_dtype=float32 distill.cache_anchors=all)
fi
run "$WORK/teacher_effl2" configs/gfl/gfl_effl2_fpn_bccd.yaml
for seed in $SEEDS; do
  run "$WORK/box2x_s$seed" configs/gfl/gfl_effl0_fpn_bccd_box2x.yaml --set train.seed="$seed"
done
for seed in $SEEDS; do
  run "$WORK/crosskd_s$seed" configs/ld/crosskd_gflv1_effl2_effl0_fpn_bccd.yaml \
    --set train.seed="$seed" "${DISTILL[@]}"
done
for seed in $SEEDS; do
  run "$WORK/crosskd_ld_s$seed" configs/ld/crosskd_ld_gflv1_effl2_effl0_fpn_bccd.yaml \
    --set train.seed="$seed" "${DISTILL[@]}"
done
if [ "${BASELINES:-1}" = 1 ]; then
  for seed in $SEEDS; do
    run "$WORK/baseline_s$seed" configs/gfl/gfl_effl0_fpn_bccd.yaml --set train.seed="$seed"
    run "$WORK/ld_s$seed" configs/ld/ld_gflv1_effl2_effl0_fpn_bccd.yaml --set train.seed="$seed" "${DISTILL[@]}"
  done
fi
python experiments/summarize.py "$WORK" --out "$WORK/summary.json"
