"""Vocabulary shared by the pairing policies: queue entries, policy drops and the result of ``add``.

A policy works on ``num_topics`` numbered inputs and knows nothing of frames: an entry is
``(stamp_ns, payload)``, and the caller (:class:`~ivif_fusion.runtime.sync.synchronizer.Synchronizer`)
turns emitted sets into pairs and policy drops into counted :class:`~ivif_fusion.types.Drop`.
Every entry handed to ``add`` ends exactly once: in an emitted set, in a policy drop, or in
``pending()`` (until ``clear()`` hands it back).
"""

from __future__ import annotations

from typing import Any

from ...types import DropReason

# An entry of a policy queue: (stamp_ns, payload).
Entry = tuple[int, Any]
# A policy drop: (topic index, entry, reason, detail).
PolicyDrop = tuple[int, Entry, DropReason, str]
# What one ``add`` caused: the sets emitted (one entry per topic each) and the entries dropped.
AddResult = tuple[list[tuple[Entry, ...]], list[PolicyDrop]]

POLICY_NAMES = ("optimal", "rclpy")


def check_topics_and_queue(num_topics: int, queue_size: int) -> None:
    """Validate the two arguments every policy takes."""
    if num_topics < 2:
        raise ValueError(f"a synchronizer needs at least 2 topics, got {num_topics}")
    if queue_size < 1:
        raise ValueError(f"queue_size must be >= 1, got {queue_size}")


def seconds_to_ns(seconds: float) -> int:
    """Seconds to nanoseconds as rclcpp ``Duration::from_seconds`` and rclpy ``Duration(seconds=)`` do it.

    Both multiply in double precision and truncate toward zero, so 1.001 s is 1,000,999,999 ns.
    """
    return int(seconds * 1_000_000_000)
