"""Benchmarks behind ``ivif bench``: backbone torch vs ONNX Runtime, and the multi-task pipeline.

Sections (each writes into one JSON + markdown report under ``benchmarks/``):

``fusion``
    The fusion backbone (VFN, ``forward(ir, y) -> fused Y``) in eager torch and in ONNX
    Runtime (graph exported by :func:`ivif_fusion.runtime.onnx_export.export_onnx`, ORT_ENABLE_ALL),
    the SeAFusion-architecture twin (:mod:`ivif_fusion.models.seafusion_twin`, random weights)
    in ONNX Runtime as the reference, plus one 3x3 head on its own. The three run one after the
    other on every frame, so load from other processes hits all alike; reported: median and p90
    of each, and the medians of the per-frame ratios ORT / torch and backbone / twin.

``pipeline``
    The per-pair fusion pipeline for 1, 2 and 3 tasks, torch vs ONNX Runtime, in two designs:
    *shared* (backbone once + one head per task: :class:`MultiHeadFusion`, what
    :class:`~ivif_fusion.runtime.pipeline.Pipeline` runs) and *separate* (one full fusion
    network per task, N backbone runs). Stages as the pipeline names them: ``preprocess``
    (BT.601 YCbCr of the RGB frame), the backend's stages (torch: ``backbone`` and
    ``head:<task>``; ONNX Runtime: one call ``backbone+heads``; separate: ``net:<task>``),
    ``postprocess`` (colour recombination + uint8 per task), ``total``. All configurations
    run round-robin per frame. Task networks (detection YOLO, segmentation) are timed in
    their own pass (``task:<name>``; identical in every design, so not repeated per config).

Weights: the shipped backbone when given, else a seeded random VFN; task heads and task
networks are randomly initialised (timing does not depend on the values; the report says so).
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import os
import platform
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..metrics.latency import latency_summary
from .report import load_note, summarize, to_markdown
from .variants import build_variants, ort_runner, variant_info

__all__ = ["BenchOptions", "load_note", "machine_info", "run"]

log = logging.getLogger("ivif_fusion.bench")

TASKS = ("detection", "segmentation", "fusion")  # task names for 1, 2, 3 tasks (in this order)


@dataclass
class BenchOptions:
    width: int = 640
    height: int = 480
    threads: int = 2
    frames: int = 30
    warmup: int = 3
    task_counts: tuple = (1, 2, 3)
    backends: tuple = ("torch", "onnxruntime")
    weights: str = ""              # backbone checkpoint; empty = seeded random VFN
    archs: tuple = ()              # fusion section: backbone variants timed at random init (see bench/variants.py)
    task_networks: bool = True
    designs: tuple = ("shared", "separate")
    out_dir: str = "benchmarks"
    seed: int = 0
    notes: list = field(default_factory=list)


# --------------------------------------------------------------------------- helpers


def machine_info() -> dict:
    """CPU model, cores, library versions, date and load (os.getloadavg) of this machine."""
    import onnxruntime as ort
    import torch

    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu_model": cpu, "logical_cpus": os.cpu_count(),
            "usable_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
            "python": platform.python_version(), "platform": platform.platform(),
            "torch": torch.__version__, "onnxruntime": ort.__version__, "numpy": np.__version__,
            "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "loadavg_start": [round(x, 2) for x in os.getloadavg()]}



def _frames(opts: BenchOptions) -> list[tuple[np.ndarray, np.ndarray]]:
    """Up to 8 real MSRS pairs at the bench size when the shared data is there, else synthetic ones."""
    import cv2

    from ..paths import data_root

    root = data_root() / "MSRS"
    pairs = []
    if (root / "ir").is_dir():
        from ..data.paired import PairedFolder

        folder = PairedFolder(root, strict=False)
        for name in folder.names[:8]:
            s = folder.load(name)
            thermal, visible = s.thermal, s.visible
            if thermal.shape != (opts.height, opts.width):
                thermal = cv2.resize(thermal, (opts.width, opts.height), interpolation=cv2.INTER_AREA)
                visible = cv2.resize(visible, (opts.width, opts.height), interpolation=cv2.INTER_AREA)
            pairs.append((thermal.astype(np.float32), visible.astype(np.float32)))
        opts.notes.append(f"inputs: {len(pairs)} MSRS pairs cycled ({opts.width}x{opts.height})")
    if not pairs:
        rng = np.random.default_rng(opts.seed)
        pairs = [(rng.random((opts.height, opts.width), dtype=np.float32),
                  rng.random((opts.height, opts.width, 3), dtype=np.float32)) for _ in range(4)]
        opts.notes.append("inputs: synthetic noise pairs (shared MSRS data not found)")
    return pairs


def _backbone(opts: BenchOptions, seed: int):  # noqa: ANN202
    import torch

    from ..models import checkpoint
    from ..models.vfn import VFN

    if opts.weights:
        return checkpoint.load_backbone(opts.weights)
    torch.manual_seed(seed)
    return VFN().eval()


def _graph(backbone, tasks: list[str], seed: int):  # noqa: ANN001, ANN202
    """Backbone + one randomly initialised head per task (VIFA layout)."""
    import torch

    from ..models.heads import MultiHeadFusion, make_head

    torch.manual_seed(1000 + seed)
    heads = {t: make_head(backbone.shared_channels) for t in tasks}
    return MultiHeadFusion(backbone, heads, head_names=list(tasks)).eval()


def _make_backend(kind: str, graph, opts: BenchOptions, workdir: Path, tag: str):  # noqa: ANN001, ANN202
    from ..runtime.backends.onnxruntime_backend import OnnxRuntimeBackend
    from ..runtime.backends.torch_backend import TorchBackend
    from ..runtime.onnx_export import export_onnx

    if kind == "torch":
        return TorchBackend(graph, "cpu", opts.threads)
    res = export_onnx(graph, workdir / tag, verify=False)
    return OnnxRuntimeBackend(res.path, res.head_names, res.weights_sha256, opts.threads)


class _Config:
    """One pipeline configuration: preprocess, fusion backend(s), postprocess."""

    def __init__(self, name: str, backend: str, design: str, tasks: list[str], runners: list) -> None:
        self.name, self.backend, self.design, self.tasks, self.runners = name, backend, design, tasks, runners
        self.samples: dict[str, list[float]] = {}

    def run(self, thermal: np.ndarray, rgb: np.ndarray, record: bool) -> None:
        from ..colour import rgb_to_ycbcr, ycbcr_to_rgb
        from ..imageops import to_uint8

        t_start = time.perf_counter()
        ycc = rgb_to_ycbcr(rgb)
        times = {"preprocess": (time.perf_counter() - t_start) * 1e3}
        fused: dict[str, np.ndarray] = {}
        ir4, y4 = thermal[None, None], np.ascontiguousarray(ycc[..., 0])[None, None]
        for task, runner in self.runners:
            out, t = runner.run(ir4, y4)
            if task is None:  # shared: one backend, every head
                fused.update({k: v[0, 0] for k, v in out.items()})
                times.update(t)
            else:             # separate: one network per task
                fused[task] = next(iter(out.values()))[0, 0]
                times[f"net:{task}"] = sum(t.values())
        t = time.perf_counter()
        for fy in fused.values():
            c = ycc.copy()
            c[..., 0] = fy
            to_uint8(ycbcr_to_rgb(c))
        times["postprocess"] = (time.perf_counter() - t) * 1e3
        times["total"] = (time.perf_counter() - t_start) * 1e3
        if record:
            for k, v in times.items():
                self.samples.setdefault(k, []).append(v)


# --------------------------------------------------------------------------- sections


def bench_fusion(opts: BenchOptions, frames: list, workdir: Path, progress: Callable[[str], None]) -> dict:
    """Backbone torch vs ORT, and the backbone vs the SeAFusion twin in ORT, interleaved per frame; one head alone.

    The graphs (and every variant of ``opts.archs``, in ORT) run one after the other on every
    frame, the order rotating so none always runs first; the ratios are taken per frame, so load
    from other processes hits all alike.
    """
    import onnxruntime as ort
    import torch

    from ..colour import luminance
    from ..models.heads import MultiHeadFusion
    from ..models.seafusion_twin import MAC_PER_PIXEL, SeAFusionTwin, paper_parameter_count
    from ..runtime.backends.onnxruntime_backend import session_options
    from ..runtime.onnx_export import export_onnx, export_reference_onnx, parity_check

    torch.set_num_threads(opts.threads)
    load_start = os.getloadavg()
    backbone = _backbone(opts, opts.seed)
    res = export_onnx(MultiHeadFusion(backbone), workdir / "backbone", verify=True)
    torch.manual_seed(opts.seed)
    twin = SeAFusionTwin().eval()
    twin_path = export_reference_onnx(twin, workdir / "seafusion_twin" / "seafusion_twin.onnx")
    twin_parity = parity_check(twin, twin_path, [(1, 64, 80)])

    def ort_session(path: Path) -> Any:
        return ort.InferenceSession(str(path), session_options(opts.threads), providers=["CPUExecutionProvider"])

    sess, twin_sess = ort_session(res.path), ort_session(twin_path)
    runners = {"torch": lambda x, y: backbone(torch.from_numpy(x), torch.from_numpy(y)).numpy(),
               "ort": lambda x, y: sess.run(None, {"ir": x, "y": y}),
               "twin": lambda x, y: twin_sess.run(None, {"ir": x, "y": y})}
    variants = build_variants(opts.archs, opts.seed, workdir / "variants", opts.width, opts.height)
    for spec, v in variants.items():
        runners[spec] = ort_runner(ort_session(v.pop("onnx")))
    names = list(runners)
    head = _graph(backbone, ["detection"], opts.seed).heads["detection"]
    shared_cache: dict[int, torch.Tensor] = {}
    samples: dict[str, list[float]] = {k: [] for k in [*names, "head", "ort/torch", "ort/twin"]}
    n = opts.warmup + opts.frames
    with torch.inference_mode():
        for i in range(n):
            thermal, rgb = frames[i % len(frames)]
            y = luminance(rgb)[None, None].astype(np.float32)
            x = thermal[None, None]
            d = {}
            for which in names[i % len(names):] + names[:i % len(names)]:
                t0 = time.perf_counter()
                runners[which](x, y)
                d[which] = (time.perf_counter() - t0) * 1e3
            key = i % len(frames)
            if key not in shared_cache:
                shared_cache[key] = backbone.shared_features(torch.from_numpy(x), torch.from_numpy(y))
            t0 = time.perf_counter()
            torch.tanh(head(shared_cache[key]))
            d["head"] = (time.perf_counter() - t0) * 1e3
            d["ort/torch"] = d["ort"] / d["torch"]
            d.update({f"{k}/twin": d[k] / d["twin"] for k in ["ort", *variants]})
            if i >= opts.warmup:
                for k, v in d.items():
                    samples.setdefault(k, []).append(v)
            progress(f"fusion {i + 1}/{n}: torch {d['torch']:.0f} ms, ort {d['ort']:.0f} ms, "
                     f"seafusion twin ort {d['twin']:.0f} ms")

    def ratio(per_frame: str, num: str, den: str) -> dict:
        return {"median_of_per_frame": float(np.median(samples[per_frame])),
                "of_medians": float(np.median(samples[num]) / np.median(samples[den])),
                "p90_of_per_frame": float(np.percentile(samples[per_frame], 90))}

    return {"torch_backbone_ms": latency_summary(samples["torch"]),
            "ort_backbone_ms": latency_summary(samples["ort"]),
            "torch_head_ms": latency_summary(samples["head"]),
            "ort_seafusion_twin_ms": latency_summary(samples["twin"]),
            "ratio_ort_over_torch": ratio("ort/torch", "ort", "torch"),
            "ratio_backbone_over_seafusion_twin": ratio("ort/twin", "ort", "twin"),
            "seafusion_twin": {"parameters": sum(p.numel() for p in twin.parameters()),
                               "paper_parameters": paper_parameter_count(twin),
                               "gflop_per_frame": 2 * MAC_PER_PIXEL * opts.width * opts.height / 1e9,
                               "weights": "random (seeded)", "parity_max_abs_diff": twin_parity},
            "backbone": variant_info(backbone, opts.width, opts.height),
            "variants": {spec: {**v, "ort_ms": latency_summary(samples[spec]), "ratio_over_seafusion_twin":
                                ratio(f"{spec}/twin", spec, "twin")} for spec, v in variants.items()},
            "loadavg": {"start": [round(v, 2) for v in load_start], "end": [round(v, 2) for v in os.getloadavg()]},
            "parity_max_abs_diff": res.parity, "ort_graph_optimization": "ORT_ENABLE_ALL (NCHWc, fusions), onnxslim"}


def bench_pipeline(opts: BenchOptions, frames: list, workdir: Path, progress: Callable[[str], None]) -> dict:
    """Shared vs separate fusion, 1..3 tasks, per backend, round-robin per frame."""
    import torch

    torch.set_num_threads(opts.threads)
    configs: list[_Config] = []
    for backend in opts.backends:
        for k in opts.task_counts:
            tasks = list(TASKS[:k])
            if "shared" in opts.designs:
                graph = _graph(_backbone(opts, opts.seed), tasks, opts.seed)
                runner = _make_backend(backend, graph, opts, workdir, f"{backend}-shared-{k}")
                configs.append(_Config(f"{backend}/shared/{k}", backend, "shared", tasks, [(None, runner)]))
            if k == 1 or "separate" not in opts.designs:
                continue  # one task: separate == shared (one backbone, one head)
            runners = []
            for j, t in enumerate(tasks):
                g = _graph(_backbone(opts, opts.seed + 1 + j), [t], opts.seed + j)
                runners.append((t, _make_backend(backend, g, opts, workdir, f"{backend}-separate-{k}-{t}")))
            configs.append(_Config(f"{backend}/separate/{k}", backend, "separate", tasks, runners))
    n = opts.warmup + opts.frames
    for i in range(n):
        thermal, rgb = frames[i % len(frames)]
        for c in (configs if i % 2 == 0 else configs[::-1]):
            c.run(thermal, rgb, record=i >= opts.warmup)
        progress(f"pipeline {i + 1}/{n} (load {os.getloadavg()[0]:.1f})")
    out = {}
    for c in configs:
        out[c.name] = {"backend": c.backend, "design": c.design, "tasks": c.tasks,
                       "stages_ms": {k: latency_summary(v) for k, v in c.samples.items()}}
    return out


def bench_task_networks(opts: BenchOptions, frames: list, progress: Callable[[str], None]) -> dict:
    """Randomly initialised task networks on fused-size uint8 images (torch, eager)."""
    import torch

    torch.set_num_threads(opts.threads)
    nets: dict[str, Any] = {}
    try:
        from ..tasks.detection import YoloDetector

        nets["detection"] = YoloDetector()
    except Exception as e:  # noqa: BLE001 - optional for the benchmark
        opts.notes.append(f"detection network not timed: {type(e).__name__}: {e}")
    try:
        from ..tasks.segmentation import SmallSegmenter

        nets["segmentation"] = SmallSegmenter()
    except Exception as e:  # noqa: BLE001
        opts.notes.append(f"segmentation network not timed: {type(e).__name__}: {e}")
    samples: dict[str, list[float]] = {k: [] for k in nets}
    n = opts.warmup + opts.frames
    for i in range(n):
        img = (frames[i % len(frames)][1] * 255).astype(np.uint8)
        for name, net in nets.items():
            t0 = time.perf_counter()
            net.predict(img)
            if i >= opts.warmup:
                samples[name].append((time.perf_counter() - t0) * 1e3)
        progress(f"task networks {i + 1}/{n}")
    info = {name: {"network": type(net).__name__, "input_size": getattr(getattr(net, "cfg", None), "imgsz", None)}
            for name, net in nets.items()}
    return {"task_ms": {f"task:{k}": latency_summary(v) for k, v in samples.items()}, "networks": info,
            "fusion_task_network": "none (the 'fusion' task publishes the fused image only)"}


def run(opts: BenchOptions, sections: tuple[str, ...] = ("fusion", "pipeline"),
        progress: Callable[[str], None] | None = None, name: str = "bench") -> tuple[Path, Path, dict]:
    """Run the sections, write ``<out_dir>/<name>.json`` and ``.md``; returns both paths and the result."""
    progress = progress or (lambda s: log.info(s))
    import torch

    torch.set_num_threads(opts.threads)
    opts.notes.append("weights: " + (opts.weights or "seeded random VFN (timing does not depend on the values)")
                      + "; task heads and task networks are randomly initialised")
    result: dict[str, Any] = {"machine": machine_info()}
    frames = _frames(opts)
    with tempfile.TemporaryDirectory(prefix="ivif-bench-") as tmp:
        work = Path(tmp)
        if "fusion" in sections:
            result["fusion"] = bench_fusion(opts, frames, work, progress)
        if "pipeline" in sections:
            result["pipeline"] = bench_pipeline(opts, frames, work, progress)
            if opts.task_networks:
                result["task_networks"] = bench_task_networks(opts, frames, progress)
    result["machine"]["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    result["options"] = {k: v for k, v in asdict(opts).items() if k != "notes"}
    result["summary"] = summarize(result)
    result["notes"] = list(opts.notes)
    out = Path(opts.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    jpath, mpath = out / f"{name}.json", out / f"{name}.md"
    jpath.write_text(json.dumps(result, indent=2) + "\n")
    mpath.write_text(to_markdown(result))
    return jpath, mpath, result
