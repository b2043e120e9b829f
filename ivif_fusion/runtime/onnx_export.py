"""ONNX export of the deployment graph (``ivif export onnx``), of RSC graphs and of task networks.

The deployment graph (:class:`~ivif_fusion.models.heads.MultiHeadFusion`: backbone once, one
3x3-conv head per task) is exported as ONE graph with inputs ``ir`` and ``y`` ((N, 1, H, W)
float32 0..1) and one output per head, named after the head, in ``head_names`` order. Batch,
height and width are dynamic axes. The graph is simplified with onnxslim and carries the
``ivif.*`` metadata that :mod:`.graph_check` reads. A JSON sidecar (``fusion.json``) repeats the
metadata and adds the export facts (opset, versions, ONNX file sha256, the ORT-vs-torch parity
check at two image sizes).

The exporter is torch's TorchScript exporter (``dynamo=False``): the dynamo exporter needs
onnxscript, which is not a dependency. :func:`trace_to_onnx` is the one place that calls it;
any module with tensor inputs goes through it (the bench exports its reference network too).
"""

from __future__ import annotations

import copy
import datetime as _dt
import json
import logging
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import UserError
from ..models.checkpoint import file_sha256
from .graph_check import (FORMAT, META_CONFIG, META_FORMAT, META_HEADS, META_SOURCES, META_WEIGHTS, ONNX_NAME,
                          weights_digest)

log = logging.getLogger("ivif_fusion.export")

OPSET = 17
INPUT_NAMES = ("ir", "y")
PARITY_TOL = 1e-4


class ExportError(UserError):
    """An export could not be made or failed its own checks."""


@dataclass
class OnnxExport:
    """What :func:`export_onnx` / :func:`export_task_onnx` wrote."""

    path: Path
    sidecar: Path
    head_names: list[str]
    weights_sha256: str
    onnx_sha256: str
    parity: dict[str, float] = field(default_factory=dict)  # "NxHxW" -> max diff ORT vs torch


def trace_to_onnx(module: Any, args: tuple, path: Path, input_names: list[str], output_names: list[str],
                  dynamic_axes: dict[str, dict[int, str]], opset: int = OPSET, slim: bool = True) -> Any:
    """Trace ``module(*args)`` to an ONNX ModelProto (simplified with onnxslim unless ``slim`` is off).

    ``path`` is a scratch file for the exporter, removed afterwards.
    """
    import onnx
    import torch

    if opset < 17:
        raise ExportError(f"opset {opset} is too old; use 17 or newer")
    with warnings.catch_warnings():
        # the exporter's own deprecation notice, and tracer notes on shapes recorded as constants
        warnings.simplefilter("ignore")
        torch.onnx.export(module, args, str(path), input_names=input_names, output_names=output_names,
                          dynamic_axes=dynamic_axes, opset_version=opset, do_constant_folding=True, dynamo=False)
    model = onnx.load(str(path))
    path.unlink()
    return simplify(model) if slim else model


def dynamic_nhw(names: list[str]) -> dict[str, dict[int, str]]:
    """Batch, height and width dynamic for every named (N, C, H, W) tensor."""
    return {n: {0: "N", 2: "H", 3: "W"} for n in names}


def simplify(model: Any) -> Any:
    """onnxslim pass (constant folding, dead-node and identity removal); keeps dynamic axes."""
    import onnxslim

    return onnxslim.slim(model)


def set_metadata(model: Any, meta: dict[str, str]) -> None:
    """Replace the ``ivif.*`` entries of ``metadata_props`` with ``meta``."""
    keep = [p for p in model.metadata_props if not p.key.startswith("ivif.")]
    del model.metadata_props[:]
    for p in keep:
        model.metadata_props.add(key=p.key, value=p.value)
    for k, v in meta.items():
        model.metadata_props.add(key=k, value=v)


def _save_checked(model: Any, path: Path) -> None:
    """ONNX checker, then an atomic write (temporary file + rename)."""
    import onnx

    onnx.checker.check_model(model)
    tmp = path.with_suffix(".tmp.onnx")
    onnx.save(model, str(tmp))
    os.replace(tmp, path)


def _write_sidecar(path: Path, info: dict) -> Path:
    sidecar = path.with_suffix(".json")
    sidecar.write_text(json.dumps(info, indent=2) + "\n")
    return sidecar


def _check_parity(path: Path, parity: dict[str, float]) -> None:
    if parity and max(parity.values()) > PARITY_TOL:
        raise ExportError(f"{path}: ONNX Runtime differs from torch by {max(parity.values()):.2e} "
                          f"(> {PARITY_TOL}): {parity}")


def _cpu_session(onnx_path: str | os.PathLike, threads: int) -> Any:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    return ort.InferenceSession(str(onnx_path), so, providers=["CPUExecutionProvider"])


def parity_check(graph: Any, onnx_path: str | os.PathLike, sizes: list[tuple[int, int, int]],
                 seed: int = 0, threads: int = 2) -> dict[str, float]:
    """Max abs difference between ONNX Runtime and eager torch, per (N, H, W), over all outputs.

    ``graph(ir, y)`` returns one tensor or a tuple of them (the ONNX outputs, in order).
    """
    import torch

    sess = _cpu_session(onnx_path, threads)
    names = [i.name for i in sess.get_inputs()]
    rng = np.random.default_rng(seed)
    out = {}
    for n, h, w in sizes:
        thermal = rng.random((n, 1, h, w), dtype=np.float32)
        y = rng.random((n, 1, h, w), dtype=np.float32)
        with torch.inference_mode():
            ref = graph(torch.from_numpy(thermal), torch.from_numpy(y))
        ref = (ref,) if isinstance(ref, torch.Tensor) else ref
        got = sess.run(None, dict(zip(names, (thermal, y))))
        out[f"{n}x{h}x{w}"] = float(max(np.abs(g - r.numpy()).max() for g, r in zip(got, ref)))
    return out


def _export_fusion_graph(graph: Any, out_dir: str | os.PathLike, name: str, outputs: list[str], config: dict,
                         source_files: list[str] | None, opset: int, trace_size: tuple[int, int], slim: bool,
                         verify: bool, sidecar_extra: dict, what: str) -> OnnxExport:
    """Trace ``graph(ir, y) -> outputs`` to ``out_dir/name`` with the ``ivif.*`` metadata, then the parity check
    and the sidecar (its common entries, then ``sidecar_extra``); ``what`` names the outputs in the log."""
    import torch

    import ivif_fusion

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / name
    h, w = trace_size
    args = (torch.rand(1, 1, h, w), torch.rand(1, 1, h, w))
    model = trace_to_onnx(graph, args, path.with_suffix(".trace.onnx"), list(INPUT_NAMES), outputs,
                          dynamic_nhw([*INPUT_NAMES, *outputs]), opset, slim)
    digest = weights_digest(graph)
    sources = {str(p): file_sha256(p) for p in (source_files or []) if Path(p).is_file()}
    meta = {META_FORMAT: FORMAT, META_HEADS: json.dumps(outputs), META_CONFIG: json.dumps(config, sort_keys=True),
            META_WEIGHTS: digest, META_SOURCES: json.dumps(sources, sort_keys=True)}
    set_metadata(model, meta)
    model.producer_name = "ivif_fusion"
    model.producer_version = ivif_fusion.__version__
    _save_checked(model, path)
    parity = parity_check(graph, path, [(1, 96, 128), (2, 120, 72)]) if verify else {}
    _check_parity(path, parity)
    onnx_sha = file_sha256(path)
    sidecar = _write_sidecar(path, {
        "onnx": path.name, "onnx_sha256": onnx_sha, "opset": opset, "inputs": list(INPUT_NAMES), "outputs": outputs,
        "dynamic_axes": {"N": "batch", "H": "height", "W": "width"},
        "metadata": meta, "parity_max_abs_diff": parity, "slimmed": slim, **sidecar_extra})
    log.info("exported %s (%s %s, weights %s...)", path, what, outputs, digest[:12])
    return OnnxExport(path, sidecar, outputs, digest, onnx_sha, parity)


def export_onnx(graph: Any, out_dir: str | os.PathLike, *, source_files: list[str] | None = None,
                name: str = ONNX_NAME, opset: int = OPSET, trace_size: tuple[int, int] = (64, 80),
                slim: bool = True, verify: bool = True) -> OnnxExport:
    """Export a :class:`MultiHeadFusion` graph to ``out_dir/name`` (+ ``.json`` sidecar).

    Args:
        graph: the deployment graph (eval mode is set here).
        out_dir: output folder (created).
        source_files: checkpoint paths the weights came from (their sha256 goes in the metadata).
        opset: ONNX opset, 17 or newer (17 is read by TensorRT 8.6/10 and every recent ORT).
        trace_size: (H, W) of the dummy input used for tracing; every size works afterwards.
        slim: run onnxslim.
        verify: compare ONNX Runtime with torch at two sizes (and batch 1 and 2); raise
            :class:`ExportError` above 1e-4.
    """
    import onnx
    import torch

    import ivif_fusion

    graph = graph.eval()
    head_names = list(graph.head_names)
    config = {"vfn": graph.backbone.cfg.to_dict(), "heads": head_names}
    versions = {"ivif_fusion": ivif_fusion.__version__, "torch": torch.__version__, "onnx": onnx.__version__}
    extra = {"versions": versions, "exported": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
    return _export_fusion_graph(graph, out_dir, name, head_names, config, source_files, opset, trace_size, slim,
                                verify, extra, "heads")


def export_reference_onnx(module: Any, path: str | os.PathLike, output_name: str = "fused",
                          trace_size: tuple[int, int] = (64, 80), opset: int = OPSET) -> Path:
    """Export a ``module(ir, y) -> fused`` network without ivif metadata (no backend will accept it).

    For reference networks timed next to the backbone (``ivif bench fusion``): same inputs,
    dynamic N, H, W, onnxslim, ONNX checker.
    """
    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    h, w = trace_size
    args = (torch.rand(1, 1, h, w), torch.rand(1, 1, h, w))
    model = trace_to_onnx(module.eval(), args, path.with_suffix(".trace.onnx"), list(INPUT_NAMES), [output_name],
                          dynamic_nhw([*INPUT_NAMES, output_name]), opset)
    _save_checked(model, path)
    return path


# --------------------------------------------------------------------------- RSC graphs

RSC_ONNX_NAME = "rsc.onnx"


def rsc_task_graph(model: Any, tasks: list[str] | None = None) -> Any:
    """``(ir, y) -> one fused Y per task``: a customized fusion (backbone + RSC) as one graph.

    The backbone's task-independent part runs once, the RSC and the backbone's tail once per
    task. No task descriptor is an input: each task uses the RSC's stored mean descriptor, as
    the runtime pipeline does.
    """
    import torch

    names = list(tasks or model.tasks)
    missing = [t for t in names if t not in model.tasks]
    if missing:
        raise ExportError(f"the RSC has no task(s) {missing}; it has {list(model.tasks)}")

    class RSCTasks(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, thermal: torch.Tensor, y: torch.Tensor) -> tuple:
            outs = self.model.forward_tasks(thermal, y, dict.fromkeys(names))
            return tuple(outs[t] for t in names)

    return RSCTasks().eval(), names


def export_rsc_onnx(model: Any, out_dir: str | os.PathLike, *, tasks: list[str] | None = None,
                    source_files: list[str] | None = None, name: str = RSC_ONNX_NAME, opset: int = OPSET,
                    trace_size: tuple[int, int] = (64, 80), slim: bool = True, verify: bool = True) -> OnnxExport:
    """Export a customized fusion (:func:`ivif_fusion.models.rsc.load_customized`) to ``out_dir/name``.

    Inputs ``ir``, ``y`` as in :func:`export_onnx`; one output per task, named after it; N, H, W
    dynamic. Only the vfn2 (context) RSC exports: its per-sample mixing is a batched MatMul,
    whereas the vfn RSC's per-sample kernels are conv groups over the batch (a trace-time
    constant), so :class:`ExportError` for it (the pipeline runs it in torch). ``verify``
    compares ONNX Runtime with torch at two sizes and batches and raises above 1e-4.
    """
    if model.rsc.cfg.arch == "vfn":
        raise ExportError("the vfn RSC builds per-sample kernels as conv groups over the batch, which does not "
                          "export with a dynamic batch; ONNX export supports the vfn2 (context) RSC")
    graph, names = rsc_task_graph(model.eval(), tasks)
    config = {"backbone": model.backbone.cfg.to_dict(), "rsc": model.rsc.cfg.to_dict(), "outputs": names}
    note = "one fused Y per task from backbone + RSC; each task uses the RSC's stored mean descriptor"
    return _export_fusion_graph(graph, out_dir, name, names, config, source_files, opset, trace_size, slim, verify,
                                {"note": note}, "tasks")


# --------------------------------------------------------------------------- task networks


def raw_task_graph(model: Any) -> Any:
    """A task network for export: image batch in, first raw output out (before NMS / argmax).

    Works on a copy; ultralytics heads are switched to return the decoded tensor only and to
    rebuild anchors for every input size.
    """
    import torch

    net = copy.deepcopy(model).eval()
    for m in net.modules():
        if hasattr(m, "export") and hasattr(m, "dynamic"):
            m.export, m.dynamic, m.format = True, True, "onnx"

    class RawOutput(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = net

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            out = self.net(x)
            return out[0] if isinstance(out, (tuple, list)) else out

    return RawOutput().eval()


def task_parity(raw: Any, onnx_path: str | os.PathLike, sizes: list[tuple[int, int, int]], seed: int = 0) -> dict:
    """Max difference ORT vs torch of a task graph, in 0..1 units: |a - b| / max(1, |b|).

    Raw detector outputs hold box coordinates in input pixels; dividing by the magnitude puts
    them on the same 0..1 footing as scores and fused images.
    """
    import torch

    sess = _cpu_session(onnx_path, 2)
    rng = np.random.default_rng(seed)
    out = {}
    for n, h, w in sizes:
        x = rng.random((n, 3, h, w), dtype=np.float32)
        with torch.inference_mode():
            ref = raw(torch.from_numpy(x)).numpy()
        got = sess.run(None, {"images": x})[0]
        if got.shape != ref.shape:
            raise ExportError(f"{onnx_path}: ORT output {got.shape} != torch {ref.shape} at {n}x{h}x{w}")
        out[f"{n}x{h}x{w}"] = float((np.abs(got - ref) / np.maximum(1.0, np.abs(ref))).max())
    return out


def export_task_onnx(adapter: Any, out_dir: str | os.PathLike, task: str, *, source: str = "",
                     opset: int = OPSET, verify: bool = True) -> OnnxExport:
    """Export a task network (its raw forward, before NMS / argmax) to ``out_dir/task_<task>.onnx``.

    Input ``images`` (N, 3, H, W) float32 0..1, already letterboxed by the adapter (H, W multiples
    of the stride); N, H, W dynamic. Metadata: kind, task, classes, adapter config, weights checksum.
    """
    import torch

    raw = raw_task_graph(adapter.model)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"task_{task}.onnx"
    stride = int(getattr(adapter, "stride", 32))  # detectors define it; 32 is a multiple of the segmenter's 8
    dummy = torch.rand(1, 3, 4 * stride, 5 * stride)
    with torch.inference_mode():
        ndim = raw(dummy).ndim
    dyn = {"images": {0: "N", 2: "H", 3: "W"}, "output": {0: "N", **{d: f"D{d}" for d in range(2, ndim)}}}
    model = trace_to_onnx(raw, (dummy,), path.with_suffix(".trace.onnx"), ["images"], ["output"], dyn, opset)
    digest = weights_digest(adapter.model)
    meta = {META_FORMAT: FORMAT, "ivif.kind": adapter.KIND, "ivif.task": task,
            "ivif.classes": json.dumps(list(adapter.classes)), "ivif.stride": str(stride),
            META_CONFIG: json.dumps(adapter.cfg.to_dict(), sort_keys=True, default=str), META_WEIGHTS: digest,
            META_SOURCES: json.dumps({source: file_sha256(source)} if source and Path(source).is_file() else {})}
    set_metadata(model, meta)
    _save_checked(model, path)
    parity = task_parity(raw, path, [(1, 4 * stride, 5 * stride), (2, 6 * stride, 3 * stride)]) if verify else {}
    _check_parity(path, parity)
    onnx_sha = file_sha256(path)
    sidecar = _write_sidecar(path, {"onnx": path.name, "onnx_sha256": onnx_sha, "opset": opset,
                                    "inputs": ["images"], "outputs": ["output"], "metadata": meta,
                                    "parity_max_rel_diff": parity,
                                    "note": "raw network output; letterbox and NMS/argmax stay in the adapter"})
    return OnnxExport(path, sidecar, ["output"], digest, onnx_sha, parity)
