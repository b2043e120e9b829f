"""Latency statistics of timed stages (milliseconds), shared by benchmarks, replay and the node.

- :func:`latency_summary`: n, median, p90, mean and max of a list of samples (numpy's linear
  percentile), for runs that keep every sample (benchmarks, replay).
- :class:`StageStats`: running count, mean, max and last value, for the node, which must not keep
  an ever-growing list of samples.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np


def latency_summary(values: Iterable[float]) -> dict:
    """``{"n", "median", "p90", "mean", "max"}`` of ``values``; ``{"n": 0}`` when there are none."""
    a = np.asarray(list(values), dtype=np.float64)
    if a.size == 0:
        return {"n": 0}
    return {"n": int(a.size), "median": float(np.median(a)), "p90": float(np.percentile(a, 90)),
            "mean": float(a.mean()), "max": float(a.max())}


def stage_summaries(timings: Mapping[str, Iterable[float]]) -> dict[str, dict]:
    """:func:`latency_summary` per stage, leaving out stages without samples."""
    out = {}
    for stage, values in timings.items():
        summary = latency_summary(values)
        if summary["n"]:
            out[stage] = summary
    return out


@dataclass
class StageStats:
    """Running latency statistics of one stage, in milliseconds."""

    count: int = 0
    total_ms: float = 0.0
    max_ms: float = 0.0
    last_ms: float = 0.0

    def add(self, ms: float) -> None:
        self.count += 1
        self.total_ms += ms
        self.max_ms = max(self.max_ms, ms)
        self.last_ms = ms

    @property
    def mean_ms(self) -> float:
        return self.total_ms / self.count if self.count else 0.0
