"""Task checkpoints to adapters: ``ADAPTERS`` maps a checkpoint kind to its adapter class."""

from __future__ import annotations

import os

from .base import TaskAdapter
from .detection import YoloDetector
from .segmentation import SmallSegmenter

ADAPTERS: dict[str, type[TaskAdapter]] = {YoloDetector.KIND: YoloDetector, SmallSegmenter.KIND: SmallSegmenter}


def load_task(path: str | os.PathLike, device: str = "cpu") -> TaskAdapter:
    """Load any task checkpoint, choosing the adapter from the checkpoint's kind."""
    from ..models import checkpoint

    kind = checkpoint.load(path).get("kind")
    if kind not in ADAPTERS:
        raise checkpoint.CheckpointError(f"{path} holds a '{kind}' model, not a task network "
                                         f"(expected one of {sorted(ADAPTERS)})")
    return ADAPTERS[kind].from_checkpoint(path, device)
