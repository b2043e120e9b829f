"""TensorRT backend (Jetson / NVIDIA GPU): an engine built from ``<onnx_dir>/fusion.onnx``.

``tensorrt`` is imported lazily: without the package, a CUDA GPU, or torch with CUDA (used for
device buffers and the stream), the factory raises :class:`BackendUnavailable` and
``backends.select`` falls back. The ONNX graph is checked against the loaded weights and heads
exactly as for ONNX Runtime, then the engine comes from the engine cache
(:func:`ivif_fusion.runtime.tensorrt_engine.ensure_engine`, ``pipeline.engine_cache_dir``): reused when
its key matches, built otherwise (FP16, default profile; ``ivif export tensorrt`` pre-builds it
with other options). Timing stage: ``backbone+heads`` (one engine execution, synchronized).
"""

from __future__ import annotations

import logging
import time

import numpy as np

from ...paths import resolve
from ..engine_cache import Profile
from ..graph_check import ONNX_NAME, check_onnx_file, weights_digest
from ..tensorrt_engine import ensure_engine, gpu_info, tensorrt_version
from .base import BackendUnavailable, register

log = logging.getLogger("ivif_fusion.backends")


class TensorRTBackend:
    name = "tensorrt"

    def __init__(self, engine_path, head_names: list[str], profile, device: int = 0) -> None:  # noqa: ANN001
        import tensorrt as trt
        import torch

        self.torch = torch
        self.device = torch.device("cuda", device)
        self.profile = profile
        self.head_names = list(head_names)
        runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        with open(engine_path, "rb") as f:
            self.engine = runtime.deserialize_cuda_engine(f.read())
        if self.engine is None:
            raise BackendUnavailable(f"TensorRT cannot deserialize {engine_path}")
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        outputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        if sorted(outputs) != sorted(self.head_names):
            raise BackendUnavailable(f"engine {engine_path} has outputs {outputs}, the configured heads are "
                                     f"{self.head_names}; re-export with `ivif export onnx` and `ivif export tensorrt`")
        self.context = self.engine.create_execution_context()
        self.stream = torch.cuda.Stream(self.device)

    def run(self, thermal: np.ndarray, y: np.ndarray) -> tuple[dict[str, np.ndarray], dict[str, float]]:
        torch = self.torch
        n, _, h, w = thermal.shape
        if not self.profile.covers(n, h, w):
            raise BackendUnavailable(f"input {n}x{h}x{w} is outside the engine profile "
                                     f"min {self.profile.min} .. max {self.profile.max}; rebuild with "
                                     "`ivif export tensorrt --min/--opt/--max`")
        t0 = time.perf_counter()
        with torch.cuda.stream(self.stream):
            feeds = {"ir": torch.from_numpy(np.ascontiguousarray(thermal, np.float32)).to(self.device, non_blocking=True),
                     "y": torch.from_numpy(np.ascontiguousarray(y, np.float32)).to(self.device, non_blocking=True)}
            outs = {}
            for name, t in feeds.items():
                self.context.set_input_shape(name, tuple(t.shape))
                self.context.set_tensor_address(name, t.data_ptr())
            for name in self.head_names:
                shape = tuple(self.context.get_tensor_shape(name))
                outs[name] = torch.empty(shape, dtype=torch.float32, device=self.device)
                self.context.set_tensor_address(name, outs[name].data_ptr())
            if not self.context.execute_async_v3(self.stream.cuda_stream):
                raise RuntimeError("TensorRT execution failed")
            result = {k: v.cpu().numpy() for k, v in outs.items()}
        self.stream.synchronize()
        return result, {"backbone+heads": (time.perf_counter() - t0) * 1e3}


@register("tensorrt")
def _factory(graph, cfg) -> TensorRTBackend:  # noqa: ANN001
    import torch

    tensorrt_version()  # BackendUnavailable without the package
    if not torch.cuda.is_available():
        gpu_info()  # names the real reason (no GPU at all) when there is none
        raise BackendUnavailable("a GPU is present but torch has no CUDA support (needed for device buffers)")
    onnx_path = resolve(cfg.onnx_dir) / ONNX_NAME
    head_names = list(graph.head_names)
    check_onnx_file(onnx_path, head_names, weights_digest(graph))
    profile = Profile()
    res = ensure_engine(onnx_path, resolve(cfg.engine_cache_dir), "fp16", profile)
    log.info("tensorrt: engine %s (%s)", res.path, res.status)
    return TensorRTBackend(res.path, head_names, profile)
