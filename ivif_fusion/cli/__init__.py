"""The ``ivif`` command line.

Each module in this package is one command: it defines ``COMMAND`` (a tuple such as
``("train", "fusion")`` or ``("replay",)``), ``HELP`` (one line), ``add_arguments(parser)``
and ``run(args) -> int`` (the exit code). Commands are discovered, so adding a module adds a
command; two-word commands are grouped under their first word (``ivif train fusion``).
Commands check their inputs early, hand the work to the core, and end by saying where
their outputs are. Errors the user can fix print one ``ERROR:`` line and exit 1/2, never
a traceback (``--debug`` shows it).
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from collections.abc import Sequence

from .. import __version__

GROUP_HELP = {
    "train": "train models (fusion backbone, task networks, RSC, VIFA)",
    "eval": "evaluate fused images and task networks",
    "export": "export to ONNX / TensorRT",
    "bench": "benchmarks (results under benchmarks/)",
    "data": "inspect datasets",
}


def _commands() -> list:
    mods = []
    for info in pkgutil.iter_modules(__path__):
        if info.name.startswith("_"):
            continue
        mod = importlib.import_module(f"{__name__}.{info.name}")
        if hasattr(mod, "COMMAND"):
            mods.append(mod)
    return sorted(mods, key=lambda m: m.COMMAND)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ivif", description="Task-customized visible-infrared fusion: fuse, train, evaluate, export, replay.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--version", action="version", version=f"ivif_fusion {__version__}")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    groups: dict[str, argparse._SubParsersAction] = {}
    for mod in _commands():
        words = mod.COMMAND
        if len(words) == 1:
            p = sub.add_parser(words[0], help=mod.HELP, description=mod.HELP,
                               formatter_class=argparse.ArgumentDefaultsHelpFormatter)
        else:
            if words[0] not in groups:
                g = sub.add_parser(words[0], help=GROUP_HELP.get(words[0], ""), description=GROUP_HELP.get(words[0]))
                groups[words[0]] = g.add_subparsers(dest="subcommand", metavar="SUBCOMMAND", required=True)
            p = groups[words[0]].add_parser(words[1], help=mod.HELP, description=mod.HELP,
                                            formatter_class=argparse.ArgumentDefaultsHelpFormatter)
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    try:
        return int(args._run(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001 - one clear line for the user, traceback with --debug
        if args.debug:
            raise
        from ..errors import is_user_error

        if is_user_error(e):
            print(f"ERROR: {e}", file=sys.stderr)
            return 1
        raise


if __name__ == "__main__":
    sys.exit(main())
