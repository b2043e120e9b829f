"""Time jumps: a stream's stamps going back (looping bag, restarted camera, reset sim clock).

Without a reset, every frame after a backward jump is older than the stream's newest accepted
stamp, so the synchronizer drops it as ``out_of_order`` for as long as the old stamps are ahead:
the node would never produce output again. :class:`TimeJumpGuard` watches the stamps before they
reach the synchronizer and classifies each frame:

- ``ACCEPT``: pair it as usual (including small reorderings, which the synchronizer counts).
- ``JUMP``: its stamp is ``threshold`` or more older than its stream's newest: the caller resets
  pairing (:func:`restart_synchronizer`), then pairs this frame as the first of the new timeline.
- ``STALE``: after a jump, a frame of another stream still carrying the old timeline (its stamp
  is more than ``threshold`` ahead of the new timeline's newest stamp): dropped as ``time_jump``
  until that stream jumps too.

Shared by the ROS node and ``ivif replay`` (a bag recorded across a restart).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Callable

from ..types import Drop, DropReason
from .sync import STREAMS, Synchronizer


STALE_DETAIL = "stamp from before a time jump"


class Verdict(enum.Enum):
    ACCEPT = "accept"
    JUMP = "jump"
    STALE = "stale"


@dataclass(frozen=True)
class JumpEvent:
    """One detected jump: the stream that jumped, from which stamp to which."""

    stream: str
    from_ns: int
    to_ns: int

    @property
    def back_s(self) -> float:
        return (self.from_ns - self.to_ns) / 1e9

    def describe(self) -> str:
        return f"{self.stream} stamps went back by {self.back_s:.3f} s ({self.from_ns} -> {self.to_ns})"


class TimeJumpGuard:
    """Classifies frames by stamp (see module docstring). ``threshold_s`` 0 disables it."""

    def __init__(self, threshold_s: float, streams: tuple[str, ...] = STREAMS) -> None:
        self.threshold_ns = int(round(threshold_s * 1e9))
        self.streams = streams
        self._newest: dict[str, int | None] = dict.fromkeys(streams)
        self._behind: set[str] = set()      # streams still on the old timeline after a jump
        self._timeline_ns: int | None = None  # newest stamp of the new timeline since the last jump
        self.jumps: list[JumpEvent] = []

    def check(self, stream: str, stamp_ns: int) -> Verdict:
        """The verdict for a decoded frame of ``stream`` with ``stamp_ns``; updates the state."""
        if self.threshold_ns <= 0:
            return Verdict.ACCEPT
        newest = self._newest[stream]
        if stream in self._behind and self._timeline_ns is not None:
            if stamp_ns > self._timeline_ns + self.threshold_ns:
                return Verdict.STALE
            self._behind.discard(stream)   # this stream has joined the new timeline
            self._advance(stream, stamp_ns, reset=True)
            return Verdict.ACCEPT
        if newest is not None and stamp_ns <= newest - self.threshold_ns:
            self.jumps.append(JumpEvent(stream, newest, stamp_ns))
            self._behind = {s for s in self.streams if s != stream and self._newest[s] is not None}
            self._timeline_ns = None
            self._advance(stream, stamp_ns, reset=True)
            return Verdict.JUMP
        self._advance(stream, stamp_ns)
        return Verdict.ACCEPT

    def clock_reset(self) -> None:
        """The clock itself jumped back: every stream starts a new timeline with its next frame."""
        self._newest = dict.fromkeys(self.streams)
        self._behind = set()
        self._timeline_ns = None

    def _advance(self, stream: str, stamp_ns: int, reset: bool = False) -> None:
        newest = self._newest[stream]
        self._newest[stream] = stamp_ns if reset or newest is None else max(newest, stamp_ns)
        if self._behind or self._timeline_ns is not None:
            self._timeline_ns = stamp_ns if self._timeline_ns is None else max(self._timeline_ns, stamp_ns)
            if not self._behind:
                self._timeline_ns = None


def restart_synchronizer(sync: Synchronizer, make: Callable[[], Synchronizer], detail: str
                         ) -> tuple[Synchronizer, list[Drop]]:
    """A fresh synchronizer (from ``make``) that continues ``sync``'s counters; the frames ``sync``
    held are returned as ``Drop(TIME_JUMP)`` and counted so, keeping received = paired + dropped +
    queued per stream."""
    held = sync.flush()   # counted as UNFLUSHED by the synchronizer: recount them under TIME_JUMP
    counters = sync.counters
    drops = []
    for d in held:
        left = counters.dropped[d.stream].get(d.reason, 0) - 1
        if left:
            counters.dropped[d.stream][d.reason] = left
        else:
            counters.dropped[d.stream].pop(d.reason, None)
        counters.add_drop(d.stream, DropReason.TIME_JUMP)
        drops.append(Drop(d.stream, d.stamp_ns, DropReason.TIME_JUMP, detail))
    fresh = make()
    fresh.counters = counters
    return fresh, drops

