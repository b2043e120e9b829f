"""`ivif train task`: train a task network (detection) on fused images of the labelled shared pairs."""

from __future__ import annotations

import argparse

from ._common import training_verb

COMMAND = ("train", "task")
HELP = "train a task network (YOLO detection) on fused MSRS pairs with the shared boxes"


def _task_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--task", choices=("detection", "segmentation"), help="task (overrides the config's 'task')")
    p.add_argument("--fusion", choices=("vfn", "max", "visible", "ir"),
                   help="images to train on (overrides the config's 'fusion')")


add_arguments, run = training_verb("train_task_detection.yaml", "TrainTaskConfig", "task", epochs=True,
                                   extra_arguments=_task_arguments, options=("task", "fusion"),
                                   outputs=("metrics=metrics.json", "ultralytics run=ultralytics"))
