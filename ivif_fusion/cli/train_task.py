"""`ivif train task`: train a task network (YOLO detection, U-Net segmentation) on fused images of the shared pairs."""

from __future__ import annotations

import argparse

from ._common import training_verb

COMMAND = ("train", "task")
HELP = ("train a task network on fused MSRS pairs: YOLO detection on the shared boxes, or U-Net segmentation on "
        "class-id masks (--task segmentation --set masks_dir=DIR)")
CONFIGS = {"detection": "train_task_detection.yaml", "segmentation": "train_task_segmentation.yaml"}


def _task_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--task", choices=tuple(CONFIGS),
                   help="task (overrides the config's 'task'; without --config, picks config/" + CONFIGS["segmentation"]
                        + " for segmentation)")
    p.add_argument("--fusion", choices=("vfn", "max", "visible", "ir"),
                   help="images to train on (overrides the config's 'fusion'; vfn: the backbone in 'fusion_weights')")


add_arguments, _run = training_verb(CONFIGS["detection"], "TrainTaskConfig", "task", epochs=True,
                                    extra_arguments=_task_arguments, options=("task", "fusion"),
                                    outputs=("metrics=metrics.json",))


def run(args: argparse.Namespace) -> int:
    from ..paths import CONFIG_DIR

    if args.task == "segmentation" and args.config == str(CONFIG_DIR / CONFIGS["detection"]):
        args.config = str(CONFIG_DIR / CONFIGS["segmentation"])
    return _run(args)
