"""What happens to every frame after decoding, counted the same way by the node and by replay.

:class:`PairAccounting` owns the :class:`~ivif_fusion.runtime.sync.Synchronizer` and counts, under
one lock, what becomes of the pairs it emits, so every snapshot balances per stream::

    received == paired + sum(dropped by reason) + pending

``paired`` counts frames of pairs that went through the pipeline and whose outputs went out;
``pending`` counts frames still waiting in the synchronizer queues or in a pair that was emitted
and is not finished yet. A pair the pipeline failed on is two drops (PIPELINE_ERROR or
SIZE_MISMATCH), one per stream. Replay processes every emitted pair in turn.

:class:`LatestPairAccounting` adds the node's hand-over to its inference worker: a
latest-pair-wins :class:`~ivif_fusion.runtime.sync.LatestPairSlot`; a pair replaced in the slot
before the worker took it is dropped as SUPERSEDED, one left there at shutdown as UNFLUSHED.

Time jumps (:mod:`ivif_fusion.runtime.time_jump`): with ``time_jump_s`` > 0, every decoded frame
passes a :class:`~ivif_fusion.runtime.time_jump.TimeJumpGuard` before the synchronizer. When a
stream's stamps go back by ``time_jump_s`` or more, the synchronizer is replaced by a fresh one
(``make_sync``) that continues its counters, the frames it held (and, for the node, the pair
waiting in the slot) are dropped as TIME_JUMP, ``on_jump(event, drops)`` is called and pairing
resumes with the new stamps; frames still on the old timeline are TIME_JUMP drops.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping

from ..metrics.latency import StageStats
from ..runtime.sync import STREAMS, LatestPairSlot, Synchronizer, pair_drops
from ..runtime.time_jump import STALE_DETAIL, JumpEvent, TimeJumpGuard, Verdict, restart_synchronizer
from ..types import Drop, DropReason, Frame, Pair


class PairAccounting:
    """Thread-safe pairing and counting of what becomes of each emitted pair (see module docstring)."""

    def __init__(self, sync: Synchronizer, *, time_jump_s: float = 0.0,
                 make_sync: Callable[[], Synchronizer] | None = None,
                 on_jump: Callable[[JumpEvent | None, list[Drop]], None] | None = None) -> None:
        self._lock = threading.Lock()
        self.sync = sync
        self.time_jumps = TimeJumpGuard(time_jump_s if make_sync is not None else 0.0)
        self._make_sync = make_sync
        self._on_jump = on_jump
        self._post: dict[str, dict[DropReason, int]] = {s: {} for s in STREAMS}
        self._processed = 0
        self._in_flight = 0   # pairs emitted and not finished
        self._stages: dict[str, StageStats] = {}

    # ------------------------------------------------------------------ input side

    def push(self, frame: Frame) -> tuple[list[Pair], list[Drop]]:
        """Pair one decoded frame: the pairs it completes (now in flight) and the frames dropped."""
        jumped: list[Drop] | None = None
        with self._lock:
            verdict = self.time_jumps.check(frame.stream, frame.stamp_ns)
            if verdict is Verdict.STALE:
                return [], [self.sync.reject(frame.stream, frame.stamp_ns, DropReason.TIME_JUMP, STALE_DETAIL)]
            if verdict is Verdict.JUMP:
                jumped = self._restart_locked(f"time jump: {self.time_jumps.jumps[-1].describe()}")
            pairs, drops = self.sync.push(frame)
            self._in_flight += len(pairs)
        if jumped is not None and self._on_jump is not None:
            self._on_jump(self.time_jumps.jumps[-1], jumped)
        return pairs, (jumped or []) + drops

    def clock_reset(self) -> list[Drop]:
        """The clock went back (``/clock`` reset): start a new timeline now, as after a stream's jump."""
        if self._make_sync is None:
            return []
        with self._lock:
            self.time_jumps.clock_reset()
            drops = self._restart_locked("time jump: the ROS clock jumped back")
        if self._on_jump is not None:
            self._on_jump(None, drops)
        return drops

    def reject(self, stream: str, stamp_ns: int, reason: DropReason, detail: str = "") -> Drop:
        """Count a message that never became a frame (it could not be read or decoded)."""
        with self._lock:
            return self.sync.reject(stream, stamp_ns, reason, detail)

    def reject_drop(self, drop: Drop) -> Drop:
        """:meth:`reject` for a :class:`Drop` built by the decode step."""
        return self.reject(drop.stream, drop.stamp_ns, drop.reason, drop.detail)

    # ------------------------------------------------------------------ processing side

    def done(self, pair: Pair, reason: DropReason | None = None, detail: str = "") -> list[Drop]:
        """``pair`` is finished: its outputs went out (``reason`` None) or it is dropped with ``reason``."""
        with self._lock:
            return self._finish(pair, reason, detail)

    def flush(self) -> list[Drop]:
        """End of input: frames still queued in the synchronizer become UNFLUSHED drops."""
        with self._lock:
            return self.sync.flush()

    def add_timing(self, stage: str, ms: float) -> None:
        with self._lock:
            self._stages.setdefault(stage, StageStats()).add(float(ms))

    def add_timings(self, timings_ms: Mapping[str, float]) -> None:
        with self._lock:
            for stage, ms in timings_ms.items():
                self._stages.setdefault(stage, StageStats()).add(float(ms))

    # ------------------------------------------------------------------ reading

    def snapshot(self) -> dict:
        """Consistent counters: per stream received/paired/pending/dropped{reason}, pairs, stages."""
        with self._lock:
            streams = {s: {"received": self.sync.counters.received[s], "paired": self._processed,
                           "pending": self.sync.queued(s) + self._in_flight, "dropped": self._dropped(s)}
                       for s in STREAMS}
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

    def per_stream(self, topics: Mapping[str, str]) -> dict[str, dict]:
        """Per stream: topic, received, paired (frames the synchronizer emitted in pairs), fused
        (frames of finished, published pairs), dropped by reason, dropped_total and balanced
        (received == fused + dropped_total with nothing pending)."""
        with self._lock:
            out = {}
            c = self.sync.counters
            for s in STREAMS:
                dropped = self._dropped(s)
                total = sum(dropped.values())
                out[s] = {"topic": topics[s], "received": c.received[s], "paired": c.paired[s],
                          "fused": self._processed, "dropped": dropped, "dropped_total": total,
                          "balanced": c.received[s] == self._processed + total
                          and self.sync.queued(s) + self._in_flight == 0}
            return out

    # ------------------------------------------------------------------ internals

    def _restart_locked(self, detail: str) -> list[Drop]:
        """Fresh synchronizer, counters kept; what it held becomes TIME_JUMP (caller holds the lock)."""
        make = self._make_sync if self._make_sync is not None else (lambda: Synchronizer())
        self.sync, drops = restart_synchronizer(self.sync, make, detail)
        return drops

    def _dropped(self, stream: str) -> dict[str, int]:
        """Drops of ``stream`` by reason value (synchronizer and post-sync), sorted by reason."""
        dropped: dict[str, int] = {}
        for src in (self.sync.counters.dropped[stream], self._post[stream]):
            for r, n in src.items():
                dropped[r.value] = dropped.get(r.value, 0) + n
        return dict(sorted(dropped.items()))

    def _finish(self, pair: Pair, reason: DropReason | None, detail: str) -> list[Drop]:
        self._in_flight -= 1
        if reason is None:
            self._processed += 1
            return []
        drops = pair_drops(pair, reason, detail)
        for d in drops:
            self._post[d.stream][reason] = self._post[d.stream].get(reason, 0) + 1
        return drops


class LatestPairAccounting(PairAccounting):
    """:class:`PairAccounting` with the node's latest-pair-wins hand-over to one inference worker."""

    def __init__(self, sync: Synchronizer, *, time_jump_s: float = 0.0,
                 make_sync: Callable[[], Synchronizer] | None = None,
                 on_jump: Callable[[JumpEvent | None, list[Drop]], None] | None = None) -> None:
        super().__init__(sync, time_jump_s=time_jump_s, make_sync=make_sync, on_jump=on_jump)
        self.slot = LatestPairSlot()

    def hand_over(self, frame: Frame) -> list[Drop]:
        """Pair one decoded frame and put new pairs in the slot. Returns the frames dropped."""
        pairs, drops = self.push(frame)
        with self._lock:
            for pair in pairs:
                old = self.slot.put(pair)
                if old is not None:
                    drops += self._finish(old, DropReason.SUPERSEDED, "a newer pair arrived before inference")
        return drops

    def take(self, timeout: float | None = None) -> Pair | None:
        """The newest pair, waiting up to ``timeout`` s; None on timeout or after :meth:`close`."""
        return self.slot.get(timeout)

    def close(self) -> list[Drop]:
        """Shutdown: wake the worker; a pair left in the slot and queued frames become UNFLUSHED."""
        with self._lock:
            left = self.slot.close()
            drops = [] if left is None else self._finish(left, DropReason.UNFLUSHED, "node shut down before inference")
            return drops + self.sync.flush()

    def _restart_locked(self, detail: str) -> list[Drop]:
        drops = super()._restart_locked(detail)
        waiting = self.slot.get(0)
        return drops + ([] if waiting is None else self._finish(waiting, DropReason.TIME_JUMP, detail))
