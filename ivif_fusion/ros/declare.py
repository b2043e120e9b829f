"""Declare the node's parameters with rclpy and turn them into a RuntimeConfig.

The node is created with ``automatically_declare_parameters_from_overrides`` so that every
parameter the user gave (``-p``, params file, launch file) is visible through rclpy's public
API. :func:`declare_node_parameters` reads those, re-declares each known one with its
descriptor (type, range, description, read-only) and raises a ConfigError naming any that the
node does not know (``sync.slopp_s`` -> did you mean ``sync.slop_s``), instead of ignoring it.
"""

from __future__ import annotations

from typing import Any

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, ParameterType
from rclpy.node import Node
from rclpy.parameter import Parameter

from ..config import ConfigError, RuntimeConfig, load_runtime
from . import params as P

_TYPES = {P.BOOL: ParameterType.PARAMETER_BOOL, P.INT: ParameterType.PARAMETER_INTEGER,
          P.FLOAT: ParameterType.PARAMETER_DOUBLE, P.STRING: ParameterType.PARAMETER_STRING,
          P.STRING_ARRAY: ParameterType.PARAMETER_STRING_ARRAY}
_RCLPY_TYPES = {P.BOOL: Parameter.Type.BOOL, P.INT: Parameter.Type.INTEGER, P.FLOAT: Parameter.Type.DOUBLE,
                P.STRING: Parameter.Type.STRING, P.STRING_ARRAY: Parameter.Type.STRING_ARRAY}
_TYPES_TEXT = {P.BOOL: "a bool (true/false)", P.INT: "an integer", P.FLOAT: "a number", P.STRING: "a string",
               P.STRING_ARRAY: "a list of strings, e.g. [a, b]"}
CONFIG_FILE_DESCRIPTION = ("YAML file (config/multitask.yaml layout) whose values are the defaults of all other "
                           "parameters; parameter overrides win.")


def descriptor(spec: P.ParamSpec) -> ParameterDescriptor:
    """Read-only descriptor with type, description, choices text and numeric range of ``spec``."""
    d = ParameterDescriptor(name=spec.name, type=_TYPES[spec.kind], description=spec.description,
                            additional_constraints=spec.constraints, read_only=True)
    if spec.kind == P.INT and (spec.min is not None or spec.max is not None):
        d.integer_range = [IntegerRange(from_value=int(spec.min if spec.min is not None else -2**63),
                                        to_value=int(spec.max if spec.max is not None else 2**63 - 1), step=0)]
    elif spec.kind == P.FLOAT and (spec.min is not None or spec.max is not None):
        d.floating_point_range = [FloatingPointRange(from_value=float(spec.min if spec.min is not None else -1e300),
                                                     to_value=float(spec.max if spec.max is not None else 1e300),
                                                     step=0.0)]
    return d


def _given(node: Node) -> dict[str, Any]:
    """Parameters auto-declared from the overrides (name -> value), without rclpy's own."""
    names = [n for n in node.list_parameters([], 0).names if n not in P.BUILTIN_PARAMS]
    return {n: node.get_parameter(n).value for n in names}


def declare_node_parameters(node: Node) -> RuntimeConfig:
    """Declare every node parameter on ``node`` and return the resulting config.

    Raises ConfigError for an unknown parameter, a wrong type or a bad value (one clear line).
    """
    given = _given(node)
    for name in given:
        node.undeclare_parameter(name)
    config_file = str(given.get(P.CONFIG_FILE_PARAM, P.DEFAULT_CONFIG_FILE))
    node.declare_parameter(P.CONFIG_FILE_PARAM, config_file, ParameterDescriptor(
        name=P.CONFIG_FILE_PARAM, type=ParameterType.PARAMETER_STRING, read_only=True,
        description=CONFIG_FILE_DESCRIPTION))
    file_cfg = load_runtime(config_file)
    task_names = given.get(P.TASKS_PARAM)
    if task_names is not None and not (isinstance(task_names, list) and all(isinstance(t, str) for t in task_names)):
        raise ConfigError(f"parameter '{P.TASKS_PARAM}' must be a list of task names, e.g. [det, seg], "
                          f"got {task_names!r}")
    specs = P.parameter_specs(file_cfg, task_names)
    P.check_given([n for n in given if n != P.CONFIG_FILE_PARAM], [s.name for s in specs])
    values = {}
    for spec in specs:
        if spec.name in given:
            values[spec.name] = _typed(spec, given[spec.name])
        # An empty list has no ROS type of its own: declare the type, the value stays the file's.
        default = spec.default if spec.default != [] else _RCLPY_TYPES[spec.kind]
        value = node.declare_parameter(spec.name, values.get(spec.name, default), descriptor(spec),
                                       ignore_override=True).value
        if spec.name not in values and value is not None:
            values[spec.name] = value
    return P.config_from_parameters(config_file, values)


def _typed(spec: P.ParamSpec, value: Any) -> Any:
    """``value`` checked against the parameter's type (ints are accepted for doubles)."""
    ok = {P.BOOL: lambda v: isinstance(v, bool), P.INT: lambda v: isinstance(v, int) and not isinstance(v, bool),
          P.FLOAT: lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
          P.STRING: lambda v: isinstance(v, str),
          P.STRING_ARRAY: lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v)}[spec.kind]
    if spec.kind == P.STRING_ARRAY and value == []:
        return []
    if not ok(value):
        raise ConfigError(f"parameter '{spec.name}' must be {_TYPES_TEXT[spec.kind]}, got {value!r}")
    return float(value) if spec.kind == P.FLOAT else value
