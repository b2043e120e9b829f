"""The node's ROS parameters, computed from the config dataclasses (no rclpy import here).

Every field of :class:`~ivif_fusion.config.RuntimeConfig` under the node's sections
(``pipeline``, ``sync``, ``ros``, ``diagnostics``, ``time_jump_s``) becomes one parameter with its
dotted name (``sync.slop_s``, ``ros.thermal.depth``), the type of the field, the value from the
config file as default, and the field's ``help`` as description. Tasks are plain parameters
too: ``pipeline.tasks`` is the list of task names and each task's fields are
``tasks.<name>.<field>`` (``tasks.det.kind``, ``tasks.det.weights``); a task named in
``pipeline.tasks`` takes its defaults from the config file's task of that name, or from the
schema. A ``config_file`` parameter names the file whose values are the defaults; parameter
overrides (``--ros-args -p``, a params file, a launch file) win over it.

:func:`check_given` turns an override the node does not declare into a
:class:`~ivif_fusion.config.ConfigError` with a did-you-mean hint. The launch file, docs/ros.md
and the tests use :func:`parameter_specs`, so names and defaults cannot drift from what the node
declares.
"""

from __future__ import annotations

import dataclasses
import difflib
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ..config import ConfigError, RuntimeConfig, TaskConfig, describe, load_runtime, to_dict
from ..paths import CONFIG_DIR

NODE_SECTIONS = ("pipeline", "sync", "ros", "diagnostics", "time_jump_s")
"""Keys of config/multitask.yaml the node reads; the rest (data_root, replay) is for `ivif replay`."""
TASKS_PARAM = "pipeline.tasks"
TASK_PREFIX = "tasks."
BUILTIN_PARAMS = ("use_sim_time", "start_type_description_service")
"""Parameters every rclpy node declares itself (``qos_overrides.*`` are rclpy's too)."""

CONFIG_FILE_PARAM = "config_file"
DEFAULT_CONFIG_FILE = CONFIG_DIR / "multitask.yaml"

# Parameter kinds (mapped to rclpy ParameterType in the node).
BOOL, INT, FLOAT, STRING, STRING_ARRAY = "bool", "int", "float", "str", "str_list"


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


def _kind(tp: Any) -> str:
    if tp is bool:
        return BOOL
    if tp is int:
        return INT
    if tp is float:
        return FLOAT
    if tp is str:
        return STRING
    if typing.get_origin(tp) is list or tp is list:
        return STRING_ARRAY
    raise ConfigError(f"config field type {tp} has no ROS parameter mapping")


def _spec(name: str, f: dataclasses.Field, tp: Any, value: Any, helptext: str) -> ParamSpec:
    kind = _kind(tp)
    value = to_dict(value)
    if kind == STRING_ARRAY:
        value = [str(v) for v in value]
    meta = f.metadata
    return ParamSpec(name, kind, value, helptext, meta.get("choices"), meta.get("min"), meta.get("max"))


def task_specs(name: str, task: TaskConfig | None = None) -> list[ParamSpec]:
    """``tasks.<name>.<field>`` for every TaskConfig field but ``name``; defaults from ``task``."""
    task = TaskConfig(name=name) if task is None else task
    hints = typing.get_type_hints(TaskConfig)
    return [_spec(f"{TASK_PREFIX}{name}.{f.name}", f, hints[f.name], getattr(task, f.name), f.metadata["help"])
            for f in dataclasses.fields(TaskConfig) if f.name != "name"]


def parameter_specs(cfg: RuntimeConfig | None = None, task_names: list[str] | None = None) -> list[ParamSpec]:
    """The node's parameters (without ``config_file``), defaults taken from ``cfg``.

    ``cfg`` defaults to the package's config/multitask.yaml; ``task_names`` (default: the tasks
    of ``cfg``) selects which ``tasks.<name>.*`` parameters exist.
    """
    if cfg is None:
        cfg = load_runtime()
    file_tasks = {t.name: t for t in cfg.pipeline.task_configs()}
    names = list(file_tasks) if task_names is None else list(task_names)
    specs = []
    for name, _tname, _default, helptext in describe(RuntimeConfig):
        if name.split(".")[0] not in NODE_SECTIONS:
            continue
        f, tp = _field(RuntimeConfig, name)
        if name == TASKS_PARAM:
            specs.append(ParamSpec(name, STRING_ARRAY, names, "Names of the tasks to run, in order; task <name> is "
                                   "set up by the tasks.<name>.* parameters."))
            continue
        specs.append(_spec(name, f, tp, _value(cfg, name), helptext))
    for n in names:
        specs += task_specs(n, file_tasks.get(n))
    return specs


def parameter_names(cfg: RuntimeConfig | None = None) -> list[str]:
    """Every parameter the node declares, ``config_file`` included (no ROS needed); default: schema tasks."""
    return [CONFIG_FILE_PARAM] + [s.name for s in parameter_specs(cfg or RuntimeConfig())]


def check_given(given: list[str], declared: list[str]) -> None:
    """ConfigError naming every given parameter the node does not declare (with did-you-mean hints)."""
    unknown = [n for n in given if n not in declared and n not in BUILTIN_PARAMS and not n.startswith("qos_overrides.")]
    if not unknown:
        return
    lines = []
    for n in unknown:
        close = difflib.get_close_matches(n, declared, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        if n.startswith(TASKS_PARAM + "."):
            hint = (" (pipeline.tasks is a list of task names, e.g. [det, seg]; set a task's fields as "
                    "tasks.<name>.<field>, e.g. tasks.det.kind)")
        elif n.startswith(TASK_PREFIX):
            hint = hint or f" (a task's parameters exist only for tasks listed in {TASKS_PARAM})"
        lines.append(f"'{n}'{hint}")
    raise ConfigError(f"unknown node parameter{'s' if len(lines) > 1 else ''}: {'; '.join(lines)} "
                      "(docs/ros.md lists every parameter)")


def config_from_parameters(config_file: str | Path, values: dict[str, Any]) -> RuntimeConfig:
    """RuntimeConfig from the file, with parameter ``values`` (dotted name -> value) applied on top.

    ``pipeline.tasks`` (names) and ``tasks.<name>.<field>`` become the task list; every value is
    checked by :func:`ivif_fusion.config.load` (types, choices, ranges), so a bad override fails
    with the config's own message.
    """
    file_cfg = load_runtime(config_file)
    names = [str(n) for n in values.get(TASKS_PARAM, [t.name for t in file_cfg.pipeline.task_configs()])]
    if len(set(names)) != len(names):
        raise ConfigError(f"{TASKS_PARAM}: task names must be unique, got {names}")
    declared = {s.name: s.kind for s in parameter_specs(file_cfg, names)}
    tasks: dict[str, dict[str, Any]] = {n: {"name": n} for n in names}
    file_tasks = {t.name: to_dict(t) for t in file_cfg.pipeline.task_configs()}
    for n in names:
        tasks[n].update({k: v for k, v in file_tasks.get(n, {}).items() if k != "name"})
    overrides: dict[str, Any] = {TASKS_PARAM: None}
    for name, value in values.items():
        if name not in declared:
            raise ConfigError(f"unknown node parameter '{name}'")
        if declared[name] == STRING_ARRAY:
            value = [str(v) for v in value]
        if name.startswith(TASK_PREFIX):
            task, field = name[len(TASK_PREFIX):].rsplit(".", 1)
            tasks[task][field] = value
        elif name != TASKS_PARAM:
            overrides[name] = value
    overrides[TASKS_PARAM] = [tasks[n] for n in names]
    return load_runtime(config_file, overrides)
