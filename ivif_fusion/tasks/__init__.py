"""Task networks behind one adapter interface (:class:`~ivif_fusion.tasks.base.TaskAdapter`).

``ADAPTERS`` maps a checkpoint kind to its adapter class; :func:`load_task` picks the right one.
"""

from __future__ import annotations

from .base import TaskAdapter, TaskInputError, as_batch, load_task
from .detection import DetectorConfig, YoloDetector

ADAPTERS: dict[str, type[TaskAdapter]] = {YoloDetector.KIND: YoloDetector}

try:  # segmentation is optional until its module lands
    from .segmentation import SegmenterConfig, SmallSegmenter

    ADAPTERS[SmallSegmenter.KIND] = SmallSegmenter
except ImportError:  # pragma: no cover
    pass

__all__ = ["ADAPTERS", "DetectorConfig", "TaskAdapter", "TaskInputError", "YoloDetector", "as_batch", "load_task"]
