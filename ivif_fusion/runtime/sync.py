"""Pairing of thermal and RGB frames by timestamp, with an account of every frame.

Two policies, as in ROS ``message_filters``:

- ``approximate``: the ApproximateTime policy (ROS wiki "message_filters/ApproximateTime").
  Sets are built around a *pivot* (the topic whose head message is the latest); among the
  candidate sets that end at the pivot, the one with the smallest time span is emitted, every
  message is used at most once, sets never cross, and messages older than an emitted set are
  discarded. ``queue_size`` bounds each topic's queue. Optional: ``slop`` (the rclpy
  ``ApproximateTimeSynchronizer`` meaning: a set is valid only if its span <= slop; the C++
  ``setMaxIntervalDuration``), an inter-message lower bound per topic (lets a set be proven
  optimal before the next message arrives), and the age penalty.
- ``exact``: the ExactTime policy: only equal stamps pair; when a stamp completes, every
  pending frame with an older stamp is dropped.

:class:`Synchronizer` wraps either policy for the two streams "thermal" and "visible", rejects
out-of-order and duplicate frames, and counts every frame: each received frame ends exactly
once as part of an emitted :class:`Pair` or as one :class:`Drop` with a reason (see
docs/pairing.md), so ``received == paired + dropped + queued`` holds after every call.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Iterable

from ..types import Drop, DropReason, Frame, Pair

STREAMS = ("thermal", "visible")

# An entry of a policy queue: (stamp_ns, payload).
Entry = tuple[int, Any]
# A policy drop: (topic index, entry, reason, detail).
PolicyDrop = tuple[int, Entry, DropReason, str]

_NO_PIVOT = -1


class ApproximateTimePolicy:
    """ApproximateTime matching over ``num_topics`` queues of (stamp_ns, payload) entries.

    ``add(topic, stamp_ns, payload)`` returns ``(sets, drops)``: the sets emitted because of this
    message (each a tuple of entries, one per topic) and the entries discarded on the way. Stamps
    of one topic must be strictly increasing (the caller filters the rest).

    Args:
        num_topics: number of input topics (>= 2).
        queue_size: most messages held per topic (waiting or under examination).
        max_interval_ns: largest allowed span of a set (``None``: unbounded, the plain C++ policy).
        age_penalty: later sets' spans are weighted by ``1 + age_penalty`` when compared.
        inter_message_lower_bounds_ns: per topic, a known lower bound on the gap between two
            consecutive messages (0: unknown); never changes the output, only emits sooner.
    """

    def __init__(self, num_topics: int, queue_size: int, max_interval_ns: int | None = None,
                 age_penalty: float = 0.0, inter_message_lower_bounds_ns: Iterable[int] | None = None) -> None:
        if num_topics < 2:
            raise ValueError("ApproximateTimePolicy needs at least 2 topics")
        if queue_size < 1:
            raise ValueError(f"queue_size must be >= 1, got {queue_size}")
        if age_penalty < 0:
            raise ValueError(f"age_penalty must be >= 0, got {age_penalty}")
        self.n = num_topics
        self.queue_size = queue_size
        self.max_interval_ns = max_interval_ns
        self.age_penalty = age_penalty
        bounds = list(inter_message_lower_bounds_ns) if inter_message_lower_bounds_ns is not None else [0] * num_topics
        if len(bounds) != num_topics or any(b < 0 for b in bounds):
            raise ValueError("inter_message_lower_bounds_ns needs one non-negative value per topic")
        self.lower_bounds = bounds
        self._deques: list[deque[Entry]] = [deque() for _ in range(num_topics)]
        self._past: list[list[Entry]] = [[] for _ in range(num_topics)]  # examined, kept until publish
        self._has_dropped = [False] * num_topics
        self._candidate: list[Entry] | None = None
        self._cand_start = 0
        self._cand_end = 0
        self._pivot = _NO_PIVOT
        self._pivot_time = 0
        self._non_empty = 0
        self._sets: list[tuple[Entry, ...]] = []
        self._drops: list[PolicyDrop] = []

    # ------------------------------------------------------------------ public

    def add(self, topic: int, stamp_ns: int, payload: Any = None) -> tuple[list[tuple[Entry, ...]], list[PolicyDrop]]:
        """Add one message; return what was emitted and dropped as a consequence."""
        self._sets, self._drops = [], []
        q = self._deques[topic]
        q.append((stamp_ns, payload))
        if len(q) == 1:
            self._non_empty += 1
            if self._non_empty == self.n:
                self._process()
        # During _process the queue may briefly hold queue_size + 1 messages; trim now.
        if len(q) + len(self._past[topic]) > self.queue_size:
            # Cancel the ongoing candidate search: put examined messages back first.
            self._non_empty = 0
            for j in range(self.n):
                self._recover(j)
            self._drops.append((topic, q.popleft(), DropReason.QUEUE_OVERFLOW,
                                f"queue of {self.queue_size} full"))
            self._has_dropped[topic] = True
            if self._pivot != _NO_PIVOT:
                self._candidate = None
                self._pivot = _NO_PIVOT
                self._process()
        return self._sets, self._drops

    def pending(self) -> list[tuple[int, Entry]]:
        """Every entry still held, as (topic, entry), oldest first per topic."""
        return [(i, e) for i in range(self.n) for e in [*self._past[i], *self._deques[i]]]

    def held(self, topic: int) -> int:
        return len(self._past[topic]) + len(self._deques[topic])

    def clear(self) -> list[tuple[int, Entry]]:
        """Forget everything; return what was held."""
        held = self.pending()
        self.__init__(  # type: ignore[misc]
            self.n, self.queue_size, self.max_interval_ns, self.age_penalty, self.lower_bounds)
        return held

    # ------------------------------------------------------------------ internals

    def _penalized(self, d: int) -> float:
        return d if self.age_penalty == 0 else d * (1.0 + self.age_penalty)

    def _boundary(self, end: bool, virtual: bool = False) -> tuple[int, int]:
        """(index, time) of the earliest (end=False) or latest (end=True) head.

        Ties: the first topic wins for the start, the last for the end (as in the C++ policy).
        """
        times = [self._virtual_time(i) if virtual else self._deques[i][0][0] for i in range(self.n)]
        idx, t = 0, times[0]
        for i in range(1, self.n):
            if (times[i] < t) != end:
                idx, t = i, times[i]
        return idx, t

    def _virtual_time(self, i: int) -> int:
        # Earliest time the next message of topic i can have (empty queue), or its head.
        q = self._deques[i]
        if q:
            return q[0][0]
        last = self._past[i][-1][0]
        return max(last + self.lower_bounds[i], self._pivot_time)

    def _delete_front(self, i: int, reason: DropReason, detail: str) -> None:
        self._drops.append((i, self._deques[i].popleft(), reason, detail))
        if not self._deques[i]:
            self._non_empty -= 1

    def _move_front_to_past(self, i: int) -> None:
        self._past[i].append(self._deques[i].popleft())
        if not self._deques[i]:
            self._non_empty -= 1

    def _recover(self, i: int, count: int | None = None) -> None:
        past, q = self._past[i], self._deques[i]
        count = len(past) if count is None else count
        for _ in range(count):
            q.appendleft(past.pop())
        if q:
            self._non_empty += 1

    def _make_candidate(self) -> None:
        self._candidate = [q[0] for q in self._deques]
        # Examined messages older than the new (better) candidate can never be used: sets do not cross.
        for i in range(self.n):
            for e in self._past[i]:
                self._drops.append((i, e, DropReason.SUPERSEDED, "a later set matched better"))
            self._past[i].clear()

    def _publish(self) -> None:
        assert self._candidate is not None
        self._sets.append(tuple(self._candidate))
        self._candidate = None
        self._pivot = _NO_PIVOT
        # Examined messages go back to their queues; the published ones are removed.
        self._non_empty = 0
        for i in range(self.n):
            past, q = self._past[i], self._deques[i]
            while past:
                q.appendleft(past.pop())
            q.popleft()
            if q:
                self._non_empty += 1

    def _process(self) -> None:
        while self._non_empty == self.n:
            end_index, end_time = self._boundary(end=True)
            start_index, start_time = self._boundary(end=False)
            for i in range(self.n):
                if i != end_index:
                    # No dropped message of this topic could have been better than its head.
                    self._has_dropped[i] = False
            if self._pivot == _NO_PIVOT:
                if self.max_interval_ns is not None and end_time - start_time > self.max_interval_ns:
                    span_ms, slop_ms = (end_time - start_time) / 1e6, self.max_interval_ns / 1e6
                    self._delete_front(start_index, DropReason.NO_PARTNER,
                                       f"no frame of the other stream(s) within slop "
                                       f"({span_ms:.3f} ms > {slop_ms:.3f} ms)")
                    continue
                if self._has_dropped[end_index]:
                    # The would-be pivot lost messages to overflow, so it cannot vouch for optimality.
                    self._delete_front(start_index, DropReason.NO_PARTNER,
                                       "partner candidates were lost to queue overflow")
                    continue
                self._make_candidate()
                self._cand_start, self._cand_end = start_time, end_time
                self._pivot, self._pivot_time = end_index, end_time
                self._move_front_to_past(start_index)
            else:
                if self._penalized(end_time - self._cand_end) < start_time - self._cand_start:
                    self._make_candidate()
                    self._cand_start, self._cand_end = start_time, end_time
                self._move_front_to_past(start_index)

            if start_index == self._pivot:
                # Every candidate for this pivot has been examined.
                self._publish()
            elif self._penalized(end_time - self._cand_end) >= self._pivot_time - self._cand_start:
                # Any later set contains [pivot_time, end_time], already too wide: candidate is optimal.
                self._publish()
            elif self._non_empty < self.n:
                self._virtual_search()

    def _virtual_search(self) -> None:
        # Use the inter-message lower bounds to try to prove the candidate optimal now.
        moves = [0] * self.n
        while True:
            end_index, end_time = self._boundary(end=True, virtual=True)
            start_index, start_time = self._boundary(end=False, virtual=True)
            if self._penalized(end_time - self._cand_end) >= self._pivot_time - self._cand_start:
                self._publish()
                return
            if (self._penalized(end_time - self._cand_end) < start_time - self._cand_start
                    or not self._deques[start_index]):
                # An optimistic future set could still beat the candidate: wait for more messages.
                self._non_empty = 0
                for i in range(self.n):
                    self._recover(i, moves[i])
                return
            self._move_front_to_past(start_index)
            moves[start_index] += 1


class ExactTimePolicy:
    """ExactTime matching: a set is emitted when every topic has a message with the same stamp.

    When a set is emitted, pending messages with older stamps are dropped (NO_PARTNER); at most
    ``queue_size`` distinct pending stamps are kept (the oldest goes as QUEUE_OVERFLOW).
    """

    def __init__(self, num_topics: int, queue_size: int) -> None:
        if num_topics < 2:
            raise ValueError("ExactTimePolicy needs at least 2 topics")
        if queue_size < 1:
            raise ValueError(f"queue_size must be >= 1, got {queue_size}")
        self.n = num_topics
        self.queue_size = queue_size
        self._tuples: dict[int, list[Entry | None]] = {}
        self._last_signal: int | None = None

    def add(self, topic: int, stamp_ns: int, payload: Any = None
            ) -> tuple[list[tuple[Entry, ...]], list[PolicyDrop]]:
        """Add one message; return what was emitted and dropped as a consequence."""
        sets: list[tuple[Entry, ...]] = []
        drops: list[PolicyDrop] = []
        entry = (stamp_ns, payload)
        if self._last_signal is not None and stamp_ns <= self._last_signal:
            drops.append((topic, entry, DropReason.NO_PARTNER, "older than the last emitted pair"))
            return sets, drops
        slot = self._tuples.setdefault(stamp_ns, [None] * self.n)
        if slot[topic] is not None:
            drops.append((topic, entry, DropReason.DUPLICATE, "stamp already pending for this topic"))
            return sets, drops
        slot[topic] = entry
        if all(e is not None for e in slot):
            sets.append(tuple(slot))  # type: ignore[arg-type]
            del self._tuples[stamp_ns]
            self._last_signal = stamp_ns
            for s in sorted(s for s in self._tuples if s < stamp_ns):
                for i, e in enumerate(self._tuples.pop(s)):
                    if e is not None:
                        drops.append((i, e, DropReason.NO_PARTNER, "no frame with the same stamp"))
        while len(self._tuples) > self.queue_size:
            oldest = min(self._tuples)
            for i, e in enumerate(self._tuples.pop(oldest)):
                if e is not None:
                    drops.append((i, e, DropReason.QUEUE_OVERFLOW, f"more than {self.queue_size} stamps pending"))
        return sets, drops

    def pending(self) -> list[tuple[int, Entry]]:
        out = []
        for s in sorted(self._tuples):
            out += [(i, e) for i, e in enumerate(self._tuples[s]) if e is not None]
        return out

    def held(self, topic: int) -> int:
        return sum(1 for t in self._tuples.values() if t[topic] is not None)

    def clear(self) -> list[tuple[int, Entry]]:
        held = self.pending()
        self._tuples.clear()
        return held


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


class Synchronizer:
    """Pairs "thermal" and "visible" frames (approximate or exact time) and accounts for every frame.

    Args:
        mode: ``"approximate"`` (message_filters ApproximateTime + slop) or ``"exact"``.
        queue_size: frames held per stream (approximate) / distinct pending stamps (exact).
        slop_s: largest span of a pair in seconds (approximate mode); ``None`` = unbounded.
        age_penalty: ApproximateTime age penalty (default 0).
        inter_message_lower_bound_s: optional {stream: seconds}, the smallest possible gap
            between two frames of that stream (lets pairs go out without waiting for the next frame).
        recent_stamps: how many recent stamps per stream are remembered to classify DUPLICATE.

    ``push`` and ``flush`` are not thread-safe; call them from one thread (or under a lock).
    """

    def __init__(self, mode: str = "approximate", queue_size: int = 10, slop_s: float | None = 0.05, *,
                 age_penalty: float = 0.0, inter_message_lower_bound_s: dict[str, float] | None = None,
                 recent_stamps: int = 64) -> None:
        if mode not in ("approximate", "exact"):
            raise ValueError(f"sync mode must be 'approximate' or 'exact', got {mode!r}")
        if slop_s is not None and slop_s < 0:
            raise ValueError(f"slop_s must be >= 0, got {slop_s}")
        self.mode = mode
        self.queue_size = queue_size
        self.slop_s = slop_s
        self.slop_ns = None if slop_s is None else int(round(slop_s * 1e9))
        if mode == "approximate":
            bounds = inter_message_lower_bound_s or {}
            unknown = set(bounds) - set(STREAMS)
            if unknown:
                raise ValueError(f"inter_message_lower_bound_s: unknown streams {sorted(unknown)}")
            self._policy: ApproximateTimePolicy | ExactTimePolicy = ApproximateTimePolicy(
                len(STREAMS), queue_size, self.slop_ns, age_penalty,
                [int(round(bounds.get(s, 0.0) * 1e9)) for s in STREAMS])
        else:
            self._policy = ExactTimePolicy(len(STREAMS), queue_size)
        self.counters = SyncCounters()
        self._last_stamp: dict[str, int | None] = dict.fromkeys(STREAMS)
        self._recent: dict[str, deque[int]] = {s: deque(maxlen=recent_stamps) for s in STREAMS}

    @classmethod
    def from_config(cls, cfg: Any) -> Synchronizer:
        """Build from a :class:`ivif_fusion.config.SyncConfig`."""
        return cls(cfg.mode, cfg.queue_size, cfg.slop_s)

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
        last = self._last_stamp[stream]
        if last is not None and stamp <= last:
            if stamp == last or stamp in self._recent[stream]:
                return [], [self._drop(stream, stamp, DropReason.DUPLICATE,
                                       f"stamp {stamp} already received on {stream}")]
            return [], [self._drop(stream, stamp, DropReason.OUT_OF_ORDER,
                                   f"stamp {stamp} older than last accepted {last} on {stream}")]
        self._last_stamp[stream] = stamp
        self._recent[stream].append(stamp)
        sets, pdrops = self._policy.add(STREAMS.index(stream), stamp, frame)
        pairs = []
        for s in sets:
            thermal, rgb = s[0][1], s[1][1]
            for st in STREAMS:
                self.counters.paired[st] += 1
            pairs.append(Pair(thermal=thermal, visible=rgb))
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

        A pending approximate-time candidate is not emitted: without the next frames it was never
        proven to be the best set, and the live policy would not have emitted it either.
        """
        drops = [self._drop(STREAMS[i], e[0], DropReason.UNFLUSHED, "still queued at end of stream")
                 for i, e in self._policy.clear()]
        return drops

    def queued(self, stream: str) -> int:
        """Frames of ``stream`` currently held (waiting or under examination)."""
        return self._policy.held(STREAMS.index(stream))

    def balanced(self) -> bool:
        """True when, per stream, received == paired + dropped + queued."""
        c = self.counters
        return all(c.received[s] == c.paired[s] + c.total_dropped(s) + self.queued(s) for s in STREAMS)

    # ------------------------------------------------------------------ internals

    def _drop(self, stream: str, stamp: int, reason: DropReason, detail: str) -> Drop:
        self.counters.add_drop(stream, reason)
        return Drop(stream=stream, stamp_ns=stamp, reason=reason, detail=detail)


def pair_drops(pair: Pair, reason: DropReason, detail: str = "") -> list[Drop]:
    """The two Drops of a pair that was emitted but not processed (superseded, pipeline error)."""
    return [Drop(stream=f.stream or s, stamp_ns=f.stamp_ns, reason=reason, detail=detail)
            for s, f in zip(STREAMS, (pair.thermal, pair.visible))]


class LatestPairSlot:
    """Thread-safe single-slot mailbox: the newest pair wins (backpressure for slow inference).

    The producer calls :meth:`put`; when the consumer has not taken the previous pair yet, that pair
    is returned so the caller can count it as SUPERSEDED (see :func:`pair_drops`).
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._pair: Pair | None = None
        self._closed = False

    def put(self, pair: Pair) -> Pair | None:
        """Store ``pair``; return the pair it replaced, if any."""
        with self._cond:
            old, self._pair = self._pair, pair
            self._cond.notify()
            return old

    def get(self, timeout: float | None = None) -> Pair | None:
        """Take the pair, waiting up to ``timeout`` seconds (None: forever); None if none came or closed."""
        with self._cond:
            self._cond.wait_for(lambda: self._pair is not None or self._closed, timeout)
            pair, self._pair = self._pair, None
            return pair

    def close(self) -> Pair | None:
        """Wake waiting consumers (shutdown); return the pair left in the slot, if any."""
        with self._cond:
            self._closed = True
            pair, self._pair = self._pair, None
            self._cond.notify_all()
            return pair

    def __len__(self) -> int:
        with self._cond:
            return int(self._pair is not None)
