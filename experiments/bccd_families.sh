#!/usr/bin/env bash
# LD beyond GFL on BCCD (../shared/data/bccd): for each family (RetinaGFL, ATSS-GFL, FCOS-GFL,
# docs/families.md) an EfficientNet-Lite2 teacher, then per seed the Lite0 baseline and the Lite0 student
# with the family's Main LD (RetinaGFL: one 68-way row per anchor, as the LD code), as
# experiments/bccd_ld.sh does for GFL. Stages already done are not rerun; an interrupted stage resumes
# from its last checkpoint. One summary table per family.
#
#   bash experiments/bccd_families.sh                 # from the repository root, in the project's venv
#   FAMILIES="atss_gfl" SEEDS="0 1 2" WORK=work_dirs/bccd_families bash experiments/bccd_families.sh
#   EXTRA="distill.ld_rows=edge" ...                  # e.g. RetinaGFL's per-edge LD instead
#
# Expected cost on 2 idle CPU cores: per family about 15 min for the teacher and 6-10 min per student.
set -euo pipefail
cd "$(dirname "$0")/.."
FAMILIES=${FAMILIES:-"retina_gfl atss_gfl fcos_gfl"}
SEEDS=${SEEDS:-"0 1 2"}
WORK=${WORK:-work_dirs/bccd_families}
EXTRA=${EXTRA:-}
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

for family in $FAMILIES; do
  fw="$WORK/$family"
  mkdir -p "$fw"
  run "$fw/teacher_effl2" "configs/$family/${family}_effl2_fpn_bccd.yaml"
  for seed in $SEEDS; do
    run "$fw/baseline_s$seed" "configs/$family/${family}_effl0_fpn_bccd.yaml" --set train.seed="$seed"
    # shellcheck disable=SC2086
    run "$fw/ld_s$seed" "configs/ld/ld_${family}_effl2_effl0_fpn_bccd.yaml" \
      --set train.seed="$seed" "distill.teacher_checkpoint=$fw/teacher_effl2/latest.pth" $EXTRA
  done
  python experiments/summarize.py "$fw" --out "$fw/summary.json"
done
