"""What happens to pairs after pairing: the latest-pair mailbox between synchronizer and pipeline."""

from __future__ import annotations

import threading

from ...types import Drop, DropReason, Pair
from .synchronizer import STREAMS


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
