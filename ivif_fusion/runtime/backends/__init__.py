"""Fusion backends behind one interface (torch, onnxruntime, tensorrt) and their selection.

A backend runs the deployment graph (:class:`ivif_fusion.models.heads.MultiHeadFusion`):
``run(ir, y) -> (outputs, timings_ms)`` with ``ir``/``y`` float32 (N, 1, H, W) numpy arrays in
0..1 and ``outputs`` a dict head name -> (N, 1, H, W) float32 array.
"""

from __future__ import annotations

import logging

from .base import REGISTRY, BackendUnavailable, FusionBackend, register

log = logging.getLogger("ivif_fusion.backends")


def _load_all() -> None:
    """Import every backend module so it registers itself (optional packages load lazily inside them)."""
    from . import onnxruntime_backend, tensorrt_backend, torch_backend  # noqa: F401


def select(preference: list[str], graph, cfg, notes: list[str] | None = None) -> FusionBackend:  # noqa: ANN001
    """First backend in ``preference`` that can run; each skipped one is logged with its reason."""
    _load_all()
    reasons = []
    for name in preference:
        factory = REGISTRY.get(name)
        if factory is None:
            reasons.append(f"{name}: unknown backend (known: {sorted(REGISTRY)})")
            continue
        try:
            backend = factory(graph, cfg)
        except BackendUnavailable as e:
            reasons.append(f"{name}: {e}")
            log.warning("backend %s unavailable (%s); falling back", name, e)
            continue
        if notes is not None:
            notes.extend(reasons)
        return backend
    raise BackendUnavailable("no usable backend: " + "; ".join(reasons))


__all__ = ["REGISTRY", "BackendUnavailable", "FusionBackend", "register", "select"]
