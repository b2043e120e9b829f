#!/usr/bin/env bash
# `make demo`: the main job on the shared sample pairs (MSRS eval-20), nothing copied into the project.
# 1) fuse the 20 evaluation pairs with the shipped backbone and score them (fusion metrics table);
# 2) (when the replay tools are present) build a ROS 2 bag from them and replay it into a report.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${DEMO_OUT:-demo_out}
DATA=$(python -c "from ivif_fusion.paths import data_root; print(data_root())")
if [ ! -d "$DATA/MSRS/ir" ]; then
  echo "ERROR: shared data not found at $DATA (expected $DATA/MSRS/ir and vi)." >&2
  echo "       Set IVIF_DATA to a folder laid out as <dataset>/ir, <dataset>/vi (see README, 'Data')." >&2
  exit 1
fi
mkdir -p "$OUT"
echo "== fusing MSRS eval-20 pairs from $DATA/MSRS"
ivif fuse --pairs "$DATA/MSRS" --split eval --out "$OUT/fused"
echo "== fusion metrics"
ivif eval fusion --pairs "$DATA/MSRS" --fused "$OUT/fused" --only-fused --out "$OUT/fusion_metrics.csv" --no-progress
echo "demo: fused colour images in $OUT/fused, metrics in $OUT/fusion_metrics_summary.md"
