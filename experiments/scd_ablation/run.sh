#!/usr/bin/env bash
# Fine-tuning VFN2 with the complementarity term w_scd * (2 - SCD(F)) (ivif_fusion/losses.py), one arm per weight.
# Each arm starts from the stage-A VFN2 (runs/vfn2_long/vfn.pt: `ivif train fusion --config config/train_fusion.yaml
# --out runs/vfn2_long --set arch=vfn2 --set depth=8 --set epochs=60`), trains EPOCHS epochs at lr 5e-4 with the
# stage-1 loss plus the term, then fuses MSRS val (selection) and eval-20 and scores them with the exact metrics.
# Usage (repository root): bash experiments/scd_ablation/run.sh [EPOCHS] [W_SCD ...]
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/env.sh
EPOCHS=${1:-4}; shift || true
WEIGHTS=${*:-0.05 0.12}
DATA=${IVIF_DATA:-$(cd .. && pwd)/shared/data/ivif}
INIT=${INIT:-runs/vfn2_long/vfn.pt}
for w in $WEIGHTS; do
  run=runs/scd_ft_w$w
  ivif train fusion --config config/train_fusion.yaml --out "$run" --set arch=vfn2 --set depth=8 --set epochs="$EPOCHS" \
    --set lr=0.0005 --set w_scd="$w" --set init="$INIT" --set threads=1
  for split in val eval; do
    ivif fuse --pairs "$DATA/MSRS" --split $split --out "$run/fused_$split" --weights "$run/vfn.pt" --task fusion \
      --set 'pipeline.backends=[torch]' --set pipeline.threads=1
    ivif eval fusion --pairs "$DATA/MSRS" --fused "$run/fused_$split" --only-fused --out "$run/${split}_metrics.csv" --no-progress
  done
done
