#!/usr/bin/env bash
# Short-run ablation of the stage-1 salient-target term on MSRS val (frames >= 1400), VFN2 backbone.
# Each arm: `ivif train fusion` for EPOCHS epochs of config/train_fusion.yaml (same seed, same crops),
# then the val pairs are fused and scored with the exact metrics. Usage (from the repository root):
#   bash experiments/salient_ablation/run.sh [EPOCHS] [W_SALIENT ...]
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/env.sh
EPOCHS=${1:-2}; shift || true
WEIGHTS=${*:-0 2}
DATA=${IVIF_DATA:-$(cd .. && pwd)/shared/data/ivif}
OUT=runs/salient_ablation
for w in $WEIGHTS; do
  run=$OUT/w$w
  ivif train fusion --out "$run" --set arch=vfn2 --set depth=8 --set epochs="$EPOCHS" --set w_salient="$w"
  ivif fuse --pairs "$DATA/MSRS" --split val --out "$run/fused_val" --weights "$run/vfn.pt" --task fusion \
    --set pipeline.backends='[torch]'
  ivif eval fusion --pairs "$DATA/MSRS" --fused "$run/fused_val" --only-fused --out "$run/val_metrics.csv" --no-progress
done
