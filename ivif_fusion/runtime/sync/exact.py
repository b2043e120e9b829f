"""The ExactTime policy of ROS 2 ``message_filters`` (C++), message for message.

Behaviour (from ``sync_policies/exact_time.hpp``):

- Pending messages live in a map ordered by stamp; each stamp holds at most one message per topic.
  A message whose stamp is already pending for its topic replaces the earlier one (REPLACED).
- Late stamps are not special: a message older than the last emitted set is stored like any
  other, and it still completes a set when its partner arrives.
- When a stamp has a message of every topic, the set is emitted at once; then every pending
  stamp older than it is dropped (NO_PARTNER).
- After that, while more than ``queue_size`` stamps are pending, the oldest stamps are dropped
  (QUEUE_OVERFLOW), which may be the stamp just added.
"""

from __future__ import annotations

from typing import Any

from ...types import DropReason
from .entries import AddResult, Entry, PolicyDrop, check_topics_and_queue


class ExactTimePolicy:
    """ExactTime matching: a set is emitted when every topic has a message with the same stamp.

    Args:
        num_topics: number of input topics (>= 2).
        queue_size: most distinct stamps pending at once.
    """

    def __init__(self, num_topics: int, queue_size: int) -> None:
        check_topics_and_queue(num_topics, queue_size)
        self.n = num_topics
        self.queue_size = queue_size
        self._tuples: dict[int, list[Entry | None]] = {}

    def add(self, topic: int, stamp_ns: int, payload: Any = None) -> AddResult:
        """Add one message; return what was emitted and dropped as a consequence."""
        sets: list[tuple[Entry, ...]] = []
        drops: list[PolicyDrop] = []
        slot = self._tuples.setdefault(stamp_ns, [None] * self.n)
        old = slot[topic]
        if old is not None:
            drops.append((topic, old, DropReason.REPLACED, "a later message with the same stamp replaced it"))
        slot[topic] = (stamp_ns, payload)
        if None not in slot:
            sets.append(tuple(slot))  # type: ignore[arg-type]
            del self._tuples[stamp_ns]
            for s in sorted(s for s in self._tuples if s < stamp_ns):
                self._drop_stamp(s, DropReason.NO_PARTNER, "no message of every topic before a newer set", drops)
        for s in sorted(self._tuples)[:max(0, len(self._tuples) - self.queue_size)]:
            self._drop_stamp(s, DropReason.QUEUE_OVERFLOW, f"more than {self.queue_size} stamps pending", drops)
        return sets, drops

    def _drop_stamp(self, stamp: int, reason: DropReason, detail: str, drops: list[PolicyDrop]) -> None:
        drops += [(i, e, reason, detail) for i, e in enumerate(self._tuples.pop(stamp)) if e is not None]

    def pending(self) -> list[tuple[int, Entry]]:
        """Every entry still held, as (topic, entry), by stamp then topic."""
        return [(i, e) for s in sorted(self._tuples) for i, e in enumerate(self._tuples[s]) if e is not None]

    def held(self, topic: int) -> int:
        return sum(1 for t in self._tuples.values() if t[topic] is not None)

    def clear(self) -> list[tuple[int, Entry]]:
        held = self.pending()
        self._tuples.clear()
        return held
