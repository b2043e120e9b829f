"""ONNX Runtime backend (CPU): runs ``<pipeline.onnx_dir>/fusion.onnx`` written by ``ivif export onnx``.

Before use, the graph is checked against what the pipeline loaded (see
:func:`ivif_fusion.runtime.graph_check.check_graph_matches`): it must be an ivif export, its outputs
must be the configured heads in order, and its weights checksum must equal the checksum of the
loaded weights. Any failure raises :class:`BackendUnavailable` with the reason, so
``backends.select`` logs it and falls back (e.g. to torch).

Timing: the whole graph runs as one ONNX Runtime call, reported as the single stage
``backbone+heads`` (splitting it would add a copy of the shared feature map per head and
lose ORT's cross-node fusion). ``ivif bench`` times backbone and heads separately with
split graphs.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import numpy as np

from ...paths import resolve
from ..graph_check import ONNX_NAME, check_onnx_file, weights_digest
from .base import BackendUnavailable, register

log = logging.getLogger("ivif_fusion.backends")

STAGE = "backbone+heads"


def session_options(threads: int):  # noqa: ANN201 - onnxruntime imported lazily
    """CPU session options: ``threads`` intra-op threads, no spinning, sequential, every graph optimization.

    ORT_ENABLE_ALL includes the NCHWc layout transform (blocked convolutions with fused
    activations and residual adds), which is where most of the CPU speed-up over eager torch
    comes from.
    """
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = int(threads)
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3
    # No busy-waiting between runs: the CPU is shared with the task networks and other nodes
    # (torch is likewise run with OMP_WAIT_POLICY=PASSIVE by scripts/env.sh).
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return so


class OnnxRuntimeBackend:
    name = "onnxruntime"

    def __init__(self, path: str | os.PathLike, head_names: list[str], weights_sha256: str,
                 threads: int = 2) -> None:
        import onnxruntime as ort

        self.path = Path(path)
        check_onnx_file(self.path, head_names, weights_sha256)
        try:
            self.session = ort.InferenceSession(str(self.path), session_options(threads),
                                                providers=["CPUExecutionProvider"])
        except Exception as e:  # noqa: BLE001 - ORT raises its own exception types
            raise BackendUnavailable(f"ONNX Runtime cannot load {self.path} ({type(e).__name__}: {e})") from e
        self.head_names = list(head_names)
        self.threads = threads
        log.info("onnxruntime %s: %s, %d thread(s)", ort.__version__, self.path, threads)

    def run(self, thermal: np.ndarray, y: np.ndarray) -> tuple[dict[str, np.ndarray], dict[str, float]]:
        """Fused Y per head for (N, 1, H, W) float32 inputs; timings ``{'backbone+heads': ms}``."""
        t0 = time.perf_counter()
        feed = {"ir": np.ascontiguousarray(thermal, dtype=np.float32), "y": np.ascontiguousarray(y, dtype=np.float32)}
        outs = self.session.run(self.head_names, feed)
        return dict(zip(self.head_names, outs)), {STAGE: (time.perf_counter() - t0) * 1e3}


@register("onnxruntime")
def _factory(graph, cfg) -> OnnxRuntimeBackend:  # noqa: ANN001
    return OnnxRuntimeBackend(resolve(cfg.onnx_dir) / ONNX_NAME, list(graph.head_names), weights_digest(graph),
                              cfg.threads)
