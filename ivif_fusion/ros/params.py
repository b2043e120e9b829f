"""The node's ROS parameters, computed from the config dataclasses (no rclpy import here).

Every field of :class:`~ivif_fusion.config.RuntimeConfig` under the sections ``pipeline``,
``sync`` and ``ros`` becomes one parameter with its dotted name (``sync.slop_s``), the type of
the field, the value from the config file as default, and the field's ``help`` as description.
``pipeline.tasks`` (a list of mappings, which ROS parameters cannot hold) is a string holding
YAML. A ``config_file`` parameter names the file whose values are the defaults; parameter
overrides (``--ros-args -p``, a params file, a launch file) win over it.

The launch file, docs/ros.md and the tests use :func:`parameter_specs`, so names and defaults
cannot drift from what the node declares.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ..config import ConfigError, RuntimeConfig, describe, load_runtime, to_dict
from ..paths import CONFIG_DIR

NODE_SECTIONS = ("pipeline", "sync", "ros")
"""Sections of config/multitask.yaml the node reads; the rest (data_root, replay) is for `ivif replay`."""

CONFIG_FILE_PARAM = "config_file"
DEFAULT_CONFIG_FILE = CONFIG_DIR / "multitask.yaml"

# Parameter kinds (mapped to rclpy ParameterType in the node).
BOOL, INT, FLOAT, STRING, STRING_ARRAY, YAML = "bool", "int", "float", "str", "str_list", "yaml"


@dataclass(frozen=True)
class ParamSpec:
    """One declared parameter: dotted name, kind, default (from the config file), description, limits."""

    name: str
    kind: str
    default: Any
    description: str
    choices: tuple | None = None
    min: float | None = None
    max: float | None = None

    @property
    def constraints(self) -> str:
        """Human-readable limits ('one of: a, b; min 0'), empty when there are none."""
        parts = []
        if self.choices:
            parts.append("one of: " + ", ".join(map(str, self.choices)))
        if self.min is not None:
            parts.append(f"min {self.min}")
        if self.max is not None:
            parts.append(f"max {self.max}")
        return "; ".join(parts)


def _field(cls: type, dotted: str) -> tuple[dataclasses.Field, Any]:
    """The dataclass field at ``dotted`` and its resolved type."""
    *parents, leaf = dotted.split(".")
    for p in parents:
        cls = typing.get_type_hints(cls)[p]
    f = next(f for f in dataclasses.fields(cls) if f.name == leaf)
    return f, typing.get_type_hints(cls)[leaf]


def _value(obj: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        obj = getattr(obj, part)
    return obj


def _kind(tp: Any, default_value: Any) -> str:
    if tp is bool:
        return BOOL
    if tp is int:
        return INT
    if tp is float:
        return FLOAT
    if tp is str:
        return STRING
    if typing.get_origin(tp) is list or tp is list:
        # A list of mappings (tasks) cannot be a ROS parameter: it travels as YAML text.
        return YAML if default_value and dataclasses.is_dataclass(default_value[0]) else STRING_ARRAY
    raise ConfigError(f"config field type {tp} has no ROS parameter mapping")


def parameter_specs(cfg: RuntimeConfig | None = None) -> list[ParamSpec]:
    """The node's parameters (without ``config_file``), defaults taken from ``cfg``.

    ``cfg`` defaults to the package's config/multitask.yaml.
    """
    if cfg is None:
        cfg = load_runtime()
    defaults = RuntimeConfig()
    specs = []
    for name, _tname, _default, helptext in describe(RuntimeConfig):
        if name.split(".")[0] not in NODE_SECTIONS:
            continue
        f, tp = _field(RuntimeConfig, name)
        kind = _kind(tp, _value(defaults, name))
        value = to_dict(_value(cfg, name))
        if kind == YAML:
            value = dump_yaml_value(value)
        elif kind == STRING_ARRAY:
            value = [str(v) for v in value]
        meta = f.metadata
        specs.append(ParamSpec(name, kind, value, helptext, meta.get("choices"), meta.get("min"), meta.get("max")))
    return specs


def parameter_names() -> list[str]:
    """Every parameter the node declares, ``config_file`` included (no ROS needed)."""
    return [CONFIG_FILE_PARAM] + [s.name for s in parameter_specs(RuntimeConfig())]


def dump_yaml_value(value: Any) -> str:
    """Compact one-line YAML for a YAML-kind parameter (e.g. the task list)."""
    return yaml.safe_dump(value, default_flow_style=True, sort_keys=False, width=10_000).strip()


def config_from_parameters(config_file: str | Path, values: dict[str, Any]) -> RuntimeConfig:
    """RuntimeConfig from the file, with parameter ``values`` (dotted name -> value) applied on top.

    YAML-kind values are parsed; every value is checked by :func:`ivif_fusion.config.load`
    (types, choices, ranges), so a bad override fails with the config's own message.
    """
    kinds = {s.name: s.kind for s in parameter_specs(RuntimeConfig())}
    overrides: dict[str, Any] = {}
    for name, value in values.items():
        if name not in kinds:
            raise ConfigError(f"unknown node parameter '{name}'")
        if kinds[name] == YAML and isinstance(value, str):
            try:
                value = yaml.safe_load(value)
            except yaml.YAMLError as e:
                raise ConfigError(f"parameter '{name}' is not valid YAML: {e}") from e
            if value is None:
                value = []
        elif kinds[name] == STRING_ARRAY:
            value = [str(v) for v in value]
        overrides[name] = value
    return load_runtime(config_file, overrides)
