"""`ivif train fusion`: stage-1 training of the VFN backbone."""

from __future__ import annotations

import argparse

from ._common import add_set_option, parse_sets

COMMAND = ("train", "fusion")
HELP = "train the VFN fusion backbone without labels (intensity + gradient loss)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    from ..paths import CONFIG_DIR

    p.add_argument("--config", default=str(CONFIG_DIR / "train_fusion.yaml"), help="training config YAML")
    p.add_argument("--out", help="output folder (overrides the config's 'out')")
    p.add_argument("--resume", help="resume from a last_state.pt")
    add_set_option(p)


def run(args: argparse.Namespace) -> int:
    from ..config import TrainFusionConfig, load
    from ..training.fusion import train

    overrides = parse_sets(args.set)
    if args.out:
        overrides["out"] = args.out
    if args.resume:
        overrides["resume"] = args.resume
    cfg = load(TrainFusionConfig, args.config, overrides)
    path = train(cfg)
    print(f"checkpoint: {path}\nlog: {path.parent / 'log.csv'}")
    return 0
