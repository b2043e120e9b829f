"""TensorRT engines for exported graphs: build one, probe the GPU, and go through the engine cache.

:func:`build_trt_engine` parses the ONNX and builds a serialized engine (FP16 by default, FP32
on request) with one optimization profile (min/opt/max N, H, W). :func:`ensure_engine` returns
the cached engine for an ONNX file, building it when missing, mismatched or corrupt
(:class:`~.engine_cache.EngineCache`). TensorRT is imported lazily: without it (or without a
CUDA GPU) the probes raise :class:`BackendUnavailable` with the reason.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..models.checkpoint import file_sha256
from .backends.base import BackendUnavailable
from .engine_cache import PRECISIONS, CacheResult, CorruptEngine, EngineCache, EngineKey, Profile
from .onnx_export import ExportError

log = logging.getLogger("ivif_fusion.tensorrt")


@dataclass(frozen=True)
class GpuInfo:
    name: str
    compute_capability: str  # "8.7"


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
