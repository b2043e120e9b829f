"""The Python synchronizers of ROS 2 ``message_filters`` (rclpy), message for message.

``TimeSynchronizer`` and ``ApproximateTimeSynchronizer`` keep one dict per topic, keyed by stamp:

- A message whose stamp is already queued on its topic replaces the earlier one (REPLACED).
- After adding, while a topic holds more than ``queue_size`` stamps, its oldest stamp is removed
  (QUEUE_OVERFLOW); that may be the message just added. Late stamps are otherwise queued as usual.

``RclpyApproximatePolicy`` (``ApproximateTimeSynchronizer``) searches only when a message arrives,
around that message: on every other topic it keeps the queued stamps within ``slop`` of the new
one (``|delta| <= slop``), ordered by ``|delta|`` (ties: queue order, i.e. order of first arrival of
the stamp). It then tries the combinations in that order (the first topic's list varying slowest)
and emits the **first** whose span is strictly below ``slop`` (``max - min < slop``) and whose new
message is still queued, removing just those messages. Nothing else is dropped: a message that
never matches stays until it is pushed out of its queue.

``RclpyExactPolicy`` (``TimeSynchronizer``) emits when a stamp is queued on every topic, then removes,
on every topic, the queued stamps older than it (NO_PARTNER).
"""

from __future__ import annotations

import itertools
from typing import Any

from ...types import DropReason
from .entries import AddResult, Entry, PolicyDrop, check_topics_and_queue


class RclpyExactPolicy:
    """rclpy ``TimeSynchronizer(fs, queue_size)``.

    Args:
        num_topics: number of input topics (>= 2).
        queue_size: most stamps held per topic.
    """

    def __init__(self, num_topics: int, queue_size: int) -> None:
        check_topics_and_queue(num_topics, queue_size)
        self.n = num_topics
        self.queue_size = queue_size
        self._queues: list[dict[int, Entry]] = [{} for _ in range(num_topics)]

    def _store(self, topic: int, stamp_ns: int, payload: Any, drops: list[PolicyDrop]) -> None:
        q = self._queues[topic]
        if stamp_ns in q:
            drops.append((topic, q[stamp_ns], DropReason.REPLACED, "a later message with the same stamp replaced it"))
        q[stamp_ns] = (stamp_ns, payload)
        while len(q) > self.queue_size:
            drops.append((topic, q.pop(min(q)), DropReason.QUEUE_OVERFLOW, f"more than {self.queue_size} stamps queued"))

    def _emit(self, stamps: list[int]) -> tuple[Entry, ...]:
        return tuple(q.pop(s) for q, s in zip(self._queues, stamps))

    def add(self, topic: int, stamp_ns: int, payload: Any = None) -> AddResult:
        """Add one message; return what was emitted and dropped as a consequence."""
        sets: list[tuple[Entry, ...]] = []
        drops: list[PolicyDrop] = []
        self._store(topic, stamp_ns, payload, drops)
        common = set(self._queues[0]).intersection(*self._queues[1:])
        if common:
            t = min(common)
            sets.append(self._emit([t] * self.n))
            for i, q in enumerate(self._queues):
                for s in [s for s in q if s < t]:
                    drops.append((i, q.pop(s), DropReason.NO_PARTNER, "older than an emitted set"))
        return sets, drops

    def pending(self) -> list[tuple[int, Entry]]:
        """Every entry still held, as (topic, entry), in queue order per topic."""
        return [(i, e) for i, q in enumerate(self._queues) for e in q.values()]

    def held(self, topic: int) -> int:
        return len(self._queues[topic])

    def clear(self) -> list[tuple[int, Entry]]:
        held = self.pending()
        for q in self._queues:
            q.clear()
        return held


class RclpyApproximatePolicy(RclpyExactPolicy):
    """rclpy ``ApproximateTimeSynchronizer(fs, queue_size, slop)``, with ``slop_ns`` the slop in nanoseconds.

    A set is valid when its span is strictly below ``slop_ns``, so ``slop_ns=0`` never pairs.
    """

    def __init__(self, num_topics: int, queue_size: int, slop_ns: int) -> None:
        super().__init__(num_topics, queue_size)
        if slop_ns < 0:
            raise ValueError(f"slop_ns must be >= 0, got {slop_ns}")
        self.slop_ns = slop_ns

    def add(self, topic: int, stamp_ns: int, payload: Any = None) -> AddResult:
        """Add one message; return what was emitted and dropped as a consequence."""
        sets: list[tuple[Entry, ...]] = []
        drops: list[PolicyDrop] = []
        self._store(topic, stamp_ns, payload, drops)
        choices = []
        for i, q in enumerate(self._queues):
            if i == topic:
                continue
            near = [s for s in q if abs(s - stamp_ns) <= self.slop_ns]
            if not near:
                return sets, drops
            choices.append(sorted(near, key=lambda s: abs(s - stamp_ns)))
        for combo in itertools.product(*choices):
            stamps = [*combo[:topic], stamp_ns, *combo[topic:]]
            if max(stamps) - min(stamps) < self.slop_ns and stamp_ns in self._queues[topic]:
                sets.append(self._emit(stamps))
                break
        return sets, drops
