"""What the node counts, kept apart from rclpy so it is testable without DDS.

:class:`NodeAccounting` owns the :class:`~ivif_fusion.runtime.sync.Synchronizer` and the
latest-pair-wins :class:`~ivif_fusion.runtime.sync.LatestPairSlot` between the subscription
callbacks and the inference worker, under one lock, so every snapshot balances per stream::

    received == paired + sum(dropped by reason) + pending

``paired`` counts frames of pairs that went through the pipeline and were published;
``pending`` counts frames still waiting in the synchronizer queues or in a pair that is in the
slot or being processed. Pairs replaced in the slot before the worker took them are dropped as
SUPERSEDED, pairs the pipeline failed on as PIPELINE_ERROR (or SIZE_MISMATCH).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from typing import Callable

from ..runtime.sync import STREAMS, LatestPairSlot, Synchronizer, pair_drops
from ..runtime.time_jump import restart_synchronizer
from ..types import Drop, DropReason, Frame, Pair


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


class NodeAccounting:
    """Thread-safe pairing, hand-over to the worker and counters (see module docstring)."""

    def __init__(self, sync: Synchronizer) -> None:
        self._lock = threading.Lock()
        self.sync = sync
        self.slot = LatestPairSlot()
        self._post: dict[str, dict[DropReason, int]] = {s: {} for s in STREAMS}
        self._processed = 0
        self._in_flight = 0   # pairs in the slot or in the worker
        self._stages: dict[str, StageStats] = {}

    # ------------------------------------------------------------------ producer side (callbacks)

    def push(self, frame: Frame) -> list[Drop]:
        """Pair one decoded frame; hands new pairs to the worker. Returns the frames dropped."""
        with self._lock:
            pairs, drops = self.sync.push(frame)
            for pair in pairs:
                self._in_flight += 1
                old = self.slot.put(pair)
                if old is not None:
                    drops += self._finish(old, DropReason.SUPERSEDED, "a newer pair arrived before inference")
            return drops

    def reject(self, stream: str, stamp_ns: int, reason: DropReason, detail: str = "") -> Drop:
        """Count a message that never became a frame (conversion failed)."""
        with self._lock:
            return self.sync.reject(stream, stamp_ns, reason, detail)

    def restart(self, make_sync: Callable[[], Synchronizer], detail: str) -> list[Drop]:
        """Time jump: a fresh synchronizer (counters kept); held frames and a waiting pair become TIME_JUMP."""
        with self._lock:
            self.sync, drops = restart_synchronizer(self.sync, make_sync, detail)
            waiting = self.slot.get(0)
            if waiting is not None:
                drops += self._finish(waiting, DropReason.TIME_JUMP, detail)
            return drops

    # ------------------------------------------------------------------ consumer side (worker)

    def take(self, timeout: float | None = None) -> Pair | None:
        """The newest pair, waiting up to ``timeout`` s; None on timeout or after :meth:`close`."""
        return self.slot.get(timeout)

    def done(self, pair: Pair, reason: DropReason | None = None, detail: str = "") -> list[Drop]:
        """The worker finished ``pair``: published (``reason`` None) or dropped with ``reason``."""
        with self._lock:
            return self._finish(pair, reason, detail)

    def close(self) -> list[Drop]:
        """Shutdown: wake the worker; a pair left in the slot and queued frames become UNFLUSHED."""
        with self._lock:
            drops = []
            left = self.slot.close()
            if left is not None:
                drops += self._finish(left, DropReason.UNFLUSHED, "node shut down before inference")
            drops += self.sync.flush()
            return drops

    def add_timing(self, stage: str, ms: float) -> None:
        with self._lock:
            self._stages.setdefault(stage, StageStats()).add(ms)

    def add_timings(self, timings_ms: dict[str, float]) -> None:
        with self._lock:
            for stage, ms in timings_ms.items():
                self._stages.setdefault(stage, StageStats()).add(float(ms))

    # ------------------------------------------------------------------ reading

    def snapshot(self) -> dict:
        """Consistent counters: per stream received/paired/pending/dropped{reason}, pairs, stages."""
        with self._lock:
            c = self.sync.counters
            streams = {}
            for s in STREAMS:
                dropped: dict[str, int] = {}
                for src in (c.dropped[s], self._post[s]):
                    for r, n in src.items():
                        dropped[r.value] = dropped.get(r.value, 0) + n
                streams[s] = {
                    "received": c.received[s],
                    "paired": self._processed,
                    "pending": self.sync.queued(s) + self._in_flight,
                    "dropped": dict(sorted(dropped.items())),
                }
            return {
                "streams": streams,
                "pairs": {"processed": self._processed, "in_flight": self._in_flight},
                "stages": {k: StageStats(v.count, v.total_ms, v.max_ms, v.last_ms) for k, v in self._stages.items()},
            }

    @staticmethod
    def balanced(snapshot: dict) -> bool:
        """received == paired + dropped + pending for every stream of a :meth:`snapshot`."""
        return all(v["received"] == v["paired"] + sum(v["dropped"].values()) + v["pending"]
                   for v in snapshot["streams"].values())

    # ------------------------------------------------------------------ internals

    def _finish(self, pair: Pair, reason: DropReason | None, detail: str) -> list[Drop]:
        self._in_flight -= 1
        if reason is None:
            self._processed += 1
            return []
        drops = pair_drops(pair, reason, detail)
        for d in drops:
            self._post[d.stream][reason] = self._post[d.stream].get(reason, 0) + 1
        return drops
