"""One configuration schema, loaded from ``config/*.yaml``.

Every parameter is a dataclass field with a default and a ``help`` text in its
metadata. The ROS node declares its parameters from these dataclasses, and the
CLI and replay build the same objects from the same YAML files, so a default is
written once. Unknown keys are rejected with a did-you-mean hint; values are
type-checked on load.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml
from .errors import UserError
from .paths import DEFAULT_BACKBONE

T = TypeVar("T")


class ConfigError(UserError, ValueError):
    """A configuration file or value is invalid."""


def param(default: Any = dataclasses.MISSING, help: str = "", *, factory: Any = None, choices: tuple | None = None,
          min: float | None = None, max: float | None = None) -> Any:  # noqa: A002 - 'help'/'min'/'max' read well here
    """A dataclass field carrying its description (and optional range/choices)."""
    meta = {"help": help, "choices": choices, "min": min, "max": max}
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


# --------------------------------------------------------------------------- sections


@dataclass
class TaskConfig:
    """One downstream task: how its fused image is made and which network consumes it."""

    name: str = param("detection", "Task name; used in topic names (~/fused/<name>) and reports.")
    kind: str = param("detection", "Task network type.", choices=("detection", "segmentation", "fusion"))
    customization: str = param(
        "generic", "How this task's fused image is made: generic backbone output, a VIFA head, or RSC.",
        choices=("generic", "vifa", "rsc"))
    weights: str = param("", "Task network weights (a .pt from `ivif train task`); empty = no task network.")
    classes: list = param(help="Class names of the task network, index = class id.", factory=list)
    score_threshold: float = param(0.25, "Detections below this score are discarded.", min=0.0, max=1.0)
    iou_threshold: float = param(0.45, "NMS IoU threshold for detection.", min=0.0, max=1.0)
    image_size: int = param(0, "Task network input size (long side, multiple of 32); 0 = the size it was trained at.",
                            min=0)


@dataclass
class PipelineConfig:
    """What runs on each synchronized pair."""

    backbone_weights: str = param(DEFAULT_BACKBONE, "Fusion backbone checkpoint (relative to the package share dir).")
    vifa_weights: str = param("", "VIFA checkpoint with one head per task (needed by tasks with customization: vifa).")
    rsc_weights: str = param("", "RSC checkpoint (needed by tasks with customization: rsc).")
    tasks: list = param(help="Tasks to run, each a TaskConfig mapping.",
                        factory=lambda: [TaskConfig(name="fusion", kind="fusion")])
    backends: list = param(help="Backend preference order; the first available one is used (logged fallback).",
                           factory=lambda: ["torch"])
    device: str = param("cpu", "Torch device for the torch backend ('cpu', 'cuda', 'cuda:1').")
    threads: int = param(2, "CPU threads for torch / ONNX Runtime.", min=1)
    onnx_dir: str = param("models/onnx", "Folder of exported ONNX graphs (ivif export onnx).")
    engine_cache_dir: str = param("~/.cache/ivif_fusion/engines", "TensorRT engine cache folder.")
    max_side: int = param(0, "Downscale inputs so the long side is at most this (0 = keep size).", min=0)
    resize_mismatched: bool = param(False, "Resize the RGB frame to the thermal size when they differ "
                                           "(otherwise the pair is dropped as size_mismatch).")

    def task_configs(self) -> list[TaskConfig]:
        return [t if isinstance(t, TaskConfig) else from_dict(TaskConfig, t, "pipeline.tasks") for t in self.tasks]


@dataclass
class SyncConfig:
    """Pairing of thermal and RGB frames by timestamp (shared by node and replay)."""

    policy: str = param("optimal", "Pairing rules: 'optimal' = C++ message_filters ApproximateTime/ExactTime "
                        "(smallest-span set, proven best); 'rclpy' = Python ApproximateTimeSynchronizer/"
                        "TimeSynchronizer (first set within slop, emitted at once).", choices=("optimal", "rclpy"))
    mode: str = param("approximate", "Approximate stamps (within slop) or exact stamps only.",
                      choices=("approximate", "exact"))
    queue_size: int = param(10, "Frames kept per stream while waiting for a partner (optimal exact: pending stamps).",
                            min=1)
    slop_s: float = param(0.05, "Largest stamp difference (seconds) inside a pair (approximate mode); "
                                "optimal: span <= slop, rclpy: span < slop.", min=0.0)
    age_penalty: float = param(0.1, "Optimal approximate: weight 1 + age_penalty on how much later a candidate "
                                    "pair ends (C++ default 0.1).", min=0.0)
    slop_inclusive: bool = param(True, "Optimal approximate: a pair may span exactly slop_s (C++ "
                                       "setMaxIntervalDuration); false: strictly less.")
    reject_late: bool = param(False, "Robot-friendly opt-in: drop a frame whose stamp repeats or is older than its "
                                     "stream's last accepted one (duplicate / out_of_order) instead of queueing it "
                                     "as message_filters does.")
    reference: str = param("thermal", "Whose header the outputs copy.", choices=("thermal", "visible"))


@dataclass
class QosConfig:
    """QoS of the node's outputs (and, with topic and transport, of each input); docs/ros.md has the reasons."""

    reliability: str = param("reliable", "Reliability.", choices=("best_effort", "reliable"))
    depth: int = param(5, "Keep-last history depth (samples held while callbacks are busy).", min=1)
    durability: str = param("volatile", "Durability.", choices=("volatile", "transient_local"))


@dataclass
class InputConfig(QosConfig):
    """One camera input: base topic, image transport, subscription QoS, expected rate."""

    topic: str = param("image_raw", "Base topic (relative, remappable).")
    transport: str = param("raw", "raw: Image on the topic; compressed: CompressedImage on <topic>/compressed.",
                           choices=("raw", "compressed"))
    rate_hz: float = param(0.0, "Expected frame rate, checked in diagnostics (0 = not checked).", min=0.0)


@dataclass
class RosConfig:
    """Topics, transports, QoS and outputs of the ROS 2 node."""

    thermal: InputConfig = param(help="Thermal input (REP 2003 consumer QoS).",
                                 factory=lambda: InputConfig("best_effort", 10, topic="thermal/image_raw"))
    visible: InputConfig = param(help="RGB input (REP 2003 consumer QoS).",
                                 factory=lambda: InputConfig("best_effort", 10, topic="rgb/image_raw"))
    output_qos: QosConfig = param(help="QoS of every output topic (REP 2003 producer).", factory=QosConfig)
    publish_camera_info: bool = param(True, "Publish ~/fused/<task>/camera_info with every fused image.")
    publish_fused: bool = param(True, "Publish ~/fused/<task> colour images.")
    publish_detections: bool = param(True, "Publish ~/detections/<task> vision_msgs/Detection2DArray.")
    publish_masks: bool = param(True, "Publish ~/mask/<task> mono8 class-id images.")
    fused_encoding: str = param("rgb8", "Encoding of published fused images.", choices=("rgb8", "bgr8"))
    diagnostics_period_s: float = param(1.0, "Period of the diagnostics message (seconds).", min=0.05)


@dataclass
class DiagnosticsConfig:
    """Input stream health in the manner of diagnostic_updater, over the last 5 reports (docs/ros.md)."""

    rate_tolerance: float = param(0.1, "Accepted relative deviation from rate_hz (WARN outside).", min=0.0, max=1.0)
    max_stamp_age_s: float = param(5.0, "ERROR when a stamp is older than this on arrival (0 = off).", min=0.0)
    max_stamp_lead_s: float = param(1.0, "ERROR when a stamp is ahead of the clock by this (0 = off).", min=0.0)
    drop_warn_ratio: float = param(0.5, "WARN at this dropped fraction of a stream (ERROR: all dropped).", min=0.0, max=1.0)
    latency_warn_ms: float = param(0.0, "WARN above this mean node latency in the window (0 = off).", min=0.0)


@dataclass
class ReplayConfig:
    """Offline rosbag replay."""

    thermal_topic: str = param("/thermal/image", "Thermal topic inside the bag.")
    visible_topic: str = param("/rgb/image", "RGB topic inside the bag.")
    output_prefix: str = param("/ivif", "Prefix of the output bag's topics (<prefix>/fused/<task> ...).")
    storage: str = param("sqlite3", "Output bag storage format.", choices=("sqlite3", "mcap"))
    sample_frames: int = param(4, "Sample frames shown in the report grid.", min=0)
    metrics_pairs: int = param(20, "Fusion metrics are computed on at most this many fused pairs, spread over "
                                   "the bag (0 = none; they cost about 1.5 s per pair and task at 640x480).", min=0)


@dataclass
class RuntimeConfig:
    """The file `config/multitask.yaml`: drives the node, `ivif replay` and `ivif fuse`."""

    data_root: str = param("", "Data root with <dataset>/ir, <dataset>/vi (empty: $IVIF_DATA or ../shared/data/ivif).")
    pipeline: PipelineConfig = param(help="Per-pair processing.", factory=PipelineConfig)
    sync: SyncConfig = param(help="Thermal/RGB pairing.", factory=SyncConfig)
    ros: RosConfig = param(help="ROS 2 node topics and QoS.", factory=RosConfig)
    diagnostics: DiagnosticsConfig = param(help="ROS 2 node stream health checks.", factory=DiagnosticsConfig)
    time_jump_s: float = param(1.0, "A stamp this much older than its stream's newest is a time jump: pairing "
                                    "resets (node and replay; 0 = off, such frames are out_of_order).", min=0.0)
    replay: ReplayConfig = param(help="Bag replay.", factory=ReplayConfig)


def _type_ok(value: Any, tp: Any) -> bool:
    if tp is Any:
        return True
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return any(_type_ok(value, a) for a in typing.get_args(tp))
    if tp is type(None):
        return value is None
    if origin is not None:
        tp = origin
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(tp, type):
        return isinstance(value, tp)
    return True


def from_dict(cls: type[T], data: dict | None, where: str = "") -> T:
    """Build dataclass ``cls`` from a mapping, checking keys, types, choices and ranges."""
    data = {} if data is None else data
    if not isinstance(data, dict):
        raise ConfigError(f"{where or cls.__name__}: expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        path = f"{where}.{key}" if where else key
        if key not in fields:
            close = difflib.get_close_matches(key, fields, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise ConfigError(f"unknown config key '{path}'{hint}; valid keys: {', '.join(fields)}")
        tp = hints[key]
        if dataclasses.is_dataclass(tp):  # start from the field's own default: a factory may differ from tp()
            base = to_dict(getattr(cls(), key)) if isinstance(value, dict) else {}
            value = from_dict(tp, {**base, **value} if isinstance(value, dict) else value, path)
        else:
            if isinstance(value, int) and not isinstance(value, bool) and tp is float:
                value = float(value)
            if not _type_ok(value, tp):
                raise ConfigError(f"config key '{path}': expected {getattr(tp, '__name__', tp)}, "
                                  f"got {type(value).__name__} ({value!r})")
            meta = fields[key].metadata
            if meta.get("choices") and value not in meta["choices"]:
                raise ConfigError(f"config key '{path}': {value!r} is not one of {list(meta['choices'])}")
            if meta.get("min") is not None and value < meta["min"]:
                raise ConfigError(f"config key '{path}': {value} is below the minimum {meta['min']}")
            if meta.get("max") is not None and value > meta["max"]:
                raise ConfigError(f"config key '{path}': {value} is above the maximum {meta['max']}")
        kwargs[key] = value
    obj = cls(**kwargs)
    if cls is PipelineConfig:
        obj.tasks = obj.task_configs()  # type: ignore[attr-defined]
    return obj


def to_dict(obj: Any) -> Any:
    """Plain-data form of a config (for checkpoints, reports, ONNX metadata)."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    return obj


def load(cls: type[T], path: str | Path | None = None, overrides: dict | None = None) -> T:
    """Load ``cls`` from a YAML file (or defaults when ``path`` is None), then apply dotted overrides."""
    data: dict = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"config file {p} not found")
        try:
            data = yaml.safe_load(p.read_text()) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"config file {p} is not valid YAML: {e}") from e
    for dotted, value in (overrides or {}).items():
        node = data
        *parents, leaf = dotted.split(".")
        for k in parents:
            node = node.setdefault(k, {})
        node[leaf] = value
    return from_dict(cls, data, "")


def describe(cls: type, inst: Any = None) -> list[tuple[str, str, Any, str]]:
    """Flattened (dotted name, type, default, help) rows: for docs and the node's declarations."""
    rows = []
    hints = typing.get_type_hints(cls)
    inst = cls() if inst is None else inst
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            rows += [(f"{f.name}.{n}", t, d, h) for n, t, d, h in describe(tp, getattr(inst, f.name))]
        else:
            rows.append((f.name, getattr(tp, "__name__", str(tp)), to_dict(getattr(inst, f.name)), f.metadata.get("help", "")))
    return rows


def runtime_defaults(overrides: dict | None = None) -> RuntimeConfig:
    """Schema defaults (one generic fusion task, shipped backbone) plus overrides; ignores config files.

    Tests and tools that need a minimal pipeline use this, so they do not depend on what the shipped
    `config/multitask.yaml` enables.
    """
    return load(RuntimeConfig, None, overrides)


def load_runtime(path: str | Path | None = None, overrides: dict | None = None) -> RuntimeConfig:
    """Load `config/multitask.yaml` (or the given file)."""
    from .paths import CONFIG_DIR

    return load(RuntimeConfig, path if path is not None else CONFIG_DIR / "multitask.yaml", overrides)


def dump_yaml(obj: Any, indent: int = 0) -> str:
    """Commented YAML of a config object: every key with its description above it."""
    lines: list[str] = []
    pad = "  " * indent
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        meta = f.metadata
        helptext = meta.get("help", "")
        extra = []
        if meta.get("choices"):
            extra.append("one of: " + ", ".join(map(str, meta["choices"])))
        if meta.get("min") is not None:
            extra.append(f"min {meta['min']}")
        if meta.get("max") is not None:
            extra.append(f"max {meta['max']}")
        if helptext:
            lines.append(f"{pad}# {helptext}" + (f" ({'; '.join(extra)})" if extra else ""))
        if dataclasses.is_dataclass(value):
            lines.append(f"{pad}{f.name}:")
            lines.append(dump_yaml(value, indent + 1))
        elif isinstance(value, list) and value and dataclasses.is_dataclass(value[0]):
            lines.append(f"{pad}{f.name}:")
            for item in value:
                body = yaml.safe_dump(to_dict(item), sort_keys=False, default_flow_style=None).rstrip().splitlines()
                lines.append(f"{pad}  - " + body[0])
                lines += [f"{pad}    " + b for b in body[1:]]
        else:
            dumped = yaml.safe_dump({f.name: to_dict(value)}, sort_keys=False, default_flow_style=True).strip()
            lines.append(pad + dumped[1:-1] if dumped.startswith("{") else pad + dumped)
    return "\n".join(lines)
