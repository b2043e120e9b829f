"""Time-jump guard and synchronizer restart: worked stamp sequences."""

import numpy as np

from ivif_fusion.runtime.sync import Synchronizer
from ivif_fusion.runtime.time_jump import TimeJumpGuard, Verdict, restart_synchronizer
from ivif_fusion.types import DropReason, Frame

S = 10**9


def test_guard_accepts_small_reorders_and_detects_backward_jump():
    g = TimeJumpGuard(1.0)
    assert [g.check("thermal", t) for t in (10 * S, 11 * S, 11 * S - S // 2)] == [Verdict.ACCEPT] * 3
    assert g.check("visible", 11 * S) == Verdict.ACCEPT
    # Thermal restarts at 2 s: 9 s back from its newest (11 s) -> jump.
    assert g.check("thermal", 2 * S) == Verdict.JUMP
    assert g.jumps[-1].back_s == 9.0 and g.jumps[-1].stream == "thermal"
    # An RGB frame still on the old timeline (11.1 s > 2 s + 1 s) is stale, one on the new one is accepted.
    assert g.check("visible", 11 * S + S // 10) == Verdict.STALE
    assert g.check("thermal", 2 * S + S // 10) == Verdict.ACCEPT
    assert g.check("visible", 2 * S + S // 20) == Verdict.ACCEPT
    # Both streams are on the new timeline: a later old stamp is a new jump again.
    assert g.check("visible", 2 * S + S // 5) == Verdict.ACCEPT
    assert g.check("visible", S // 2) == Verdict.JUMP
    assert TimeJumpGuard(0.0).check("thermal", 0) == Verdict.ACCEPT


def test_same_stamps_sent_twice_resume_pairing():
    """The issue's scenario: the same stamps published again (a looping bag)."""
    stamps = [k * S // 9 for k in range(20)]
    g = TimeJumpGuard(1.0)
    sync = Synchronizer("exact", 10, None)
    pairs = 0
    dropped_at_jump = []
    for loop in range(2):
        for t in stamps:
            for stream in ("thermal", "visible"):
                v = g.check(stream, t)
                if v == Verdict.JUMP:
                    sync, drops = restart_synchronizer(sync, lambda: Synchronizer("exact", 10, None), "jump")
                    dropped_at_jump += drops
                if v == Verdict.STALE:
                    sync.reject(stream, t, DropReason.TIME_JUMP)
                    continue
                p, _ = sync.push(Frame(t, "f", np.zeros((2, 2), np.float32), "mono8", stream))
                pairs += len(p)
    # Loop 1: 20 pairs. Loop 2: thermal 0 s jumps back from 2.11 s; the RGB frame at 2.11 s was already
    # paired, so nothing is held; RGB at 0 s is on the new timeline. All 20 pair again.
    assert pairs == 40 and dropped_at_jump == []
    c = sync.counters
    assert c.received == {"thermal": 40, "visible": 40} and c.dropped == {"thermal": {}, "visible": {}}
    assert sync.balanced()


def test_restart_recounts_held_frames_as_time_jump():
    sync = Synchronizer("exact", 10, None)
    for t in (1, 2, 3):
        sync.push(Frame(t * S, "f", np.zeros((2, 2), np.float32), "mono8", "thermal"))
    sync.push(Frame(9 * S, "f", np.zeros((2, 2), np.float32), "mono8", "visible"))
    fresh, drops = restart_synchronizer(sync, lambda: Synchronizer("exact", 10, None), "stamps went back")
    assert [(d.stream, d.stamp_ns, d.reason) for d in drops] == [
        ("thermal", 1 * S, DropReason.TIME_JUMP), ("thermal", 2 * S, DropReason.TIME_JUMP),
        ("thermal", 3 * S, DropReason.TIME_JUMP), ("visible", 9 * S, DropReason.TIME_JUMP)]
    c = fresh.counters
    assert c.dropped == {"thermal": {DropReason.TIME_JUMP: 3}, "visible": {DropReason.TIME_JUMP: 1}}
    # The old stamps are forgotten: 1 s pairs again on the new timeline.
    p, d = fresh.push(Frame(1 * S, "f", np.zeros((2, 2), np.float32), "mono8", "thermal"))
    p, d = fresh.push(Frame(1 * S, "f", np.zeros((2, 2), np.float32), "mono8", "visible"))
    assert len(p) == 1 and not d and fresh.balanced()


def test_clock_reset_starts_every_stream_over():
    g = TimeJumpGuard(1.0)
    assert g.check("thermal", 50 * S) == Verdict.ACCEPT and g.check("visible", 50 * S) == Verdict.ACCEPT
    g.clock_reset()
    # After the clock went back, old-timeline memory is gone: earlier stamps are accepted, not jumps.
    assert g.check("thermal", 2 * S) == Verdict.ACCEPT and g.check("visible", 2 * S) == Verdict.ACCEPT
    assert g.jumps == []
