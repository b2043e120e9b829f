"""`ivif train vifa`: shared backbone + one-layer task heads with key-channel and reference distillation."""

from __future__ import annotations

import argparse

from ._common import add_training_arguments, run_training

COMMAND = ("train", "vifa")
HELP = "train VIFA task heads on a shared backbone (key-channel + reference-model distillation)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_training_arguments(p, "train_vifa.yaml", steps=True)


def run(args: argparse.Namespace) -> int:
    from ..config import TrainVifaConfig
    from ..training.vifa import train

    return run_training(args, TrainVifaConfig, train, extra=("key channels=key_channels.md",))
