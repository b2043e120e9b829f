"""The per-pair pipeline: preprocess once, backbone once, a head (or RSC) per task, task networks.

``Pipeline.from_config(cfg).run(pair) -> Result``. The ROS node, ``ivif replay`` and
``ivif fuse`` all call this; they differ only in where pairs come from and where results go.

Stages timed per pair (``Result.timings_ms``): ``preprocess`` (size checks, optional
downscale, BT.601 luminance), ``backbone``, ``head:<name>`` per head, ``rsc:<task>`` per
RSC-customized task, ``postprocess`` (colour recombination, uint8), ``task:<task>`` per task
network, and ``total``. Outputs are at the processed size (the input size unless
``pipeline.max_side`` downscales); detections and masks are in those pixel coordinates.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..colour import rgb_to_ycbcr, ycbcr_to_rgb
from ..config import PipelineConfig, RuntimeConfig, TaskConfig
from ..errors import UserError
from ..imageops import fit_max_side, to_uint8
from ..models import checkpoint
from ..models.heads import GENERIC, MultiHeadFusion
from ..models.rsc import load_customized
from ..models.vifa import load_vifa
from ..paths import resolve
from ..types import Pair, Result, TaskOutput
from . import backends

log = logging.getLogger("ivif_fusion.pipeline")


class PairSizeMismatch(UserError):
    """Thermal and RGB frames of a pair differ in size and resizing is disabled."""


class PipelineConfigError(UserError):
    """The configured tasks, heads and weights do not fit together."""


@dataclass
class _TaskPlan:
    cfg: TaskConfig
    head: str | None          # head of the shared graph producing this task's fused Y
    rsc: bool = False         # fused Y produced by the RSC-customized backbone instead
    network: object = None    # task adapter (detection / segmentation) or None


@dataclass
class FusionGraph:
    """The deployment graph a pipeline config asks for, how tasks map to its heads, and its weights file."""

    graph: MultiHeadFusion
    task_head: dict[str, str]  # task -> head name, for every task not customized by RSC
    weights_file: Path         # the checkpoint the backbone (and VIFA heads) came from


def build_fusion_graph(pc: PipelineConfig) -> FusionGraph:
    """Backbone + heads for the configured tasks: what the pipeline runs and ``ivif export onnx`` exports.

    VIFA tasks read the backbone and their own heads from ``pc.vifa_weights``; otherwise the
    backbone comes from ``pc.backbone_weights``. Generic tasks share the backbone's own head.
    """
    tasks = pc.task_configs()
    vifa_tasks = [t.name for t in tasks if t.customization == "vifa"]
    heads: dict = {}
    if vifa_tasks:
        if not pc.vifa_weights:
            raise PipelineConfigError(f"tasks {vifa_tasks} use customization 'vifa' but pipeline.vifa_weights is empty")
        weights_file = resolve(pc.vifa_weights)
        backbone, all_heads = load_vifa(weights_file)
        missing = [t for t in vifa_tasks if t not in all_heads]
        if missing:
            raise PipelineConfigError(f"VIFA checkpoint {pc.vifa_weights} has no head for task(s) {missing}; "
                                      f"it has {sorted(all_heads)}")
        heads = {t: all_heads[t] for t in vifa_tasks}
    else:
        weights_file = resolve(pc.backbone_weights)
        backbone = checkpoint.load_backbone(weights_file)  # any architecture: the checkpoint names it
    task_head = {}
    for t in tasks:
        if t.customization == "vifa":
            task_head[t.name] = t.name
        elif t.customization == "generic":
            task_head[t.name] = GENERIC
    names = list(dict.fromkeys(task_head.values())) or [GENERIC]
    return FusionGraph(MultiHeadFusion(backbone, heads, head_names=names), task_head, weights_file)


def _load_task_network(t: TaskConfig, device: str):  # noqa: ANN202
    """Task adapter from its checkpoint, with the config's thresholds (and input size when set)."""
    from ..tasks import load_task

    net = load_task(resolve(t.weights), device)
    expected = {"detection": "task-detection", "segmentation": "task-segmentation"}[t.kind]
    if net.KIND != expected:
        raise PipelineConfigError(f"task '{t.name}' is a {t.kind} task but {t.weights} holds a '{net.KIND}' network")
    if t.kind == "detection":
        net.cfg.score_threshold, net.cfg.iou_threshold = t.score_threshold, t.iou_threshold
        if t.image_size:
            net.cfg.imgsz = t.image_size
    if t.classes and list(t.classes) != list(net.classes):
        raise PipelineConfigError(f"task '{t.name}': configured classes {list(t.classes)} differ from the network's "
                                  f"{list(net.classes)} ({t.weights})")
    return net.eval()


def _source(p: _TaskPlan) -> str:
    """Key of the fused image a task uses: its head, or its own RSC customization."""
    return f"rsc:{p.cfg.name}" if p.rsc else p.head


class Pipeline:
    """Runs configured tasks on synchronized pairs. Build with :meth:`from_config`."""

    def __init__(self, cfg: RuntimeConfig) -> None:
        self.cfg = cfg
        pc = cfg.pipeline
        tasks = pc.task_configs()
        names = [t.name for t in tasks]
        if not tasks:
            raise PipelineConfigError("pipeline.tasks is empty: configure at least one task")
        if len(set(names)) != len(names):
            raise PipelineConfigError(f"task names must be unique, got {names}")
        fusion = build_fusion_graph(pc)
        self.graph = fusion.graph
        self.backend_notes: list[str] = []
        self.backend = backends.select(list(pc.backends), self.graph, pc, self.backend_notes)
        self.rsc = None
        if any(t.customization == "rsc" for t in tasks):
            self.rsc = self._load_rsc(pc, [t.name for t in tasks if t.customization == "rsc"])
        self.plans = []
        for t in tasks:
            net = None
            if t.kind in ("detection", "segmentation"):
                if not t.weights:
                    raise PipelineConfigError(f"task '{t.name}' of kind '{t.kind}' needs 'weights' (a task network)")
                net = _load_task_network(t, pc.device)
            self.plans.append(_TaskPlan(t, fusion.task_head.get(t.name), t.customization == "rsc", net))
        log.info("pipeline: backend=%s tasks=%s", self.backend.name, names)

    @classmethod
    def from_config(cls, cfg: RuntimeConfig) -> "Pipeline":
        return cls(cfg)

    @property
    def task_names(self) -> list[str]:
        return [p.cfg.name for p in self.plans]

    def task_config(self, name: str) -> TaskConfig:
        return next(p.cfg for p in self.plans if p.cfg.name == name)

    def _load_rsc(self, pc: PipelineConfig, rsc_tasks: list[str]):  # noqa: ANN202
        if not pc.rsc_weights:
            raise PipelineConfigError(f"tasks {rsc_tasks} use customization 'rsc' but pipeline.rsc_weights is empty")
        model = load_customized(resolve(pc.rsc_weights), self.graph.backbone)
        missing = [t for t in rsc_tasks if t not in model.tasks]
        if missing:
            raise PipelineConfigError(f"RSC checkpoint {pc.rsc_weights} has no task(s) {missing}; "
                                      f"it has {sorted(model.tasks)}")
        return model

    # ------------------------------------------------------------------ per pair

    def preprocess(self, thermal: np.ndarray, visible: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Checks sizes (optionally resizes RGB to the thermal size) and applies ``max_side``."""
        import cv2

        pc = self.cfg.pipeline
        if thermal.ndim != 2:
            raise PairSizeMismatch(f"thermal frame must be (H, W), got {thermal.shape}")
        if visible.ndim != 3 or visible.shape[2] != 3:
            raise PairSizeMismatch(f"visible frame must be (H, W, 3), got {visible.shape}")
        if visible.shape[:2] != thermal.shape:
            if not pc.resize_mismatched:
                raise PairSizeMismatch(f"thermal {thermal.shape[1]}x{thermal.shape[0]} and visible "
                                       f"{visible.shape[1]}x{visible.shape[0]} differ (set pipeline.resize_mismatched "
                                       "to resize the visible image to the thermal size)")
            visible = cv2.resize(visible, (thermal.shape[1], thermal.shape[0]), interpolation=cv2.INTER_LINEAR)
        (thermal, visible), _ = fit_max_side(pc.max_side, thermal, visible)
        return thermal.astype(np.float32, copy=False), visible.astype(np.float32, copy=False)

    def run(self, pair: Pair) -> Result:
        outputs, timings = self.run_arrays(pair.thermal.image, pair.visible.image)
        return Result(pair, outputs, timings)

    def run_arrays(self, thermal: np.ndarray, visible: np.ndarray) -> tuple[dict[str, TaskOutput], dict[str, float]]:
        """Thermal (H, W) and RGB (H, W, 3) float32 0..1 -> per-task outputs and stage timings (ms)."""
        t_start = time.perf_counter()
        thermal, visible = self.preprocess(thermal, visible)
        ycc = rgb_to_ycbcr(visible)
        y = ycc[..., 0]
        timings = {"preprocess": (time.perf_counter() - t_start) * 1e3}
        ys, bt = self.backend.run(thermal[None, None], y[None, None])
        timings.update(bt)
        # Fused Y per source: a shared head serves every task mapped to it, so its colour image is made once.
        fused_y: dict[str, np.ndarray] = {}
        for p in self.plans:
            if p.rsc:
                t = time.perf_counter()
                fused_y[f"rsc:{p.cfg.name}"] = self.rsc.fuse_numpy(thermal, y, p.cfg.name)
                timings[f"rsc:{p.cfg.name}"] = (time.perf_counter() - t) * 1e3
            else:
                fused_y[p.head] = ys[p.head][0, 0]
        outputs: dict[str, TaskOutput] = {}
        t = time.perf_counter()
        colour: dict[str, np.ndarray] = {}
        for source, fy in fused_y.items():
            if not np.isfinite(fy).all():
                users = [p.cfg.name for p in self.plans if _source(p) == source]
                raise FloatingPointError(f"task(s) {users}: fused image contains NaN/inf")
            c = ycc.copy()
            c[..., 0] = fy
            colour[source] = to_uint8(ycbcr_to_rgb(c))
        timings["postprocess"] = (time.perf_counter() - t) * 1e3
        for p in self.plans:
            image = colour[_source(p)]
            out = TaskOutput(fused_rgb=image)
            if p.network is not None:
                t = time.perf_counter()
                pred = p.network.predict(image)[0]
                if p.cfg.kind == "detection":
                    out.detections = pred
                else:
                    out.mask = pred
                timings[f"task:{p.cfg.name}"] = (time.perf_counter() - t) * 1e3
            outputs[p.cfg.name] = out
        timings["total"] = (time.perf_counter() - t_start) * 1e3
        return outputs, timings

