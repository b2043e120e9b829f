#!/usr/bin/env bash
# `make demo`: the main job on the shared sample pairs (MSRS eval-20), nothing copied into the project.
# 1) fuse the 20 evaluation pairs with the shipped backbone and score them (fusion metrics table);
# 2) build a ROS 2 bag from them (jitter + injected faults) and replay it into an output bag and a report.
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
ivif fuse --pairs "$DATA/MSRS" --split eval --task fusion --out "$OUT/fused"
echo "== fusion metrics"
ivif eval fusion --pairs "$DATA/MSRS" --fused "$OUT/fused" --only-fused --out "$OUT/fusion_metrics.csv" --no-progress
echo "demo: fused colour images in $OUT/fused, metrics in $OUT/fusion_metrics_summary.md"

# 2) the robot's view: a ROS 2 bag of the same pairs at 10 Hz, with mild stamp jitter and one fault of
#    each kind (seed 175 draws a dropped, a duplicated, a reordered and a corrupted frame), replayed
#    through the node's pairing and pipeline into an output bag and a report.
BAG="$OUT/msrs_eval20_bag"
rm -rf "$BAG" "$OUT/replay"
echo "== building a ROS 2 bag from the MSRS eval-20 pairs"
ivif make-bag --pairs "$DATA/MSRS" --split eval --out "$BAG" --storage mcap --rate 10 --jitter 3 \
  --drop 0.05 --duplicate 0.05 --reorder 0.05 --corrupt 0.05 --seed 175 \
  --labels "$DATA/MSRS/labels_det/fusion" --no-progress
echo "== replaying it with config/multitask.yaml"
# sync.reject_late drops repeated and late stamps on arrival, so every injected fault has a predictable
# drop reason and the report can check the accounting against the sidecar.
ivif replay "$BAG" --config config/multitask.yaml --set sync.reject_late=true --out "$OUT/replay"
echo "demo: replay report in $OUT/replay/report.html (markdown: $OUT/replay/report.md)"
