"""ONNX export of the deployment graph, TensorRT engine builds and the engine cache.

ONNX (``ivif export onnx``)
    The deployment graph (:class:`~ivif_fusion.models.heads.MultiHeadFusion`: backbone once,
    one 3x3-conv head per task) is exported as ONE graph with inputs ``ir`` and ``y``
    ((N, 1, H, W) float32 0..1) and one output per head, named after the head, in
    ``head_names`` order. Batch, height and width are dynamic axes. The graph is simplified
    with onnxslim and carries in ``metadata_props``:

    - ``ivif.format``: ``ivif-onnx/1``;
    - ``ivif.head_names``: JSON list (output order);
    - ``ivif.model_config``: JSON ``{"vfn": VFNConfig dict, "heads": [...]}``;
    - ``ivif.weights_sha256``: :func:`weights_digest` of the exported module, i.e. a sha256
      over every tensor of its state dict (names, dtypes, shapes, bytes). Backends recompute
      it on the weights they loaded, so a stale ONNX is never used silently;
    - ``ivif.source_files``: JSON ``{path: file sha256}`` of the checkpoints it came from.

    A JSON sidecar (``fusion.json``) repeats the metadata and adds the export facts (opset,
    versions, ONNX file sha256, the ORT-vs-torch parity check at two image sizes).

TensorRT (``ivif export tensorrt``)
    :func:`build_trt_engine` parses the ONNX and builds a serialized engine (FP16 by default,
    FP32 on request) with one optimization profile (min/opt/max N, H, W). TensorRT is imported
    lazily; everything else in this module runs without it.

Engine cache
    :class:`EngineCache` stores ``<name>-<key digest>.engine`` plus a JSON sidecar holding the
    full :class:`EngineKey` (ONNX sha256, TensorRT version, GPU name and compute capability,
    precision, profile) and the engine's own sha256. :meth:`EngineCache.get_or_build` reuses a
    matching engine, builds a missing one (logging which key fields differ from the engines
    already cached for that graph), and treats a corrupt entry (unreadable sidecar, engine
    bytes that do not match their recorded sha256, or an engine the runtime cannot
    deserialize) by deleting it and rebuilding, logged. The builder and the validator are
    injected, so the rules are tested without TensorRT.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
import logging
import os
import warnings
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import UserError
from .backends.base import BackendUnavailable

log = logging.getLogger("ivif_fusion.export")

ONNX_NAME = "fusion.onnx"
FORMAT = "ivif-onnx/1"
OPSET = 17
INPUT_NAMES = ("ir", "y")
META_FORMAT = "ivif.format"
META_HEADS = "ivif.head_names"
META_CONFIG = "ivif.model_config"
META_WEIGHTS = "ivif.weights_sha256"
META_SOURCES = "ivif.source_files"
PARITY_TOL = 1e-4


class ExportError(UserError):
    """An export could not be made or failed its own checks."""


class GraphMismatch(BackendUnavailable):
    """An exported graph (ONNX / engine) does not fit the configured weights or heads."""


# --------------------------------------------------------------------------- checksums


def weights_digest(module: Any) -> str:
    """sha256 over a module's state dict: names, dtypes, shapes and raw bytes, in name order.

    Independent of the file format the weights came from, so an ONNX graph can be checked
    against whatever checkpoint the pipeline actually loaded.
    """
    h = hashlib.sha256()
    state = module.state_dict()
    for name in sorted(state):
        t = state[name].detach().cpu().contiguous()
        h.update(name.encode())
        h.update(f"|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()


from ..models.checkpoint import file_sha256  # noqa: E402 - re-exported for the engine cache and tests

# --------------------------------------------------------------------------- ONNX export


@contextlib.contextmanager
def _export_friendly_ops() -> Iterator[None]:
    """Trace ``ops.sobel_xy`` with a constant channel count.

    The eager op builds its depthwise kernel with ``repeat(x.shape[1], ...)``; the TorchScript
    exporter records that as a shape computation, and its Conv symbolic then refuses a kernel
    of unknown shape. The channel count is fixed per graph, so tracing it as a constant is exact
    (the parity check after export proves it).
    """
    import torch
    import torch.nn.functional as F  # noqa: N812

    from .. import ops

    orig = ops.sobel_xy

    def sobel_xy_static(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        c = int(x.shape[1])
        kx = ops._SOBEL_X.to(dtype=x.dtype, device=x.device).view(1, 1, 3, 3).repeat(c, 1, 1, 1)
        ky = kx.transpose(2, 3).contiguous()
        xp = F.pad(x, (1, 1, 1, 1), mode="replicate")
        return F.conv2d(xp, kx, groups=c), F.conv2d(xp, ky, groups=c)

    ops.sobel_xy = sobel_xy_static
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # legacy-exporter deprecation and the int() tracer warning
            yield
    finally:
        ops.sobel_xy = orig


def _torch_onnx_export(module: Any, args: tuple, path: Path, input_names: list[str], output_names: list[str],
                       opset: int) -> None:
    import torch

    dyn = {n: {0: "N", 2: "H", 3: "W"} for n in [*input_names, *output_names]}
    with _export_friendly_ops():
        # The TorchScript exporter: the dynamo one needs onnxscript, which is not a dependency.
        torch.onnx.export(module, args, str(path), input_names=input_names, output_names=output_names,
                          dynamic_axes=dyn, opset_version=opset, do_constant_folding=True, dynamo=False)


def simplify(model: Any) -> Any:
    """onnxslim pass (constant folding, dead-node and identity removal); keeps dynamic axes."""
    import onnxslim

    return onnxslim.slim(model)


def set_metadata(model: Any, meta: dict[str, str]) -> None:
    """Replace this module's ``ivif.*`` entries of ``metadata_props`` with ``meta``."""
    keep = [p for p in model.metadata_props if not p.key.startswith("ivif.")]
    del model.metadata_props[:]
    for p in keep:
        model.metadata_props.add(key=p.key, value=p.value)
    for k, v in meta.items():
        model.metadata_props.add(key=k, value=v)


def read_metadata(path: str | os.PathLike) -> dict[str, str]:
    """``metadata_props`` of an ONNX file as a dict (graph weights are not needed for this)."""
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as e:  # noqa: BLE001 - protobuf raises several types for a bad file
        raise GraphMismatch(f"{path} is not a readable ONNX file ({type(e).__name__}: {e})") from e
    return {p.key: p.value for p in model.metadata_props}


def graph_output_names(path: str | os.PathLike) -> list[str]:
    import onnx

    return [o.name for o in onnx.load(str(path), load_external_data=False).graph.output]


def check_graph_matches(path: str | os.PathLike, meta: dict[str, str], output_names: list[str],
                        head_names: list[str], digest: str) -> None:
    """Raise :class:`GraphMismatch` unless an exported graph fits the loaded weights and heads.

    Checks, in order: it is an ivif export; its outputs are exactly ``head_names`` in order
    (both the metadata and the real graph outputs); its weights checksum equals ``digest``.
    """
    hint = "re-export it with `ivif export onnx` for this configuration"
    if meta.get(META_FORMAT) != FORMAT:
        raise GraphMismatch(f"{path} was not written by `ivif export onnx` (no '{META_FORMAT}: {FORMAT}' "
                            f"metadata); {hint}")
    try:
        meta_heads = json.loads(meta.get(META_HEADS, "null"))
    except json.JSONDecodeError:
        meta_heads = None
    if meta_heads != list(head_names) or list(output_names) != list(head_names):
        raise GraphMismatch(f"{path} has heads {meta_heads} (outputs {list(output_names)}) but the configured "
                            f"tasks need heads {list(head_names)} in that order; {hint}")
    got = meta.get(META_WEIGHTS, "")
    if got != digest:
        raise GraphMismatch(f"{path} was exported from other weights (weights sha256 {got[:12] or 'missing'}... "
                            f"vs loaded {digest[:12]}...); {hint}")


@dataclass
class OnnxExport:
    """What :func:`export_onnx` wrote."""

    path: Path
    sidecar: Path
    head_names: list[str]
    weights_sha256: str
    onnx_sha256: str
    parity: dict[str, float] = field(default_factory=dict)  # "NxHxW" -> max abs diff ORT vs torch


def parity_check(graph: Any, onnx_path: str | os.PathLike, sizes: list[tuple[int, int, int]],
                 seed: int = 0, threads: int = 2) -> dict[str, float]:
    """Max abs difference between ONNX Runtime and eager torch, per (N, H, W), over all outputs."""
    import onnxruntime as ort
    import torch

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    sess = ort.InferenceSession(str(onnx_path), so, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(seed)
    out = {}
    for n, h, w in sizes:
        ir = rng.random((n, 1, h, w), dtype=np.float32)
        y = rng.random((n, 1, h, w), dtype=np.float32)
        with torch.inference_mode():
            ref = graph(torch.from_numpy(ir), torch.from_numpy(y))
        got = sess.run(None, {"ir": ir, "y": y})
        out[f"{n}x{h}x{w}"] = float(max(np.abs(g - r.numpy()).max() for g, r in zip(got, ref)))
    return out


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

    if opset < 17:
        raise ExportError(f"opset {opset} is too old; use 17 or newer")
    graph = graph.eval()
    head_names = list(graph.head_names)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / name
    tmp = path.with_suffix(".tmp.onnx")
    h, w = trace_size
    args = (torch.rand(1, 1, h, w), torch.rand(1, 1, h, w))
    _torch_onnx_export(graph, args, tmp, list(INPUT_NAMES), head_names, opset)
    model = onnx.load(str(tmp))
    if slim:
        model = simplify(model)
    digest = weights_digest(graph)
    vfn_cfg = graph.backbone.cfg.to_dict() if hasattr(graph.backbone, "cfg") else {}
    sources = {str(p): file_sha256(p) for p in (source_files or {}) if Path(p).is_file()}
    meta = {META_FORMAT: FORMAT, META_HEADS: json.dumps(head_names),
            META_CONFIG: json.dumps({"vfn": vfn_cfg, "heads": head_names}, sort_keys=True),
            META_WEIGHTS: digest, META_SOURCES: json.dumps(sources, sort_keys=True)}
    set_metadata(model, meta)
    model.producer_name = "ivif_fusion"
    model.producer_version = ivif_fusion.__version__
    onnx.checker.check_model(model)
    onnx.save(model, str(tmp))
    os.replace(tmp, path)
    parity = {}
    if verify:
        parity = parity_check(graph, path, [(1, 96, 128), (2, 120, 72)])
        worst = max(parity.values())
        if worst > PARITY_TOL:
            raise ExportError(f"{path}: ONNX Runtime differs from torch by {worst:.2e} (> {PARITY_TOL}): {parity}")
    onnx_sha = file_sha256(path)
    sidecar = path.with_suffix(".json")
    info = {"onnx": path.name, "onnx_sha256": onnx_sha, "opset": opset, "inputs": list(INPUT_NAMES),
            "outputs": head_names, "dynamic_axes": {"N": "batch", "H": "height", "W": "width"},
            "metadata": meta, "parity_max_abs_diff": parity, "slimmed": slim,
            "versions": {"ivif_fusion": ivif_fusion.__version__, "torch": torch.__version__, "onnx": onnx.__version__},
            "exported": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
    sidecar.write_text(json.dumps(info, indent=2) + "\n")
    log.info("exported %s (heads %s, weights %s...)", path, head_names, digest[:12])
    return OnnxExport(path, sidecar, head_names, digest, onnx_sha, parity)


class _TaskNet:
    """Wraps a task network for export: image batch in, first raw output out (before NMS / argmax)."""

    @staticmethod
    def build(model: Any) -> Any:
        import copy

        import torch

        net = copy.deepcopy(model).eval()
        for m in net.modules():
            # ultralytics heads: return the decoded tensor only, rebuild anchors for each input size
            if hasattr(m, "export") and hasattr(m, "dynamic"):
                m.export, m.dynamic, m.format = True, True, "onnx"

        class Raw(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.net = net

            def forward(self, x: torch.Tensor) -> torch.Tensor:
                out = self.net(x)
                return out[0] if isinstance(out, (tuple, list)) else out

        return Raw().eval()


def task_parity(raw: Any, onnx_path: str | os.PathLike, sizes: list[tuple[int, int, int]], seed: int = 0) -> dict:
    """Max difference ORT vs torch of a task graph, in 0..1 units: |a - b| / max(1, |b|).

    Raw detector outputs hold box coordinates in input pixels; dividing by the magnitude puts
    them on the same 0..1 footing as scores and fused images.
    """
    import onnxruntime as ort
    import torch

    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
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
    import onnx
    import torch

    raw = _TaskNet.build(adapter.model)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"task_{task}.onnx"
    tmp = path.with_suffix(".tmp.onnx")
    stride = int(getattr(adapter, "stride", 32))
    dummy = torch.rand(1, 3, 4 * stride, 5 * stride)
    with torch.inference_mode():
        ndim = raw(dummy).ndim
    dyn = {"images": {0: "N", 2: "H", 3: "W"}, "output": {0: "N", **{d: f"D{d}" for d in range(2, ndim)}}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(raw, (dummy,), str(tmp), input_names=["images"], output_names=["output"],
                          dynamic_axes=dyn, opset_version=opset, do_constant_folding=True, dynamo=False)
    model = simplify(onnx.load(str(tmp)))
    digest = weights_digest(adapter.model)
    cfg = adapter.cfg.to_dict() if hasattr(adapter.cfg, "to_dict") else {}
    meta = {META_FORMAT: FORMAT, "ivif.kind": str(getattr(adapter, "KIND", "")), "ivif.task": task,
            "ivif.classes": json.dumps(list(getattr(adapter.cfg, "classes", []))), "ivif.stride": str(stride),
            META_CONFIG: json.dumps(cfg, sort_keys=True, default=str), META_WEIGHTS: digest,
            META_SOURCES: json.dumps({source: file_sha256(source)} if source and Path(source).is_file() else {})}
    set_metadata(model, meta)
    onnx.save(model, str(tmp))
    os.replace(tmp, path)
    parity = task_parity(raw, path, [(1, 4 * stride, 5 * stride), (2, 6 * stride, 3 * stride)]) if verify else {}
    if parity and max(parity.values()) > PARITY_TOL:
        raise ExportError(f"{path}: ONNX Runtime differs from torch by {max(parity.values()):.2e}: {parity}")
    sidecar = path.with_suffix(".json")
    sidecar.write_text(json.dumps({"onnx": path.name, "onnx_sha256": file_sha256(path), "opset": opset,
                                   "inputs": ["images"], "outputs": ["output"], "metadata": meta,
                                   "parity_max_rel_diff": parity,
                                   "note": "raw network output; letterbox and NMS/argmax stay in the adapter"},
                                  indent=2) + "\n")
    return OnnxExport(path, sidecar, ["output"], digest, file_sha256(path), parity)


def fusion_graph_from_config(pc: Any) -> tuple[Any, list[str]]:
    """The deployment graph the pipeline would run for ``pc`` (PipelineConfig), and its weight files."""
    from ..paths import resolve
    from .pipeline import _load_fusion

    tasks = pc.task_configs()
    graph, _ = _load_fusion(pc, tasks)
    uses_vifa = any(t.customization == "vifa" for t in tasks)
    return graph, [str(resolve(pc.vifa_weights if uses_vifa else pc.backbone_weights))]


# --------------------------------------------------------------------------- TensorRT engines

PRECISIONS = ("fp16", "fp32")


@dataclass(frozen=True)
class Profile:
    """One TensorRT optimization profile: (N, H, W) for min, opt and max (both inputs share it)."""

    min: tuple[int, int, int] = (1, 64, 64)
    opt: tuple[int, int, int] = (1, 480, 640)
    max: tuple[int, int, int] = (1, 1088, 1920)

    def __post_init__(self) -> None:
        for name in ("min", "opt", "max"):
            v = getattr(self, name)
            if len(v) != 3 or any(int(x) < 1 for x in v):
                raise ExportError(f"profile {name} must be three positive ints (N, H, W), got {v}")
            object.__setattr__(self, name, tuple(int(x) for x in v))
        if not all(a <= b <= c for a, b, c in zip(self.min, self.opt, self.max)):
            raise ExportError(f"profile must satisfy min <= opt <= max per dimension, got "
                              f"min={self.min} opt={self.opt} max={self.max}")

    def shapes(self) -> dict[str, tuple[int, int, int, int]]:
        """NCHW shapes for min/opt/max."""
        return {k: (v[0], 1, v[1], v[2]) for k, v in (("min", self.min), ("opt", self.opt), ("max", self.max))}

    def covers(self, n: int, h: int, w: int) -> bool:
        return all(lo <= x <= hi for lo, x, hi in zip(self.min, (n, h, w), self.max))

    @classmethod
    def parse(cls, text: str) -> tuple[int, int, int]:
        """'1x480x640' (N x H x W) -> (1, 480, 640)."""
        try:
            parts = tuple(int(p) for p in text.lower().split("x"))
        except ValueError:
            parts = ()
        if len(parts) != 3:
            raise ExportError(f"expected NxHxW (e.g. 1x480x640), got '{text}'")
        return parts  # type: ignore[return-value]


@dataclass(frozen=True)
class GpuInfo:
    name: str
    compute_capability: str  # "8.7"


@dataclass(frozen=True)
class EngineKey:
    """Everything an engine depends on; any change means a different engine."""

    onnx_sha256: str
    tensorrt_version: str
    gpu_name: str
    compute_capability: str
    precision: str
    profile: Profile

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ExportError(f"precision must be one of {PRECISIONS}, got '{self.precision}'")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["profile"] = {k: list(v) for k, v in d["profile"].items()}
        return d

    @classmethod
    def from_dict(cls, d: dict) -> EngineKey:
        p = d["profile"]
        return cls(d["onnx_sha256"], d["tensorrt_version"], d["gpu_name"], d["compute_capability"], d["precision"],
                   Profile(tuple(p["min"]), tuple(p["opt"]), tuple(p["max"])))

    def digest(self) -> str:
        """Short stable id of the key (file name part)."""
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:16]

    def differences(self, other: EngineKey) -> list[str]:
        """Human-readable fields that differ from ``other`` ('precision fp32 -> fp16')."""
        a, b = other.to_dict(), self.to_dict()
        return [f"{k} {a[k]} -> {b[k]}" for k in b if a[k] != b[k]]


class CorruptEngine(Exception):
    """A cached engine entry cannot be trusted."""


@dataclass
class CacheResult:
    path: Path
    status: str  # "hit" | "built" | "rebuilt-corrupt"
    key: EngineKey
    notes: list[str] = field(default_factory=list)


class EngineCache:
    """Folder of engines keyed by :class:`EngineKey` (see module docstring for the rules)."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root).expanduser()

    def paths(self, key: EngineKey, name: str = "fusion") -> tuple[Path, Path]:
        stem = f"{name}-{key.digest()}"
        return self.root / f"{stem}.engine", self.root / f"{stem}.json"

    def entries(self, name: str = "fusion") -> list[tuple[Path, dict | None]]:
        """(sidecar path, its content or None when unreadable) of every cached engine of ``name``."""
        out = []
        for side in sorted(self.root.glob(f"{name}-*.json")):
            try:
                out.append((side, json.loads(side.read_text())))
            except (OSError, json.JSONDecodeError):
                out.append((side, None))
        return out

    def _check(self, key: EngineKey, engine: Path, side: Path,
               validate: Callable[[bytes], None] | None) -> bytes:
        """Engine bytes of a trusted entry; :class:`CorruptEngine` with the reason otherwise."""
        try:
            info = json.loads(side.read_text())
            cached_key = EngineKey.from_dict(info["key"])
            recorded = info["engine_sha256"]
        except (OSError, json.JSONDecodeError, KeyError, TypeError, ValueError, ExportError) as e:
            raise CorruptEngine(f"sidecar {side.name} unreadable ({type(e).__name__}: {e})") from e
        if cached_key != key:
            raise CorruptEngine(f"sidecar {side.name} holds another key ({'; '.join(key.differences(cached_key))})")
        data = engine.read_bytes()
        if hashlib.sha256(data).hexdigest() != recorded:
            raise CorruptEngine(f"{engine.name} does not match its recorded sha256 (truncated or overwritten)")
        if validate is not None:
            try:
                validate(data)
            except Exception as e:  # noqa: BLE001 - any runtime refusal means the entry is unusable
                raise CorruptEngine(f"{engine.name} cannot be deserialized ({type(e).__name__}: {e})") from e
        return data

    def _remove(self, *paths: Path) -> None:
        for p in paths:
            with contextlib.suppress(FileNotFoundError):
                p.unlink()

    def lookup(self, key: EngineKey, name: str = "fusion",
               validate: Callable[[bytes], None] | None = None) -> Path | None:
        """Path of a trusted engine for ``key``, or None. A corrupt entry is deleted (logged)."""
        engine, side = self.paths(key, name)
        if not engine.is_file() and not side.is_file():
            return None
        try:
            if not engine.is_file():
                raise CorruptEngine(f"{engine.name} missing next to its sidecar")
            self._check(key, engine, side, validate)
        except CorruptEngine as e:
            log.warning("engine cache: corrupt entry %s (%s); deleting it", engine, e)
            self._remove(engine, side)
            raise
        return engine

    def store(self, key: EngineKey, data: bytes, name: str = "fusion", extra: dict | None = None) -> Path:
        """Write engine + sidecar atomically (engine first; the sidecar marks the entry complete)."""
        self.root.mkdir(parents=True, exist_ok=True)
        engine, side = self.paths(key, name)
        for target, payload in ((engine, bytes(data)), (side, None)):
            if payload is None:
                payload = (json.dumps({"key": key.to_dict(), "engine_sha256": hashlib.sha256(data).hexdigest(),
                                       "bytes": len(data), **(extra or {}),
                                       "built": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")},
                                      indent=2) + "\n").encode()
            tmp = target.with_name(target.name + f".tmp{os.getpid()}")
            tmp.write_bytes(payload)
            os.replace(tmp, target)
        return engine

    def get_or_build(self, key: EngineKey, build: Callable[[], bytes], name: str = "fusion",
                     validate: Callable[[bytes], None] | None = None, extra: dict | None = None) -> CacheResult:
        """Reuse a matching engine, or build (and store) one; corrupt entries are rebuilt."""
        notes: list[str] = []
        status = "built"
        try:
            hit = self.lookup(key, name, validate)
        except CorruptEngine as e:
            notes.append(f"corrupt cache entry deleted: {e}")
            status, hit = "rebuilt-corrupt", None
        if hit is not None:
            log.info("engine cache: reusing %s", hit)
            return CacheResult(hit, "hit", key, notes)
        if status == "built":
            for side, info in self.entries(name):
                if info is None or side.stem == f"{name}-{key.digest()}":
                    continue
                try:
                    diff = key.differences(EngineKey.from_dict(info["key"]))
                except (KeyError, TypeError, ValueError, ExportError):
                    continue
                notes.append(f"cached {side.stem} differs: {'; '.join(diff)}")
            for n in notes:
                log.info("engine cache: %s", n)
        log.info("engine cache: building %s engine for %s (%s)", key.precision, name, key.digest())
        data = build()
        if not data:
            raise ExportError("the engine builder returned no data")
        path = self.store(key, data, name, extra)
        return CacheResult(path, status, key, notes)


def tensorrt_version() -> str:
    """Installed TensorRT version; :class:`BackendUnavailable` when the package is missing."""
    try:
        import tensorrt as trt  # noqa: PLC0415 - optional, Jetson / GPU machines only
    except ImportError as e:
        raise BackendUnavailable("the 'tensorrt' Python package is not installed (JetPack ships it; "
                                 "on x86 use NVIDIA's wheels)") from e
    return str(trt.__version__)


def gpu_info(device: int = 0) -> GpuInfo:
    """Name and compute capability of a CUDA GPU; :class:`BackendUnavailable` when there is none.

    Uses torch's CUDA runtime when present, else ``nvidia-smi``.
    """
    try:
        import torch

        if torch.cuda.is_available():
            major, minor = torch.cuda.get_device_capability(device)
            return GpuInfo(torch.cuda.get_device_name(device), f"{major}.{minor}")
    except Exception:  # noqa: BLE001 - a broken CUDA install is the same as no GPU here
        pass
    import shutil
    import subprocess

    if shutil.which("nvidia-smi"):
        try:
            out = subprocess.run(["nvidia-smi", "--query-gpu=name,compute_cap", "--format=csv,noheader"],
                                 capture_output=True, text=True, timeout=10, check=True).stdout.splitlines()
            name, cc = (s.strip() for s in out[device].split(","))
            return GpuInfo(name, cc)
        except (subprocess.SubprocessError, IndexError, ValueError, OSError):
            pass
    raise BackendUnavailable("no CUDA GPU found (torch.cuda unavailable and nvidia-smi gives no GPU)")


def build_trt_engine(onnx_path: str | os.PathLike, precision: str = "fp16", profile: Profile | None = None,
                     workspace_mib: int = 1024) -> bytes:
    """Serialized TensorRT engine for an ONNX file (TensorRT 8.6 / 10 Python API)."""
    if precision not in PRECISIONS:
        raise ExportError(f"precision must be one of {PRECISIONS}, got '{precision}'")
    tensorrt_version()
    import tensorrt as trt

    profile = profile or Profile()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    major = int(trt.__version__.split(".")[0])
    flags = 0 if major >= 10 else 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errs = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ExportError(f"TensorRT cannot parse {onnx_path}: {errs}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mib << 20)
    if precision == "fp16":
        if not builder.platform_has_fast_fp16:
            log.warning("this GPU has no fast FP16; building FP16 anyway as requested")
        config.set_flag(trt.BuilderFlag.FP16)
    opt = builder.create_optimization_profile()
    shapes = profile.shapes()
    for i in range(network.num_inputs):
        opt.set_shape(network.get_input(i).name, shapes["min"], shapes["opt"], shapes["max"])
    config.add_optimization_profile(opt)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise ExportError(f"TensorRT failed to build an engine from {onnx_path} (see the TensorRT log above)")
    return bytes(serialized)


def trt_validator() -> Callable[[bytes], None]:
    """Deserialization check for cached engines (raises when the runtime refuses the bytes)."""
    import tensorrt as trt

    runtime = trt.Runtime(trt.Logger(trt.Logger.ERROR))

    def validate(data: bytes) -> None:
        if runtime.deserialize_cuda_engine(data) is None:
            raise CorruptEngine("TensorRT refused to deserialize the engine")

    return validate


def engine_key_for(onnx_path: str | os.PathLike, precision: str, profile: Profile,
                   gpu: GpuInfo | None = None, trt_version: str | None = None) -> EngineKey:
    """The cache key of an engine built from ``onnx_path`` here (GPU and TensorRT probed unless given)."""
    trt_version = trt_version or tensorrt_version()
    gpu = gpu or gpu_info()
    return EngineKey(file_sha256(onnx_path), trt_version, gpu.name, gpu.compute_capability, precision, profile)


def ensure_engine(onnx_path: str | os.PathLike, cache_dir: str | os.PathLike, precision: str = "fp16",
                  profile: Profile | None = None, workspace_mib: int = 1024) -> CacheResult:
    """Engine for ``onnx_path`` from the cache, built when missing/mismatched/corrupt (needs TensorRT + GPU)."""
    profile = profile or Profile()
    key = engine_key_for(onnx_path, precision, profile)
    name = Path(onnx_path).stem
    return EngineCache(cache_dir).get_or_build(
        key, lambda: build_trt_engine(onnx_path, precision, profile, workspace_mib), name=name,
        validate=trt_validator(), extra={"onnx": str(Path(onnx_path).resolve())})
