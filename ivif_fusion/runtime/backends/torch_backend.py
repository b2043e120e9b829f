"""Eager PyTorch backend: always available; times the backbone and each head separately."""

from __future__ import annotations

import time

import numpy as np
import torch

from .base import BackendUnavailable, register


class TorchBackend:
    name = "torch"

    def __init__(self, graph, device: str = "cpu", threads: int = 2) -> None:  # noqa: ANN001
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise BackendUnavailable(f"device '{device}' requested but CUDA is not available")
        self.device = torch.device(device)
        self.graph = graph.to(self.device).eval()
        self.head_names = list(graph.head_names)
        if self.device.type == "cpu":
            torch.set_num_threads(threads)

    @torch.inference_mode()
    def run(self, thermal: np.ndarray, y: np.ndarray) -> tuple[dict[str, np.ndarray], dict[str, float]]:
        t0 = time.perf_counter()
        ir_t = torch.from_numpy(np.ascontiguousarray(thermal, dtype=np.float32)).to(self.device)
        y_t = torch.from_numpy(np.ascontiguousarray(y, dtype=np.float32)).to(self.device)
        shared = self.graph.backbone.shared_features(ir_t, y_t)
        t1 = time.perf_counter()
        timings = {"backbone": (t1 - t0) * 1e3}
        out = {}
        for name in self.head_names:
            t = time.perf_counter()
            out[name] = self.graph.head(name, shared).float().cpu().numpy()
            timings[f"head:{name}"] = (time.perf_counter() - t) * 1e3
        return out, timings


@register("torch")
def _factory(graph, cfg) -> TorchBackend:  # noqa: ANN001
    return TorchBackend(graph, cfg.device, cfg.threads)
