"""The backend interface."""

from __future__ import annotations

from typing import Protocol

import numpy as np

from ...errors import UserError


class BackendUnavailable(UserError):
    """This backend cannot run here (package, file or device missing, or mismatched)."""


class FusionBackend(Protocol):
    name: str
    head_names: list[str]

    def run(self, ir: np.ndarray, y: np.ndarray) -> tuple[dict[str, np.ndarray], dict[str, float]]:
        """Fused Y per head for (N, 1, H, W) float32 inputs, and stage timings in ms."""
        ...
