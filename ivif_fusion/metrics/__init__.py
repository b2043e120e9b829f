"""Evaluation metrics: fusion quality (:mod:`.fusion`), detection mAP (:mod:`.detection`), segmentation mIoU
(:mod:`.segmentation`). Conventions and references: docs/metrics.md."""

from .detection import coco_map
from .fusion import HIGHER_IS_BETTER, METRIC_NAMES, fusion_metrics
from .segmentation import confusion_matrix, miou, pixel_accuracy

__all__ = ["HIGHER_IS_BETTER", "METRIC_NAMES", "coco_map", "confusion_matrix", "fusion_metrics", "miou",
           "pixel_accuracy"]
