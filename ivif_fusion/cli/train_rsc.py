"""`ivif train rsc`: RSC task customization against frozen backbone and task networks."""

from __future__ import annotations

import argparse

from ._common import add_set_option, parse_sets

COMMAND = ("train", "rsc")
HELP = "train the RSC task-customization module (backbone and task networks frozen, CAGrad over tasks)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    from ..paths import CONFIG_DIR

    p.add_argument("--config", default=str(CONFIG_DIR / "train_rsc.yaml"), help="training config YAML")
    p.add_argument("--out", help="output folder (overrides the config's 'out')")
    p.add_argument("--steps", type=int, help="optimisation steps (overrides the config's 'steps')")
    add_set_option(p)


def run(args: argparse.Namespace) -> int:
    from ..config import TrainRSCConfig, load
    from ..training.rsc import train

    overrides = parse_sets(args.set)
    if args.out:
        overrides["out"] = args.out
    if args.steps is not None:
        overrides["steps"] = args.steps
    cfg = load(TrainRSCConfig, args.config, overrides)
    path = train(cfg)
    print(f"checkpoint: {path}\nlog: {path.parent / 'log.csv'}")
    return 0
