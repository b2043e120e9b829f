"""`ivif train fusion`: stage-1 training of the VFN backbone."""

from __future__ import annotations

import argparse

from ._common import add_training_arguments, run_training

COMMAND = ("train", "fusion")
HELP = "train the VFN fusion backbone without labels (intensity + gradient loss)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_training_arguments(p, "train_fusion.yaml", resume=True)


def run(args: argparse.Namespace) -> int:
    from ..config import TrainFusionConfig
    from ..training.fusion import train

    return run_training(args, TrainFusionConfig, train)
