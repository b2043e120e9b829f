"""The ApproximateTime policy of ROS 2 ``message_filters`` (C++), message for message.

Behaviour (from ``sync_policies/approximate_time.hpp`` and the ROS wiki page
"message_filters/ApproximateTime"):

- Each topic has a queue; a message is appended to its queue as it arrives, whatever its stamp.
  A repeated stamp is a message of its own, and a message older than its topic's last one is
  queued behind it (only the queue heads are ever compared, so it is used in arrival order).
- When every queue holds a message, the heads form a candidate set. The topic whose head is the
  latest becomes the *pivot*. Candidates are examined by moving the earliest head aside, one
  message at a time; a later candidate replaces the current one when its span is smaller, where
  the growth of the end is weighted by ``1 + age_penalty`` (default 0.1). The search for a pivot
  ends when the pivot message itself is moved aside, or earlier when no later candidate can win
  (also using the inter-message lower bounds, if given). Messages moved aside before the winner
  are dropped (SUPERSEDED); the others go back to their queues.
- ``max_interval_ns`` (C++ ``setMaxIntervalDuration``) is inclusive: a set spanning more is never
  a candidate, and its earliest head is dropped (NO_PARTNER).
- ``queue_size`` bounds each topic's queue plus its examined messages; on overflow the search is
  cancelled and the oldest message of that topic is dropped (QUEUE_OVERFLOW). That topic may not
  be the pivot until the other topics have moved past its dropped messages; meanwhile earliest
  heads are dropped (NO_PARTNER) instead of forming candidates.
- Durations are integer nanoseconds; the weighted span is ``int(span * (1 + age_penalty))``,
  the double-precision product truncated as rclcpp's ``Duration * double`` does.
"""

from __future__ import annotations

from collections import deque
from typing import Any, Iterable

from ...types import DropReason
from .entries import AddResult, Entry, PolicyDrop, check_topics_and_queue

NO_PIVOT = -1


class ApproximateTimePolicy:
    """ApproximateTime matching over ``num_topics`` queues of (stamp_ns, payload) entries.

    ``add(topic, stamp_ns, payload)`` returns ``(sets, drops)``: the sets emitted because of this
    message (each a tuple of entries, one per topic) and the entries discarded on the way.

    Args:
        num_topics: number of input topics (>= 2).
        queue_size: most messages held per topic (waiting or under examination).
        max_interval_ns: largest allowed span of a set, inclusive (``None``: unbounded, the C++ default).
        age_penalty: growth of a later candidate's end is weighted by ``1 + age_penalty`` (C++ default 0.1).
        inter_message_lower_bounds_ns: per topic, a known lower bound on the gap between two
            consecutive messages (0: unknown); lets a set be proven best before the next message.
    """

    def __init__(self, num_topics: int, queue_size: int, max_interval_ns: int | None = None,
                 age_penalty: float = 0.1, inter_message_lower_bounds_ns: Iterable[int] | None = None) -> None:
        check_topics_and_queue(num_topics, queue_size)
        if age_penalty < 0:
            raise ValueError(f"age_penalty must be >= 0, got {age_penalty}")
        if max_interval_ns is not None and max_interval_ns < 0:
            raise ValueError(f"max_interval_ns must be >= 0, got {max_interval_ns}")
        bounds = [0] * num_topics if inter_message_lower_bounds_ns is None else list(inter_message_lower_bounds_ns)
        if len(bounds) != num_topics or any(b < 0 for b in bounds):
            raise ValueError("inter_message_lower_bounds_ns needs one non-negative value per topic")
        self.n = num_topics
        self.queue_size = queue_size
        self.max_interval_ns = max_interval_ns
        self.age_penalty = age_penalty
        self.lower_bounds = bounds
        self._scale = 1.0 + age_penalty
        self._reset()

    def _reset(self) -> None:
        self._deques: list[deque[Entry]] = [deque() for _ in range(self.n)]
        self._past: list[list[Entry]] = [[] for _ in range(self.n)]  # examined, kept until publish
        self._has_dropped = [False] * self.n
        self._candidate: list[Entry] | None = None
        self._cand_start = 0
        self._cand_end = 0
        self._pivot = NO_PIVOT
        self._pivot_time = 0
        self._non_empty = 0
        self._sets: list[tuple[Entry, ...]] = []
        self._drops: list[PolicyDrop] = []

    # ------------------------------------------------------------------ public

    def add(self, topic: int, stamp_ns: int, payload: Any = None) -> AddResult:
        """Add one message; return what was emitted and dropped as a consequence."""
        self._sets, self._drops = [], []
        q = self._deques[topic]
        q.append((stamp_ns, payload))
        if len(q) == 1:
            self._non_empty += 1
            if self._non_empty == self.n:
                self._process()
        # While _process runs, the queue may hold queue_size + 1 messages; trim now.
        if len(q) + len(self._past[topic]) > self.queue_size:
            self._cancel_search()
            self._drops.append((topic, q.popleft(), DropReason.QUEUE_OVERFLOW,
                                f"queue of {self.queue_size} full"))
            self._has_dropped[topic] = True
            if self._pivot != NO_PIVOT:
                self._candidate = None
                self._pivot = NO_PIVOT
                self._process()
        return self._sets, self._drops

    def pending(self) -> list[tuple[int, Entry]]:
        """Every entry still held, as (topic, entry), in queue order per topic."""
        return [(i, e) for i in range(self.n) for e in [*self._past[i], *self._deques[i]]]

    def held(self, topic: int) -> int:
        return len(self._past[topic]) + len(self._deques[topic])

    def clear(self) -> list[tuple[int, Entry]]:
        """Forget everything (a pending candidate is not emitted); return what was held."""
        held = self.pending()
        self._reset()
        return held

    # ------------------------------------------------------------------ internals

    def _weighted(self, d: int) -> int:
        return int(d * self._scale)

    def _boundary(self, times: list[int], end: bool) -> tuple[int, int]:
        """(index, time) of the earliest (end=False) or latest (end=True) of ``times``.

        Ties: the first topic is the start, the last topic the end (as in the C++ policy).
        """
        idx, t = 0, times[0]
        for i in range(1, self.n):
            if (times[i] < t) != end:
                idx, t = i, times[i]
        return idx, t

    def _head_times(self) -> list[int]:
        return [q[0][0] for q in self._deques]

    def _virtual_times(self) -> list[int]:
        # An empty queue's next message is at least its last stamp + lower bound, and at least the pivot time.
        return [q[0][0] if q else max(self._past[i][-1][0] + self.lower_bounds[i], self._pivot_time)
                for i, q in enumerate(self._deques)]

    def _delete_front(self, i: int, reason: DropReason, detail: str) -> None:
        self._drops.append((i, self._deques[i].popleft(), reason, detail))
        if not self._deques[i]:
            self._non_empty -= 1

    def _move_front_to_past(self, i: int) -> None:
        self._past[i].append(self._deques[i].popleft())
        if not self._deques[i]:
            self._non_empty -= 1

    def _recover(self, counts: list[int]) -> None:
        """Put back the last ``counts[i]`` examined messages of every topic; recount non-empty queues."""
        self._non_empty = 0
        for i in range(self.n):
            past, q = self._past[i], self._deques[i]
            for _ in range(counts[i]):
                q.appendleft(past.pop())
            if q:
                self._non_empty += 1

    def _cancel_search(self) -> None:
        self._recover([len(p) for p in self._past])

    def _make_candidate(self, start_time: int, end_time: int) -> None:
        self._candidate = [q[0] for q in self._deques]
        self._cand_start, self._cand_end = start_time, end_time
        # Examined messages older than the new, better candidate can never be used: sets do not cross.
        for i in range(self.n):
            for e in self._past[i]:
                self._drops.append((i, e, DropReason.SUPERSEDED, "a later set matched better"))
            self._past[i].clear()

    def _publish(self) -> None:
        assert self._candidate is not None
        self._sets.append(tuple(self._candidate))
        self._candidate = None
        self._pivot = NO_PIVOT
        # Examined messages go back to their queues; the head of each queue is the published one.
        self._cancel_search()
        self._non_empty = 0
        for q in self._deques:
            q.popleft()
            if q:
                self._non_empty += 1

    def _process(self) -> None:
        while self._non_empty == self.n:
            times = self._head_times()
            end_index, end_time = self._boundary(times, end=True)
            start_index, start_time = self._boundary(times, end=False)
            for i in range(self.n):
                if i != end_index:
                    # No dropped message of this topic could have been better than its head.
                    self._has_dropped[i] = False
            if self._pivot == NO_PIVOT:
                if self.max_interval_ns is not None and end_time - start_time > self.max_interval_ns:
                    self._delete_front(start_index, DropReason.NO_PARTNER,
                                       f"no set within slop ({end_time - start_time} ns > {self.max_interval_ns} ns)")
                    continue
                if self._has_dropped[end_index]:
                    self._delete_front(start_index, DropReason.NO_PARTNER,
                                       "partner candidates were lost to queue overflow")
                    continue
                self._make_candidate(start_time, end_time)
                self._pivot, self._pivot_time = end_index, end_time
            elif self._weighted(end_time - self._cand_end) < start_time - self._cand_start:
                self._make_candidate(start_time, end_time)
            self._move_front_to_past(start_index)

            if start_index == self._pivot:
                # Every candidate for this pivot has been examined.
                self._publish()
            elif self._weighted(end_time - self._cand_end) >= self._pivot_time - self._cand_start:
                # Any later set contains [pivot_time, end_time], already too wide: the candidate is best.
                self._publish()
            elif self._non_empty < self.n:
                self._virtual_search()

    def _virtual_search(self) -> None:
        # Use the inter-message lower bounds to try to prove the candidate best now.
        moves = [0] * self.n
        while True:
            times = self._virtual_times()
            _, end_time = self._boundary(times, end=True)
            start_index, start_time = self._boundary(times, end=False)
            if self._weighted(end_time - self._cand_end) >= self._pivot_time - self._cand_start:
                self._publish()
                return
            if self._weighted(end_time - self._cand_end) < start_time - self._cand_start:
                # An optimistic future set could still beat the candidate: wait for more messages.
                self._recover(moves)
                return
            # Here start_time < pivot_time, so the start is a real queued message (never a virtual one).
            self._move_front_to_past(start_index)
            moves[start_index] += 1
