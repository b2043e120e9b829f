"""`ivif train rsc`: RSC task customization against frozen backbone and task networks."""

from __future__ import annotations

import argparse

from ._common import add_training_arguments, run_training

COMMAND = ("train", "rsc")
HELP = "train the RSC task-customization module (backbone and task networks frozen, CAGrad over tasks)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_training_arguments(p, "train_rsc.yaml", steps=True)


def run(args: argparse.Namespace) -> int:
    from ..config import TrainRSCConfig
    from ..training.rsc import train

    return run_training(args, TrainRSCConfig, train)
