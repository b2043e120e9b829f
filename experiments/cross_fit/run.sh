#!/usr/bin/env bash
# One fold of the cross-fitted gain measurement (experiments/cross_fit/README.md): the detector, the
# segmenter and the two-task RSC, each trained with `holdout_fold K/N` (fold K of N never trained on and never
# selecting an epoch), all on generic VFN2 images; then `pooled.py` judges every fold on its own networks.
# Recipes: the shipped detector's and segmenter's (config/train_task_*.yaml plus the overrides recorded in
# models/README.md), the shipped two-task RSC's with half its steps (compute: about 50 minutes a fold on 1 thread).
# Usage: bash experiments/cross_fit/run.sh K N MASKS_DIR OUT_DIR [THREADS]
set -euo pipefail
k=${1:?fold K}; n=${2:?folds N}; masks=${3:?masks_dir (ivif data masks --dataset MSRS --out DIR)}
out=${4:?output folder}; threads=${5:-1}
mkdir -p "$out"
fold="$k/$n"
python -m ivif_fusion.cli train task --config config/train_task_detection.yaml --set holdout_fold="$fold" \
  --set cache_dir="$out/../task_data" --set threads="$threads" --out "$out/detector"
python -m ivif_fusion.cli train task --config config/train_task_segmentation.yaml --set holdout_fold="$fold" \
  --set masks_dir="$masks" --set cache_dir="$out/../task_data" --epochs 40 --set seg_crop=160 \
  --set threads="$threads" --out "$out/segmenter"
python -m ivif_fusion.cli train rsc --config config/train_rsc_two_tasks.yaml --set holdout_fold="$fold" \
  --set masks_dir="$masks" --set steps=400 --set threads="$threads" \
  --set "tasks=[{name: detection, weights: $out/detector/yolo_det.pt}, {name: segmentation, weights: $out/segmenter/unet_seg.pt}]" \
  --out "$out/rsc"
