#!/usr/bin/env bash
# RSC against the detector and the segmenter together: CAGrad (c 0.5) vs plain summing (c 0), 150 steps each
# at crop 192, batch 4, 1 thread, both arms in parallel; then the summary (experiments/rsc_two_tasks/README.md).
# Usage: bash experiments/rsc_two_tasks/run.sh MASKS_DIR SEGMENTER_CKPT [OUT_PREFIX]
set -euo pipefail
masks=${1:?masks_dir (ivif data masks --dataset MSRS --out DIR)}
seg=${2:?segmenter checkpoint (ivif train task --task segmentation)}
prefix=${3:-runs/rsc2}
for c in 0.5 0; do
  tag=c$(echo "$c" | tr -d .)
  python -m ivif_fusion.cli train rsc --config config/train_rsc_two_tasks.yaml --set masks_dir="$masks" \
    --set "tasks=[{name: detection, weights: models/yolo_det_msrs.pt}, {name: segmentation, weights: $seg}]" \
    --set crop=192 --set batch_size=4 --set steps=150 --set threads=1 --set cagrad_c=$c \
    --set out="${prefix}_$tag" > "${prefix}_$tag.log" 2>&1 &
done
wait
python experiments/rsc_two_tasks/summarise.py "CAGrad c=0.5=${prefix}_c05" "plain sum c=0=${prefix}_c0" \
  --out experiments/rsc_two_tasks/summary.md
