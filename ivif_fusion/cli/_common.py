"""Helpers shared by CLI commands."""

from __future__ import annotations

import argparse
from typing import Any

import yaml


def add_set_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--set", metavar="KEY=VALUE", action="append", default=[],
                   help="override a config key (dotted, YAML value), e.g. --set epochs=2 --set sync.slop_s=0.03")


def parse_sets(items: list[str]) -> dict[str, Any]:
    out = {}
    for item in items:
        if "=" not in item:
            raise SystemExit(f"ERROR: --set expects KEY=VALUE, got '{item}'")
        k, v = item.split("=", 1)
        out[k.strip()] = yaml.safe_load(v)
    return out


def add_training_arguments(p: argparse.ArgumentParser, config_name: str, *, steps: bool = False,
                           epochs: bool = False, resume: bool = False) -> None:
    """The options every `ivif train <job>` shares: --config, --out, --set (and --steps / --epochs / --resume)."""
    from ..paths import CONFIG_DIR

    p.add_argument("--config", default=str(CONFIG_DIR / config_name), help="training config YAML")
    p.add_argument("--out", help="output folder (overrides the config's 'out')")
    if steps:
        p.add_argument("--steps", type=int, help="optimisation steps (overrides the config's 'steps')")
    if epochs:
        p.add_argument("--epochs", type=int, help="training epochs (overrides the config's 'epochs')")
    if resume:
        p.add_argument("--resume", help="resume from a last_state.pt")
    add_set_option(p)


#: options that override the config key of the same name when given
OVERRIDING_OPTIONS = ("out", "steps", "epochs", "resume")


def run_training(args: argparse.Namespace, cfg_cls: type, train: Any, extra: tuple[str, ...] = (),
                 options: tuple[str, ...] = (), outputs: tuple[str, ...] = ("log=log.csv",)) -> int:
    """Load the job's config with the command-line overrides, train, say where the outputs are.

    ``options``: the job's own options that override config keys of the same name; ``outputs`` and
    ``extra``: ``name=file`` lines printed after the checkpoint (files in the checkpoint's folder).
    """
    from ..config import load

    overrides = parse_sets(args.set)
    for option in OVERRIDING_OPTIONS + options:
        value = getattr(args, option, None)
        if value is not None:
            overrides[option] = value
    path = train(load(cfg_cls, args.config, overrides))
    print(f"checkpoint: {path}")
    for name, file in (x.split("=", 1) for x in outputs + extra):
        print(f"{name}: {path.parent / file}")
    return 0


def training_verb(config_name: str, config_class: str, job: str, *, options: tuple[str, ...] = (),
                  outputs: tuple[str, ...] = ("log=log.csv",), extra: tuple[str, ...] = (),
                  extra_arguments: Any = None, **flags: bool) -> tuple[Any, Any]:
    """``(add_arguments, run)`` of an `ivif train <job>` command module.

    ``config_class`` (a name in :mod:`ivif_fusion.train_config`) and ``ivif_fusion.training.<job>`` are
    imported when the command runs, so ``ivif --help`` stays light. ``flags`` (``steps``,
    ``epochs``, ``resume``) select the shared options; ``extra_arguments(parser)`` adds the job's own,
    which ``options`` lists so that they override the config keys of the same name.
    """

    def add_arguments(p: argparse.ArgumentParser) -> None:
        if extra_arguments is not None:
            extra_arguments(p)
        add_training_arguments(p, config_name, **flags)

    def run(args: argparse.Namespace) -> int:
        import importlib

        from .. import train_config

        train = importlib.import_module(f"ivif_fusion.training.{job}").train
        return run_training(args, getattr(train_config, config_class), train, extra, options, outputs)

    return add_arguments, run
