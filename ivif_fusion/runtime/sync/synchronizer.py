"""The two-stream synchronizer: a pairing policy for "thermal" and "visible", with per-frame accounting.

:class:`Synchronizer` runs one of four policies (``policy`` x ``mode``, see docs/pairing.md) and
counts every frame: each received frame ends exactly once as part of an emitted :class:`Pair` or
as one :class:`Drop` with a reason, so ``received == paired + dropped + queued`` holds after
every call.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

from ...types import Drop, DropReason, Frame, Pair
from .approximate import ApproximateTimePolicy
from .entries import POLICY_NAMES, seconds_to_ns
from .exact import ExactTimePolicy
from .rclpy_policies import RclpyApproximatePolicy, RclpyExactPolicy

STREAMS = ("thermal", "visible")
MODES = ("approximate", "exact")

Policy = ApproximateTimePolicy | ExactTimePolicy | RclpyApproximatePolicy | RclpyExactPolicy


@dataclass
class SyncCounters:
    """Per-stream accounting: received = paired + sum(dropped) + queued."""

    received: dict[str, int] = field(default_factory=lambda: dict.fromkeys(STREAMS, 0))
    paired: dict[str, int] = field(default_factory=lambda: dict.fromkeys(STREAMS, 0))
    dropped: dict[str, dict[DropReason, int]] = field(default_factory=lambda: {s: {} for s in STREAMS})

    def add_drop(self, stream: str, reason: DropReason) -> None:
        self.dropped[stream][reason] = self.dropped[stream].get(reason, 0) + 1

    def total_dropped(self, stream: str) -> int:
        return sum(self.dropped[stream].values())

    @property
    def pairs(self) -> int:
        """Number of emitted pairs (each uses one frame of every stream)."""
        return self.paired[STREAMS[0]]

    def as_dict(self) -> dict:
        """Plain-data form for reports and diagnostics (reason values as keys)."""
        return {
            "received": dict(self.received),
            "paired": dict(self.paired),
            "dropped": {s: {r.value: n for r, n in sorted(d.items(), key=lambda kv: kv[0].value)}
                        for s, d in self.dropped.items()},
        }


def make_policy(policy: str, mode: str, queue_size: int, slop_ns: int | None, *, age_penalty: float = 0.1,
                lower_bounds_ns: list[int] | None = None, slop_inclusive: bool = True) -> Policy:
    """The policy object for ``policy`` (optimal | rclpy) and ``mode`` (approximate | exact), two topics."""
    if policy not in POLICY_NAMES:
        raise ValueError(f"sync policy must be one of {POLICY_NAMES}, got {policy!r}")
    if mode not in MODES:
        raise ValueError(f"sync mode must be one of {MODES}, got {mode!r}")
    n = len(STREAMS)
    if mode == "exact":
        return ExactTimePolicy(n, queue_size) if policy == "optimal" else RclpyExactPolicy(n, queue_size)
    if policy == "rclpy":
        if slop_ns is None:
            raise ValueError("the rclpy policy needs a slop (slop_s is None)")
        return RclpyApproximatePolicy(n, queue_size, slop_ns)
    if slop_ns is not None and not slop_inclusive:
        if slop_ns == 0:
            raise ValueError("a strict slop bound of 0 s pairs nothing; use slop_inclusive=True or slop_s > 0")
        slop_ns -= 1  # span < slop  <=>  span <= slop - 1 ns
    return ApproximateTimePolicy(n, queue_size, slop_ns, age_penalty, lower_bounds_ns)


class Synchronizer:
    """Pairs "thermal" and "visible" frames and accounts for every frame.

    Args:
        mode: ``"approximate"`` or ``"exact"`` (equal stamps only).
        queue_size: optimal approximate: frames held per stream; optimal exact: distinct pending
            stamps; rclpy: stamps held per stream.
        slop_s: largest span of a pair in seconds (approximate mode). Optimal: inclusive by
            default, ``None`` = unbounded. rclpy: strict (span < slop), required.
        policy: ``"optimal"`` (C++ message_filters ApproximateTime / ExactTime) or ``"rclpy"``
            (Python ApproximateTimeSynchronizer / TimeSynchronizer).
        age_penalty: optimal approximate only; C++ default 0.1.
        inter_message_lower_bound_s: optimal approximate only; optional {stream: seconds}, the
            smallest possible gap between two frames of that stream (pairs go out sooner, never differ).
        slop_inclusive: optimal approximate only; False makes the bound strict (span < slop).
        reject_late: robot-friendly opt-in, off in both reference policies: a frame whose stamp is
            not newer than its stream's last accepted stamp is dropped before the policy sees it
            (DUPLICATE when the stamp was among the last ``recent_stamps`` accepted, else OUT_OF_ORDER).
        recent_stamps: how many recent stamps per stream ``reject_late`` remembers.

    ``push`` and ``flush`` are not thread-safe; call them from one thread (or under a lock).
    """

    def __init__(self, mode: str = "approximate", queue_size: int = 10, slop_s: float | None = 0.05, *,
                 policy: str = "optimal", age_penalty: float = 0.1,
                 inter_message_lower_bound_s: dict[str, float] | None = None, slop_inclusive: bool = True,
                 reject_late: bool = False, recent_stamps: int = 64) -> None:
        if slop_s is not None and slop_s < 0:
            raise ValueError(f"slop_s must be >= 0, got {slop_s}")
        bounds = inter_message_lower_bound_s or {}
        unknown = set(bounds) - set(STREAMS)
        if unknown:
            raise ValueError(f"inter_message_lower_bound_s: unknown streams {sorted(unknown)}")
        self.mode = mode
        self.policy = policy
        self.queue_size = queue_size
        self.slop_s = slop_s
        self.slop_ns = None if slop_s is None else seconds_to_ns(slop_s)
        self.reject_late = reject_late
        self._policy = make_policy(policy, mode, queue_size, self.slop_ns, age_penalty=age_penalty,
                                   lower_bounds_ns=[seconds_to_ns(bounds.get(s, 0.0)) for s in STREAMS],
                                   slop_inclusive=slop_inclusive)
        self.counters = SyncCounters()
        self._last_stamp: dict[str, int | None] = dict.fromkeys(STREAMS)
        self._recent: dict[str, deque[int]] = {s: deque(maxlen=recent_stamps) for s in STREAMS}

    @classmethod
    def from_config(cls, cfg: Any) -> Synchronizer:
        """Build from a :class:`ivif_fusion.config.SyncConfig`."""
        return cls(cfg.mode, cfg.queue_size, cfg.slop_s, policy=cfg.policy, age_penalty=cfg.age_penalty,
                   slop_inclusive=cfg.slop_inclusive, reject_late=cfg.reject_late)

    # ------------------------------------------------------------------ API

    def push(self, frame: Frame) -> tuple[list[Pair], list[Drop]]:
        """Add one frame; return the pairs emitted and the frames dropped because of it.

        ``frame.stream`` must be "thermal" or "visible". ``frame.seq`` is set to the frame's arrival
        index within its stream when it is negative.
        """
        stream = frame.stream
        if stream not in STREAMS:
            raise ValueError(f"frame.stream must be one of {STREAMS}, got {stream!r}")
        stamp = int(frame.stamp_ns)
        if frame.seq < 0:
            frame.seq = self.counters.received[stream]
        self.counters.received[stream] += 1
        if self.reject_late:
            late = self._late_drop(stream, stamp)
            if late is not None:
                return [], [late]
        sets, pdrops = self._policy.add(STREAMS.index(stream), stamp, frame)
        pairs = []
        for thermal, visible in sets:
            for st in STREAMS:
                self.counters.paired[st] += 1
            pairs.append(Pair(thermal=thermal[1], visible=visible[1]))
        drops = [self._drop(STREAMS[i], e[0], reason, detail) for i, e, reason, detail in pdrops]
        return pairs, drops

    def reject(self, stream: str, stamp_ns: int, reason: DropReason, detail: str = "") -> Drop:
        """Count a frame that never reached the synchronizer (e.g. it failed to decode)."""
        if stream not in STREAMS:
            raise ValueError(f"stream must be one of {STREAMS}, got {stream!r}")
        self.counters.received[stream] += 1
        return self._drop(stream, int(stamp_ns), reason, detail)

    def flush(self) -> list[Drop]:
        """End of stream: every frame still held becomes ``Drop(UNFLUSHED)``.

        A pending optimal candidate is not emitted: without the next frames it was never proven to
        be the best set, and the C++ policy would not have emitted it either.
        """
        return [self._drop(STREAMS[i], e[0], DropReason.UNFLUSHED, "still queued at end of stream")
                for i, e in self._policy.clear()]

    def queued(self, stream: str) -> int:
        """Frames of ``stream`` currently held (waiting or under examination)."""
        return self._policy.held(STREAMS.index(stream))

    def balanced(self) -> bool:
        """True when, per stream, received == paired + dropped + queued."""
        c = self.counters
        return all(c.received[s] == c.paired[s] + c.total_dropped(s) + self.queued(s) for s in STREAMS)

    # ------------------------------------------------------------------ internals

    def _late_drop(self, stream: str, stamp: int) -> Drop | None:
        last = self._last_stamp[stream]
        if last is not None and stamp <= last:
            if stamp in self._recent[stream]:
                return self._drop(stream, stamp, DropReason.DUPLICATE, f"stamp {stamp} already received on {stream}")
            return self._drop(stream, stamp, DropReason.OUT_OF_ORDER,
                              f"stamp {stamp} older than last accepted {last} on {stream}")
        self._last_stamp[stream] = stamp
        self._recent[stream].append(stamp)
        return None

    def _drop(self, stream: str, stamp: int, reason: DropReason, detail: str) -> Drop:
        self.counters.add_drop(stream, reason)
        return Drop(stream=stream, stamp_ns=stamp, reason=reason, detail=detail)
