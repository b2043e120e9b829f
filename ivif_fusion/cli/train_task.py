"""`ivif train task`: train a task network (detection) on fused images of the labelled shared pairs."""

from __future__ import annotations

import argparse

from ._common import add_training_arguments, run_training

COMMAND = ("train", "task")
HELP = "train a task network (YOLO detection) on fused MSRS pairs with the shared boxes"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--task", choices=("detection", "segmentation"), help="task (overrides the config's 'task')")
    p.add_argument("--fusion", choices=("vfn", "max", "visible", "ir"),
                   help="images to train on (overrides the config's 'fusion')")
    add_training_arguments(p, "train_task_detection.yaml", epochs=True)


def run(args: argparse.Namespace) -> int:
    from ..config import TrainTaskConfig
    from ..training.task import train

    return run_training(args, TrainTaskConfig, train, options=("task", "fusion"),
                        outputs=("metrics=metrics.json", "ultralytics run=ultralytics"))
