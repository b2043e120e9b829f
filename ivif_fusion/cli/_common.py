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
