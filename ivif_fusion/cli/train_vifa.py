"""`ivif train vifa`: shared backbone + one-layer task heads with key-channel and reference distillation."""

from __future__ import annotations

import argparse

from ._common import add_set_option, parse_sets

COMMAND = ("train", "vifa")
HELP = "train VIFA task heads on a shared backbone (key-channel + reference-model distillation)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    from ..paths import CONFIG_DIR

    p.add_argument("--config", default=str(CONFIG_DIR / "train_vifa.yaml"), help="training config YAML")
    p.add_argument("--out", help="output folder (overrides the config's 'out')")
    p.add_argument("--steps", type=int, help="optimisation steps (overrides the config's 'steps')")
    add_set_option(p)


def run(args: argparse.Namespace) -> int:
    from ..config import TrainVifaConfig, load
    from ..training.vifa import train

    overrides = parse_sets(args.set)
    if args.out:
        overrides["out"] = args.out
    if args.steps is not None:
        overrides["steps"] = args.steps
    cfg = load(TrainVifaConfig, args.config, overrides)
    path = train(cfg)
    print(f"checkpoint: {path}\nlog: {path.parent / 'log.csv'}\nkey channels: {path.parent / 'key_channels.md'}")
    return 0
