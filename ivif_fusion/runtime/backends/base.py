"""The backend interface and the registry the backend modules add themselves to."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import numpy as np

from ...errors import UserError


class BackendUnavailable(UserError):
    """This backend cannot run here (package, file or device missing, or mismatched)."""


class FusionBackend(Protocol):
    name: str
    head_names: list[str]

    def run(self, thermal: np.ndarray, y: np.ndarray) -> tuple[dict[str, np.ndarray], dict[str, float]]:
        """Fused Y per head for (N, 1, H, W) float32 inputs, and stage timings in ms."""
        ...


# name -> factory(graph, cfg) -> FusionBackend; raises BackendUnavailable when it cannot run here.
REGISTRY: dict[str, Callable] = {}


def register(name: str) -> Callable:
    """Decorator: register a backend factory under ``name``."""
    def deco(factory: Callable) -> Callable:
        REGISTRY[name] = factory
        return factory
    return deco
