"""Task networks behind one adapter interface (:class:`~ivif_fusion.tasks.base.TaskAdapter`).

``ADAPTERS`` maps a checkpoint kind to its adapter class; :func:`load_task` picks the right one.
"""

from __future__ import annotations

from .base import TaskAdapter, TaskInputError, as_batch
from .detection import DetectorConfig, YoloDetector
from .loading import ADAPTERS, load_task
from .segmentation import SegmenterConfig, SmallSegmenter

__all__ = ["ADAPTERS", "DetectorConfig", "SegmenterConfig", "SmallSegmenter", "TaskAdapter", "TaskInputError",
           "YoloDetector", "as_batch", "load_task"]
