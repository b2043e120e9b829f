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


@dataclass
class TrainRunConfig:
    """What every `ivif train` job has: data, seed, threads, device, output folder.

    Each job's config inherits these fields (YAML keys stay flat: ``seed: 0``, not ``run: {seed: 0}``);
    :mod:`ivif_fusion.training.run` uses them to set up the run.
    """

    data_root: str = param("", "Data root (empty: $IVIF_DATA or ../shared/data/ivif).")
    seed: int = param(0, "Seed of initialisation, sampling (crops, flips, batches) and augmentation.")
    threads: int = param(2, "Torch CPU threads.", min=1)
    device: str = param("cpu", "Torch device ('cpu', 'cuda', 'cuda:1'; task training also takes ultralytics' '0').")
    out: str = param("runs/train", "Output folder: checkpoint, log.csv, config.yaml.")


@dataclass
class TrainFusionConfig(TrainRunConfig):
    """`ivif train fusion`: stage-1 unsupervised training of the VFN backbone."""

    datasets: list = param(help="Paired folders under the data root used for training (MSRS: train range only).",
                           factory=lambda: ["MSRS", "TNO", "RoadScene", "VIFB"])
    arch: str = param("vfn2", "Backbone architecture (docs/backbone_v2.md): vfn (full-resolution dense blocks) or vfn2 "
                             "(reduced-resolution context path + full-resolution detail path).", choices=("vfn", "vfn2"))
    depth: int = param(0, "vfn: dilated dense blocks per encoder and in the decoder; vfn2: residual blocks of the "
                          "context path; 0 = the architecture's default (vfn 2, vfn2 8).", min=0)
    crop: int = param(128, "Random crop size (pixels) of training samples.", min=16)
    batch_size: int = param(8, "Crops per optimisation step (global batch across processes).", min=1)
    samples_per_image: int = param(4, "Crops drawn per image per epoch.", min=1)
    epochs: int = param(10, "Passes over the training images.", min=1)
    lr: float = param(1e-3, "Adam learning rate (cosine decay to 5 % over the run).", min=0.0)
    w_int: float = param(0.2, "Weight of the intensity term L1(F, max(IR, Y)).", min=0.0)
    w_grad: float = param(1.0, "Weight of the gradient term L1(|grad F|, max(|grad IR|, |grad Y|)).", min=0.0)
    w_salient: float = param(0.0, "Weight of the salient-target term: L1(F, IR) on pixels hotter than the image's "
                                  "mean + salient_k std (soft mask; 0 = off).", min=0.0)
    salient_k: float = param(1.0, "Thermal saliency threshold in standard deviations above the image mean.")
    w_scd: float = param(0.0, "Weight of the complementarity term 2 - SCD(F): what F adds to each source should "
                              "correlate with the other source (0 = off).", min=0.0)
    init: str = param("", "Start from these backbone weights (a vfn.pt checkpoint of the same arch and size; "
                          "empty: random initialisation). The LR schedule starts afresh: fine-tuning.")
    max_side: int = param(640, "Images with a longer side are downscaled to this before cropping (0 = keep).", min=0)
    out: str = param("runs/fusion", "Output folder: checkpoints (best/last), CSV log, config copy.")
    resume: str = param("", "Resume from this training-state file (runs/.../last_state.pt).")


@dataclass
class TrainTaskConfig(TrainRunConfig):
    """`ivif train task`: a task network trained on fused images (MSRS: train range; val range selects)."""

    task: str = param("detection", "Task network to train.", choices=("detection", "segmentation"))
    datasets: list = param(help="Labelled paired folders used (MSRS: train range, val range for selection; "
                                "LLVIP: person boxes mapped to class 0, training only).", factory=lambda: ["MSRS"])
    label_set: str = param("fusion", "MSRS box set (labels_det/<set>).", choices=("fusion", "infrared", "visible"))
    fusion: str = param("vfn", "Images the network is trained on: VFN-fused, pixel-max of IR and visible Y "
                               "(with visible colour), visible only or IR only.", choices=("vfn", "max", "visible", "ir"))
    fusion_weights: str = param(DEFAULT_BACKBONE, "Backbone checkpoint (any arch) used when fusion is 'vfn' "
                                                   "(the learned backbone).")
    arch: str = param("yolov8n.yaml", "Ultralytics model yaml (built from scratch, never a .pt download).")
    imgsz: int = param(320, "Training/inference size (long side, multiple of 32).", min=32)
    epochs: int = param(30, "Training epochs (segmentation: one crop of every training pair per epoch).", min=1)
    batch_size: int = param(8, "Images (segmentation: crops) per step.", min=1)
    nbs: int = param(8, "Ultralytics nominal batch: gradients are accumulated to it (= batch_size: one "
                        "optimizer step per batch, which short runs need).", min=1)
    warmup_epochs: float = param(1.0, "Learning-rate warmup epochs (ultralytics uses at least 100 iterations).",
                                 min=0.0)
    optimizer: str = param("auto", "Ultralytics optimizer name ('auto', 'SGD', 'AdamW', ...).")
    lr0: float = param(0.01, "Initial learning rate (ignored by optimizer 'auto').", min=0.0)
    mosaic: float = param(1.0, "Mosaic augmentation probability.", min=0.0, max=1.0)
    close_mosaic: int = param(5, "Last epochs without mosaic.", min=0)
    score_threshold: float = param(0.25, "Score threshold stored in the checkpoint for predict().", min=0.0, max=1.0)
    iou_threshold: float = param(0.45, "NMS IoU threshold stored in the checkpoint.", min=0.0, max=1.0)
    holdout_fold: str = param("", "Cross-fitting: 'k/n' leaves fold k of n (data.splits.cross_fit_fold) out of "
                                  "the training pairs, so that an RSC can learn from this network's loss on "
                                  "images it never saw (empty: train on all).")
    masks_dir: str = param("", "Segmentation: folder of class-id masks named like the MSRS pairs (<name>.png; 0 "
                               "background, 1 car, 2 person, 3 bike, 255 ignore), e.g. written by `ivif data masks "
                               "--out DIR` (box-supervised pseudo-masks, docs/pseudo_masks.md). Required for "
                               "task 'segmentation'.")
    seg_width: int = param(16, "Segmentation: U-Net base width (channels of the full-resolution stage).", min=4)
    seg_crop: int = param(256, "Segmentation: square training crop side (pixels, multiple of 8).", min=32)
    seg_object_crops: float = param(0.5, "Segmentation: fraction of training crops centred on a random object pixel "
                                         "(car/person/bike); the rest are uniform random crops.", min=0.0, max=1.0)
    seg_class_weights: str = param("sqrt_inverse", "Segmentation: cross-entropy class weights from the training "
                                                   "masks' pixel frequencies f_c: none, 1/sqrt(f_c) or 1/f_c, scaled so "
                                                   "the frequency-weighted mean weight is 1.",
                                   choices=("none", "sqrt_inverse", "inverse"))
    seg_lr: float = param(2e-3, "Segmentation: AdamW learning rate (cosine decay to 5 %, 5 % warm-up).", min=0.0)
    resume: str = param("", "Segmentation: resume from this training-state file (<out>/last_state.pt).")
    cache_dir: str = param("runs/task_data", "Where fused training images and the ultralytics data yaml are cached.")
    out: str = param("runs/task_detection", "Output folder: ultralytics run and the converted checkpoint "
                                            "(segmentation: unet_seg.pt, log.csv).")


@dataclass
class TrainRSCConfig(TrainRunConfig):
    """`ivif train rsc`: RSC task customization against frozen backbone and task networks."""

    dataset: str = param("MSRS", "Labelled paired folder (MSRS: train frame range only).")
    label_set: str = param("fusion", "MSRS box set (labels_det/<set>).", choices=("fusion", "infrared", "visible"))
    backbone: str = param(DEFAULT_BACKBONE, "Frozen backbone checkpoint (vfn or vfn2: the RSC variant follows its arch).")
    tasks: list = param(help="Tasks to customize for: mappings {name, weights} (task network checkpoints), "
                             "optionally cross_fit: [one network per fold, trained with holdout_fold k/n]; then "
                             "the loss on fold-k pairs comes from network k (docs/rsc.md, cross-fitting).",
                        factory=lambda: [{"name": "detection", "weights": "models/yolo_det_msrs.pt"}])
    descriptor: str = param("features", "Task descriptor: pooled task-network features of the generic fused image, "
                                        "or learned per-task embeddings only.", choices=("features", "embedding"))
    crop: int = param(256, "Training crop size at full resolution (multiple of 32).", min=32)
    batch_size: int = param(4, "Crops per step.", min=1)
    steps: int = param(200, "Optimisation steps.", min=1)
    max_minutes: float = param(0.0, "Stop and save after this many minutes even if steps remain (0 = no limit).",
                               min=0.0)
    lr: float = param(2e-3, "Adam learning rate (cosine decay to 5 %).", min=0.0)
    alpha: float = param(5.0, "Weight of the reward/punishment term alpha * ReLU(L_t - L_ref).", min=0.0)
    reference: str = param("generic", "L_ref: task loss of the generic fused image on the same batch, or the "
                                      "previous step's task loss.", choices=("generic", "previous"))
    w_fid: float = param(1.0, "Weight of the fusion-fidelity term (the stage-1 fusion loss).", min=0.0)
    w_guard: float = param(0.0, "Weight of the fidelity guard: w_guard * sum over guard_metrics of ReLU(relative "
                                "drop of the batch mean vs the generic images - guard_budget) (0 = off).", min=0.0)
    guard_metrics: list = param(help="Fusion metrics the guard holds (VIF, Qabf).", factory=lambda: ["VIF", "Qabf"])
    guard_budget: float = param(0.03, "Relative drop of each guarded metric allowed for free (0.03 = 3 %).",
                                min=0.0, max=1.0)
    cagrad_c: float = param(0.5, "CAGrad c (0 = average of the task gradients).", min=0.0)
    cagrad_rescale: bool = param(True, "Divide the CAGrad update by 1 + c^2 (reference implementation default).")
    num_bases: int = param(16, "Size of the shared basis bank.", min=1)
    hidden: int = param(32, "Width of the interaction blocks.", min=4)
    top_k: int = param(0, "0: soft basis selection; k > 0: hard top-k with straight-through gradients.", min=0)
    gumbel: bool = param(True, "Gumbel noise on basis selection during training (never at inference).")
    descriptor_dropout: float = param(0.25, "Probability of training a batch on the stored mean descriptor "
                                            "(what inference uses when no task descriptor is given).",
                                      min=0.0, max=1.0)
    min_visible: float = param(0.4, "A cropped box is kept when at least this fraction of its area is inside.",
                               min=0.0, max=1.0)
    out: str = param("runs/rsc", "Output folder: rsc.pt (kind 'rsc'), log.csv, config.yaml.")


@dataclass
class TrainVifaConfig(TrainRunConfig):
    """`ivif train vifa`: shared backbone + one-layer head per task, two distillations (docs/vifa.md)."""

    datasets: list = param(help="Paired folders used for training and key-channel selection (MSRS: train range "
                                "only).", factory=lambda: ["MSRS"])
    max_side: int = param(640, "Images with a longer side are downscaled to this before cropping (0 = keep).", min=0)
    teacher: str = param(DEFAULT_BACKBONE, "Teacher backbone checkpoint: the student backbone starts from it and "
                                               "its key channels are distilled.")
    tasks: list = param(help="One head per task: mappings {name, reference, weights, rsc_task, fallback, w_int, "
                             "w_grad}; reference is a registered kind (teacher, vfn, rsc, finetune), see docs/vifa.md.",
                        factory=lambda: [{"name": "detection", "reference": "rsc", "weights": "models/rsc_det_msrs.pt",
                                          "fallback": "finetune", "w_int": 0.6, "w_grad": 1.0},
                                         {"name": "segmentation", "reference": "finetune", "w_int": 0.1,
                                          "w_grad": 1.5},
                                         {"name": "fusion", "reference": "teacher"}])
    finetune_steps: int = param(60, "Steps of the 'finetune' reference: a copy of the teacher fine-tuned with the "
                                     "task's fusion-loss weights (w_int, w_grad).", min=0)
    layer: str = param("fusion", "Teacher/student layer whose key channels are distilled.",
                       choices=("encoder", "fusion", "decoder", "shared"))
    select_images: int = param(128, "Images used for key-channel selection (fewer if the data has fewer).", min=1)
    select_side: int = param(128, "Selection images are resized so the long side is this (FSIM cost).", min=16)
    threshold: float = param(0.9, "Channels whose mean FSIM reaches this are clustered together.", min=0.0, max=1.0)
    linkage: str = param("complete", "Clustering rule: complete (all pairs similar) or single (connected "
                                     "components).", choices=("complete", "single"))
    normalise: str = param("minmax", "Channel normalisation before FSIM: min-max to 0..255, or none.",
                           choices=("minmax", "none"))
    bins: int = param(256, "Histogram bins of the channel entropy that picks each cluster's key channel.", min=2)
    weighting: str = param("cluster_size", "Key-channel loss weights: cluster size / C, uniform, or entropy share.",
                           choices=("cluster_size", "uniform", "entropy"))
    cache_dir: str = param("runs/key_channels", "Cache of key-channel selections (JSON + markdown report).")
    crop: int = param(128, "Random crop size of training samples.", min=16)
    batch_size: int = param(8, "Crops per step.", min=1)
    steps: int = param(150, "Optimisation steps of the joint training.", min=1)
    lr: float = param(5e-4, "Adam learning rate (cosine decay to 5 %).", min=0.0)
    w_key: float = param(1.0, "Weight of the key-channel L2 (teacher vs student key channels).", min=0.0)
    w_ref: float = param(1.0, "Weight of each head's reference L2.", min=0.0)
    w_fusion: float = param(0.0, "Weight of the stage-1 fusion loss on each head output (0 = off).", min=0.0)
    train_backbone: bool = param(True, "Train the shared backbone too (False: heads only).")
    out: str = param("runs/vifa", "Output folder: vifa.pt (kind 'vifa'), log.csv, config.yaml, key-channel report.")


# --------------------------------------------------------------------------- loading


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
