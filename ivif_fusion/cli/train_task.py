"""`ivif train task`: train a task network (detection) on fused images of the labelled shared pairs."""

from __future__ import annotations

import argparse

from ._common import add_set_option, parse_sets

COMMAND = ("train", "task")
HELP = "train a task network (YOLO detection) on fused MSRS pairs with the shared boxes"


def add_arguments(p: argparse.ArgumentParser) -> None:
    from ..paths import CONFIG_DIR

    p.add_argument("--task", choices=("detection", "segmentation"), help="task (overrides the config's 'task')")
    p.add_argument("--config", default=str(CONFIG_DIR / "train_task_detection.yaml"), help="training config YAML")
    p.add_argument("--fusion", choices=("vfn", "max", "visible", "ir"),
                   help="images to train on (overrides the config's 'fusion')")
    p.add_argument("--epochs", type=int, help="override the config's 'epochs'")
    p.add_argument("--out", help="output folder (overrides the config's 'out')")
    add_set_option(p)


def run(args: argparse.Namespace) -> int:
    from ..config import TrainTaskConfig, load
    from ..training.task import train

    overrides = parse_sets(args.set)
    for key in ("task", "fusion", "epochs", "out"):
        if getattr(args, key) is not None:
            overrides[key] = getattr(args, key)
    cfg = load(TrainTaskConfig, args.config, overrides)
    path = train(cfg)
    print(f"checkpoint: {path}\nmetrics: {path.parent / 'metrics.json'}\nultralytics run: {path.parent / 'ultralytics'}")
    return 0
