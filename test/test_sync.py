"""Pairing: message_filters scenarios (here and in test/data/pairing), slop, exact mode, accounting, LatestPairSlot.

The scenario tests replay the timelines of message_filters' approximate-time policy tests
(ASCII diagrams below: topic A = thermal, topic B = rgb, one character = 1 s) and check the
documented expected output sets.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import yaml

from ivif_fusion.config import SyncConfig
from ivif_fusion.runtime.sync import (STREAMS, ApproximateTimePolicy, ExactTimePolicy, LatestPairSlot,
                                      RclpyApproximatePolicy, RclpyExactPolicy, Synchronizer, make_policy,
                                      pair_drops, seconds_to_ns)
from ivif_fusion.types import DropReason, Frame, Pair

S = 1_000_000_000  # one second in ns
_IMG = np.zeros((1, 1), np.float32)


def frame(stream: str, t_ns: int) -> Frame:
    return Frame(stamp_ns=t_ns, frame_id=stream, image=_IMG, stream=stream)


def run(sync: Synchronizer, events: list[tuple[float, str]]):
    """Push (seconds, 'A'|'B') events; return (pairs as (thermal_s, rgb_s), all drops)."""
    pairs, drops = [], []
    for t, topic in events:
        p, d = sync.push(frame("thermal" if topic == "A" else "visible", int(round(t * S))))
        pairs += [(x.thermal.stamp_ns / S, x.visible.stamp_ns / S) for x in p]
        drops += d
        assert sync.balanced()
    return pairs, drops


def approx(queue_size: int = 10, slop_s: float | None = None, **kw) -> Synchronizer:
    return Synchronizer("approximate", queue_size, slop_s, **kw)


# ----------------------------------------------------------------------------- published scenarios


def test_exact_match():
    # A: a..b..c   B: A..B..C   ->  (a,A) (b,B) (c,C)
    ev = [(0, "A"), (0, "B"), (3, "A"), (3, "B"), (6, "A"), (6, "B")]
    pairs, drops = run(approx(), ev)
    assert pairs == [(0, 0), (3, 3), (6, 6)]
    assert drops == []


def test_perfect_match():
    # A: a..b..c.   B: .A..B..C   ->  (a,A) (b,B); (c,C) stays a candidate (not yet proven best)
    ev = [(0, "A"), (1, "B"), (3, "A"), (4, "B"), (6, "A"), (7, "B")]
    sync = approx()
    pairs, drops = run(sync, ev)
    assert pairs == [(0, 1), (3, 4)]
    assert drops == []
    assert sync.queued("thermal") == 1 and sync.queued("visible") == 1
    left = sync.flush()
    assert sorted((d.stream, d.stamp_ns, d.reason) for d in left) == sorted([
        ("visible", 7 * S, DropReason.UNFLUSHED), ("thermal", 6 * S, DropReason.UNFLUSHED)])
    assert sync.balanced() and sync.queued("thermal") == 0


def test_imperfect_match():
    # A: a.xb..c.   B: .A...B.C   ->  (a,A) (c,B); x and b lose to the better set (c,B)
    ev = [(0, "A"), (1, "B"), (2, "A"), (3, "A"), (5, "B"), (6, "A"), (7, "B")]
    pairs, drops = run(approx(), ev)
    assert pairs == [(0, 1), (6, 5)]
    assert sorted((d.stream, d.stamp_ns // S, d.reason) for d in drops) == sorted([
        ("thermal", 2, DropReason.SUPERSEDED), ("thermal", 3, DropReason.SUPERSEDED)])


def test_acceleration():
    # t:  0123456789012345678
    # A:  a...........b....c.
    # B:  .......A.......B..C   ->  (b,A) (c,C)
    ev = [(0, "A"), (7, "B"), (12, "A"), (15, "B"), (17, "A"), (18, "B")]
    pairs, drops = run(approx(), ev)
    assert pairs == [(12, 7), (17, 18)]
    assert sorted((d.stream, d.stamp_ns // S, d.reason) for d in drops) == sorted([
        ("visible", 15, DropReason.SUPERSEDED), ("thermal", 0, DropReason.SUPERSEDED)])


DROPPED_EVENTS = [(0, "A"), (1, "B"), (3, "B"), (4, "A"), (7, "B"), (8, "A"), (10, "A"), (11, "B"),
                  (13, "A"), (14, "B")]


def test_dropped_messages_queue_1():
    # Queue size 1 (too small)
    # t:  012345678901234
    # A:  a...b...c.d..e.
    # B:  .A.B...C...D..E   ->  (b,B) (d,D)
    sync = approx(queue_size=1)
    pairs, drops = run(sync, DROPPED_EVENTS)
    assert pairs == [(4, 3), (10, 11)]
    assert Counter(d.reason for d in drops)[DropReason.QUEUE_OVERFLOW] >= 1
    sync.flush()
    c = sync.counters
    assert c.received == {"thermal": 5, "visible": 5} and c.paired == {"thermal": 2, "visible": 2}
    assert all(c.total_dropped(s) == 3 for s in STREAMS)


def test_dropped_messages_queue_2():
    # Queue size 2 (just enough): (a,A) (b,B) (c,C) (d,D)
    pairs, _ = run(approx(queue_size=2), DROPPED_EVENTS)
    assert pairs == [(0, 1), (4, 3), (8, 7), (10, 11)]


def test_long_queue():
    # Queue size 5
    # t:  012345678901234
    # A:  abcdefghiklmnp.
    # B:  ...j......o....   ->  (l,o) only: j's partners were pushed out of the full queue
    ev = [(t, "A") for t in range(9)] + [(3, "B"), (9, "A"), (10, "A"), (11, "A"), (12, "A"), (10, "B"),
                                         (13, "A")]
    sync = approx(queue_size=5)
    pairs, drops = run(sync, ev)
    assert pairs == [(10, 10)]
    reasons = Counter((d.stream, d.reason) for d in drops)
    assert reasons[("thermal", DropReason.QUEUE_OVERFLOW)] >= 4
    assert ("visible", DropReason.NO_PARTNER) in reasons  # j had no valid partner left


def test_double_publish():
    # A: a..b   B: .A.B   (B arrives before b) -> b's arrival emits (a,A) then (b,B)
    sync = approx()
    run(sync, [(0, "A"), (1, "B"), (3, "B")])
    pairs, drops = sync.push(frame("thermal", 3 * S))
    assert [(p.thermal.stamp_ns // S, p.visible.stamp_ns // S) for p in pairs] == [(0, 1), (3, 3)]
    assert drops == []


def test_rate_bound():
    # A: a..b..c.   B: .A..B..C
    # lower bound on A's period 1.5 s -> (a,A) (b,B); 2 s -> (c,C) is proven optimal at once
    ev = [(0, "A"), (1, "B"), (3, "A"), (4, "B"), (6, "A"), (7, "B")]
    pairs, _ = run(approx(inter_message_lower_bound_s={"thermal": 1.5}), ev)
    assert pairs == [(0, 1), (3, 4)]
    pairs, _ = run(approx(inter_message_lower_bound_s={"thermal": 2.0}), ev)
    assert pairs == [(0, 1), (3, 4), (6, 7)]


def _policy_run(policy, events):
    out = []
    for t, topic in events:
        sets, _ = policy.add(topic, t)
        out += [tuple(e[0] for e in s) for s in sets]
    return out


def test_four_topics():
    # t:  012345678901234
    # A:  a....e..i.m..n.
    # B:  .b....g..j....o
    # C:  ..c...h...k....
    # D:  ...d.f.....l...   ->  (a,b,c,d) (e,g,h,f) (m,j,k,l)
    ev = [(0, 0), (1, 1), (2, 2), (3, 3), (5, 0), (5, 3), (6, 1), (6, 2), (8, 0), (9, 1), (10, 2), (11, 3),
          (10, 0), (13, 0), (14, 1)]
    assert _policy_run(ApproximateTimePolicy(4, 10), ev) == [(0, 1, 2, 3), (5, 6, 6, 5), (10, 9, 10, 11)]


def test_early_publish():
    # A: a......e  B: .b  C: ..c  D: ...d  -> (a,b,c,d) is emitted as soon as e proves it optimal
    ev = [(0, 0), (1, 1), (2, 2), (3, 3), (7, 0)]
    assert _policy_run(ApproximateTimePolicy(4, 10), ev) == [(0, 1, 2, 3)]


# ----------------------------------------------------------------------------- slop (rclpy semantics)


def test_slop_rejects_wide_sets():
    sync = approx(slop_s=0.05)
    p, d = sync.push(frame("thermal", 0))
    assert (p, d) == ([], [])
    p, d = sync.push(frame("visible", 100_000_000))  # 100 ms apart > 50 ms
    assert p == [] and [(x.stream, x.stamp_ns, x.reason) for x in d] == [("thermal", 0, DropReason.NO_PARTNER)]
    p, d = sync.push(frame("thermal", 110_000_000))
    assert (p, d) == ([], [])  # (110, 100) is a candidate, not yet proven best
    p, d = sync.push(frame("visible", 200_000_000))
    assert [(x.thermal.stamp_ns, x.visible.stamp_ns) for x in p] == [(110_000_000, 100_000_000)]
    assert d == []


def test_slop_boundary_is_inclusive():
    ms = 1_000_000
    ev = [(0, "A"), (0.05, "B"), (0.2, "A"), (0.26, "B"), (0.4, "A"), (0.45, "B"), (0.6, "A"), (0.6, "B")]
    pairs, drops = run(approx(slop_s=0.05), ev)
    # span exactly 50 ms pairs; 60 ms does not
    assert [(round(a * 1000), round(b * 1000)) for a, b in pairs] == [(0, 50), (400, 450), (600, 600)]
    assert sorted((d.stream, d.stamp_ns // ms, d.reason) for d in drops) == sorted([
        ("visible", 260, DropReason.NO_PARTNER), ("thermal", 200, DropReason.NO_PARTNER)])


def test_slop_zero_pairs_only_equal_stamps():
    ev = [(0, "A"), (0, "B"), (1, "A"), (1.001, "B"), (2, "A"), (2, "B")]
    pairs, _ = run(approx(slop_s=0.0), ev)
    assert pairs == [(0, 0), (2, 2)]


def test_seconds_to_ns_truncates_like_rclcpp_and_rclpy():
    assert seconds_to_ns(0.05) == 50_000_000
    assert seconds_to_ns(1.001) == 1_000_999_999  # 1.001 * 1e9 = 1000999999.9999999 in double precision
    assert seconds_to_ns(1.5) == 1_500_000_000 and seconds_to_ns(0) == 0


def test_from_config():
    sync = Synchronizer.from_config(SyncConfig(mode="exact", queue_size=3, slop_s=0.01))
    assert sync.mode == "exact" and sync.queue_size == 3 and sync.slop_ns == 10_000_000
    sync = Synchronizer.from_config(SyncConfig())
    assert sync.mode == "approximate" and sync.slop_ns == 50_000_000
    assert sync.policy == "optimal" and not sync.reject_late
    assert type(sync._policy) is ApproximateTimePolicy and sync._policy.age_penalty == 0.1
    assert sync._policy.max_interval_ns == 50_000_000
    sync = Synchronizer.from_config(SyncConfig(policy="rclpy", slop_s=2.01, reject_late=True))
    assert sync.policy == "rclpy" and sync.reject_late and sync._policy.slop_ns == 2_009_999_999
    sync = Synchronizer.from_config(SyncConfig(age_penalty=0.0, slop_inclusive=False))
    assert sync._policy.age_penalty == 0.0 and sync._policy.max_interval_ns == 49_999_999


def test_bad_arguments():
    with pytest.raises(ValueError, match="mode"):
        Synchronizer("nearest")
    with pytest.raises(ValueError, match="slop"):
        Synchronizer(slop_s=-1)
    with pytest.raises(ValueError, match="queue_size"):
        Synchronizer(queue_size=0)
    with pytest.raises(ValueError, match="stream"):
        Synchronizer().push(frame("depth", 0))
    with pytest.raises(ValueError, match="policy"):
        Synchronizer(policy="greedy")
    with pytest.raises(ValueError, match="rclpy policy needs a slop"):
        Synchronizer("approximate", 10, None, policy="rclpy")
    with pytest.raises(ValueError, match="strict slop bound of 0"):
        Synchronizer(slop_s=0.0, slop_inclusive=False)
    with pytest.raises(ValueError, match="unknown streams"):
        Synchronizer(inter_message_lower_bound_s={"depth": 0.1})
    with pytest.raises(ValueError, match="at least 2 topics"):
        ApproximateTimePolicy(1, 10)
    with pytest.raises(ValueError, match="age_penalty"):
        ApproximateTimePolicy(2, 10, age_penalty=-0.1)
    with pytest.raises(ValueError, match="max_interval_ns"):
        ApproximateTimePolicy(2, 10, max_interval_ns=-1)
    with pytest.raises(ValueError, match="lower_bounds"):
        ApproximateTimePolicy(2, 10, inter_message_lower_bounds_ns=[0])
    with pytest.raises(ValueError, match="lower_bounds"):
        ApproximateTimePolicy(2, 10, inter_message_lower_bounds_ns=[0, -1])
    with pytest.raises(ValueError, match="slop_ns"):
        RclpyApproximatePolicy(2, 10, -1)
    with pytest.raises(ValueError, match="queue_size"):
        RclpyExactPolicy(2, 0)


# ----------------------------------------------------------------------------- exact mode


def test_exact_mode_pairs_equal_stamps_and_drops_older():
    sync = Synchronizer("exact", queue_size=10)
    ev = [(1, "A"), (2, "A"), (2, "B"), (3, "B"), (4, "A"), (4, "B")]
    pairs, drops = run(sync, ev)
    assert pairs == [(2, 2), (4, 4)]
    assert sorted((d.stream, d.stamp_ns // S, d.reason) for d in drops) == sorted([
        ("visible", 3, DropReason.NO_PARTNER), ("thermal", 1, DropReason.NO_PARTNER)])
    assert sync.queued("thermal") == 0 and sync.queued("visible") == 0


def test_exact_mode_queue_bound():
    sync = Synchronizer("exact", queue_size=2)
    pairs, drops = run(sync, [(1, "A"), (2, "A"), (3, "A"), (3, "B")])
    assert pairs == [(3, 3)]
    assert [(d.stamp_ns // S, d.reason) for d in drops] == [(1, DropReason.QUEUE_OVERFLOW),
                                                            (2, DropReason.NO_PARTNER)]


def test_exact_policy_direct():
    p = ExactTimePolicy(2, 5)
    assert p.add(0, 5) == ([], [])
    sets, drops = p.add(1, 5, "x")
    assert sets == [((5, None), (5, "x"))] and drops == []
    # Older than the last emitted set: C++ ExactTime stores it like any other stamp ...
    sets, drops = p.add(0, 4)
    assert sets == [] and drops == [] and p.pending() == [(0, (4, None))]
    # ... and it still completes a set.
    sets, drops = p.add(1, 4, "y")
    assert sets == [((4, None), (4, "y"))] and drops == [] and p.pending() == []


# ----------------------------------------------------------------------------- order, duplicates, accounting


@pytest.mark.parametrize("mode", ["approximate", "exact"])
def test_out_of_order_and_duplicate_with_reject_late(mode):
    sync = Synchronizer(mode, 10, 0.05, reject_late=True)
    assert sync.push(frame("thermal", 10 * S)) == ([], [])
    _, d = sync.push(frame("thermal", 10 * S))
    assert [(x.reason, x.stamp_ns) for x in d] == [(DropReason.DUPLICATE, 10 * S)]
    _, d = sync.push(frame("thermal", 9 * S))
    assert [x.reason for x in d] == [DropReason.OUT_OF_ORDER]
    sync.push(frame("thermal", 11 * S))
    _, d = sync.push(frame("thermal", 10 * S))  # older than last, but a stamp already seen
    assert [x.reason for x in d] == [DropReason.DUPLICATE]
    c = sync.counters
    assert c.received["thermal"] == 5 and c.dropped["thermal"] == {DropReason.DUPLICATE: 2,
                                                                   DropReason.OUT_OF_ORDER: 1}
    assert sync.queued("thermal") == 2 and sync.balanced()


def test_reject_late_remembers_only_recent_stamps():
    sync = Synchronizer("approximate", 10, 0.05, reject_late=True, recent_stamps=2)
    for t in (1, 2, 3):
        sync.push(frame("thermal", t * S))
    _, d = sync.push(frame("thermal", 1 * S))  # seen, but no longer among the last 2
    assert [(x.reason, x.detail) for x in d] == [
        (DropReason.OUT_OF_ORDER, f"stamp {S} older than last accepted {3 * S} on thermal")]
    _, d = sync.push(frame("thermal", 2 * S))
    assert [(x.reason, x.detail) for x in d] == [(DropReason.DUPLICATE, f"stamp {2 * S} already received on thermal")]
    assert sync.queued("thermal") == 3 and sync.balanced()


@pytest.mark.parametrize("mode", ["approximate", "exact"])
def test_repeats_and_late_stamps_reach_the_policy_by_default(mode):
    """message_filters drops nothing for being late or repeated: the policy decides."""
    sync = Synchronizer(mode, 10, 0.05)
    first = frame("thermal", 10 * S)
    sync.push(first)
    repeat = frame("thermal", 10 * S)
    _, d = sync.push(repeat)
    if mode == "approximate":  # C++ ApproximateTime queues the repeat as a message of its own
        assert d == [] and sync.queued("thermal") == 2
    else:  # C++ ExactTime: the repeat replaces the pending one
        assert [(x.reason, x.stamp_ns) for x in d] == [(DropReason.REPLACED, 10 * S)] and sync.queued("thermal") == 1
    _, d = sync.push(frame("thermal", 9 * S))  # late: queued too
    assert d == [] and sync.balanced()
    pairs, _ = sync.push(frame("visible", 10 * S))
    expected_thermal = first if mode == "approximate" else repeat
    assert len(pairs) == 1 and pairs[0].thermal is expected_thermal


def test_reject_counts_and_seq():
    sync = approx()
    f0, f1 = frame("visible", 0), frame("visible", S)
    sync.push(f0)
    d = sync.reject("visible", 5, DropReason.DECODE_ERROR, "bad jpeg")
    sync.push(f1)
    assert (f0.seq, f1.seq) == (0, 2)
    assert d.reason == DropReason.DECODE_ERROR and d.stream == "visible" and d.detail == "bad jpeg"
    assert sync.counters.as_dict() == {"received": {"thermal": 0, "visible": 3}, "paired": {"thermal": 0, "visible": 0},
                                       "dropped": {"thermal": {}, "visible": {"decode_error": 1}}}
    assert sync.balanced()


def _random_events(rng: np.random.Generator, n: int):
    """Two jittery camera streams (thermal ~ 30 Hz, rgb ~ 25 Hz) with gaps, duplicates and local reordering."""
    events = []
    for stream, period in (("thermal", 33_333_333), ("visible", 40_000_000)):
        t = np.cumsum(rng.integers(period // 2, period * 2, size=n)) + rng.integers(0, period)
        keep = rng.random(n) > 0.1                                  # 10 % lost frames
        for ts in t[keep]:
            events.append([int(ts) + int(rng.integers(0, 60_000_000)), stream, int(ts)])  # arrival delay
    events.sort()
    # duplicates and local reorderings (a frame overtaken by up to 5 later ones)
    for i in rng.choice(len(events), size=len(events) // 20, replace=False):
        events.insert(int(i), list(events[int(i)]))
    for _ in range(len(events) // 30):
        i = int(rng.integers(0, len(events) - 6))
        j = i + int(rng.integers(1, 6))
        events[i], events[j] = events[j], events[i]
    return [(stream, ts) for _, stream, ts in events]


@pytest.mark.parametrize("mode,queue_size,slop_s", [
    ("approximate", 10, 0.05), ("approximate", 2, 0.02), ("approximate", 1, None), ("approximate", 5, 0.0),
    ("exact", 10, 0.05), ("exact", 1, 0.05)])
@pytest.mark.parametrize("policy", ["optimal", "rclpy"])
@pytest.mark.parametrize("reject_late", [True, False])
def test_random_streams_every_frame_accounted(mode, queue_size, slop_s, policy, reject_late):
    rng = np.random.default_rng(1234 + queue_size)
    events = _random_events(rng, 400)
    if mode == "exact" or slop_s == 0.0:  # give equal-stamp matching something: snap stamps to a 20 ms grid
        events = [(s, ts // 20_000_000 * 20_000_000) for s, ts in events]
    if policy == "rclpy" and slop_s is None:
        slop_s = 0.05  # the rclpy synchronizer always has a slop
    sync = Synchronizer(mode, queue_size, slop_s, policy=policy, reject_late=reject_late)
    frames = [frame(s, ts) for s, ts in events]
    used: Counter = Counter()
    pairs_all: list[Pair] = []
    drops_all = []
    for f in frames:
        pairs, drops = sync.push(f)
        pairs_all += pairs
        drops_all += drops
        for p in pairs:
            used[id(p.thermal)] += 1
            used[id(p.visible)] += 1
            assert p.thermal.stream == "thermal" and p.visible.stream == "visible"
        assert sync.balanced()
    drops_all += sync.flush()
    assert sync.balanced() and sync.queued("thermal") == sync.queued("visible") == 0
    # every frame exactly once: as part of one pair or as one drop
    assert max(used.values(), default=1) == 1
    out = Counter((d.stream, d.stamp_ns) for d in drops_all)
    for p in pairs_all:
        out[("thermal", p.thermal.stamp_ns)] += 1
        out[("visible", p.visible.stamp_ns)] += 1
    assert out == Counter((f.stream, f.stamp_ns) for f in frames)
    c = sync.counters
    for s in STREAMS:
        assert c.received[s] == c.paired[s] + c.total_dropped(s) == sum(1 for f in frames if f.stream == s)
    assert len(pairs_all) == c.pairs
    assert c.pairs > 0 or (policy == "rclpy" and slop_s == 0.0)  # rclpy's strict bound: slop 0 pairs nothing
    if reject_late and policy == "optimal":
        # with each stream in order, optimal sets never cross
        for s in ("thermal", "visible"):
            st = [getattr(p, s).stamp_ns for p in pairs_all]
            assert st == sorted(st) and len(set(st)) == len(st)
    if mode == "exact" or slop_s == 0.0:
        assert all(p.thermal.stamp_ns == p.visible.stamp_ns for p in pairs_all)
    elif slop_s is not None:
        bound = int(slop_s * S) - (policy == "rclpy")  # rclpy: strictly below the slop
        assert all(abs(p.thermal.stamp_ns - p.visible.stamp_ns) <= bound for p in pairs_all)


@pytest.mark.parametrize("slop_s", [None, 0.03])
def test_output_depends_only_on_stamps(slop_s):
    """Property 6 of the policy: with a large enough queue, cross-topic arrival order does not matter."""
    rng = np.random.default_rng(7)
    ta = np.cumsum(rng.integers(20, 50, size=60)) * 1_000_000
    tb = np.cumsum(rng.integers(25, 45, size=60)) * 1_000_000
    results = []
    for trial in range(4):
        # random interleaving, each topic still in order
        order = rng.permutation(["A"] * len(ta) + ["B"] * len(tb))
        ia = ib = 0
        events = []
        for o in order:
            if o == "A":
                events.append((ta[ia] / S, "A"))
                ia += 1
            else:
                events.append((tb[ib] / S, "B"))
                ib += 1
        pairs, _ = run(approx(queue_size=200, slop_s=slop_s), events)
        results.append(pairs)
    assert len(results[0]) > 30
    assert all(r == results[0] for r in results[1:])


def test_pairs_are_minimal_span_against_brute_force():
    """With one message per topic alternating, each emitted pair is the closest available."""
    rng = np.random.default_rng(3)
    ta = np.cumsum(rng.integers(30, 40, size=50)) * 1_000_000
    tb = ta + rng.integers(-8, 9, size=50) * 1_000_000  # each A has one obviously best B
    events = sorted([(t / S, "A") for t in ta] + [(t / S, "B") for t in tb])
    pairs, _ = run(approx(queue_size=10, slop_s=0.02), events)
    expected = [(a / S, b / S) for a, b in zip(ta, tb)][:len(pairs)]
    assert len(pairs) >= 48 and pairs == expected


# ----------------------------------------------------------------------------- scenarios as data
# test/data/pairing/*.yaml: inputs in arrival order, every set the reference emits with the input
# whose arrival emits it, and (in most cases) every drop with its reason and what stays pending.
# The optimal files hold the scenarios of message_filters' C++ tests, the rclpy files those of its
# Python tests, plus hand-worked cases. Two-topic cases also go through Synchronizer (topic 0 =
# thermal, 1 = visible), which must give the same pairs at the same moments and count every frame.

DATA = Path(__file__).parent / "data" / "pairing"
FILES = {"optimal_approximate": ("optimal", "approximate"), "optimal_exact": ("optimal", "exact"),
         "rclpy_approximate": ("rclpy", "approximate"), "rclpy_exact": ("rclpy", "exact")}


def load_cases() -> list:
    out = []
    for stem, (policy, mode) in FILES.items():
        for case in yaml.safe_load((DATA / f"{stem}.yaml").read_text())["cases"]:
            out.append(pytest.param(policy, mode, case, id=f"{stem}:{case['name']}"))
    return out


CASES = load_cases()


def data_stamp_ns(seconds: float) -> int:
    """A stamp written in seconds in the data, as exact nanoseconds."""
    return round(seconds * 1e9)


def build(policy: str, mode: str, case: dict):
    n, q = case.get("topics", 2), case.get("queue_size", 10)
    slop = case.get("slop_s")
    slop_ns = None if slop is None else seconds_to_ns(slop)
    if policy == "optimal" and mode == "approximate":
        if slop_ns is not None and not case.get("slop_inclusive", True):
            slop_ns -= 1
        bounds = [seconds_to_ns(b) for b in case.get("lower_bounds_s", [0] * n)]
        return ApproximateTimePolicy(n, q, slop_ns, case.get("age_penalty", 0.1), bounds)
    if policy == "optimal":
        return ExactTimePolicy(n, q)
    return RclpyApproximatePolicy(n, q, slop_ns) if mode == "approximate" else RclpyExactPolicy(n, q)


def run_policy(pol, case: dict) -> tuple[list, list]:
    sets, drops = [], []
    for k, (name, topic, t) in enumerate(case["input"]):
        emitted, dropped = pol.add(topic, data_stamp_ns(t), name)
        sets += [{"after": k, "set": [e[1] for e in s]} for s in emitted]
        drops += [[k, e[1], reason.value] for _, e, reason, _ in dropped]
    return sets, drops


@pytest.mark.parametrize("policy,mode,case", CASES)
def test_policy_scenario(policy, mode, case):
    pol = build(policy, mode, case)
    sets, drops = run_policy(pol, case)
    assert sets == case["expected"]
    if "drops" in case:
        assert sorted(drops) == sorted(case["drops"])
    pending = [e[1] for _, e in pol.pending()]
    if "pending" in case:
        assert sorted(pending) == sorted(case["pending"])
    # Every input ends exactly once: in a set, in a drop, or still pending.
    used = [x for s in sets for x in s["set"]] + [d[1] for d in drops] + pending
    assert sorted(used) == sorted(name for name, _, _ in case["input"])
    held = pol.clear()
    assert sorted(e[1] for _, e in held) == sorted(pending) and pol.pending() == []


TWO_TOPIC = [c for c in CASES if c.values[2].get("topics", 2) == 2 and "lower_bounds_s" not in c.values[2]]


@pytest.mark.parametrize("policy,mode,case", TWO_TOPIC)
def test_synchronizer_reproduces_scenario(policy, mode, case):
    slop = case.get("slop_s")
    if slop is None and not (policy == "optimal" and mode == "approximate"):
        slop = 0.05  # ignored in exact mode
    sync = Synchronizer(mode, case.get("queue_size", 10), slop, policy=policy,
                        age_penalty=case.get("age_penalty", 0.1), slop_inclusive=case.get("slop_inclusive", True))
    sets, drops = [], []
    for k, (name, topic, t) in enumerate(case["input"]):
        frame = Frame(data_stamp_ns(t), name, _IMG, "mono8", STREAMS[topic])
        pairs, dropped = sync.push(frame)
        sets += [{"after": k, "set": [p.thermal.frame_id, p.visible.frame_id]} for p in pairs]
        assert all(p.thermal.stream == "thermal" and p.visible.stream == "visible" for p in pairs)
        drops += [[k, STREAMS.index(d.stream), d.stamp_ns, d.reason.value] for d in dropped]
        assert sync.balanced()
    assert sets == case["expected"]
    if "drops" in case:
        by_name = {name: (topic, data_stamp_ns(t)) for name, topic, t in case["input"]}
        assert sorted(drops) == sorted([k, *by_name[name], r] for k, name, r in case["drops"])
    left = sync.flush()
    assert all(d.reason == DropReason.UNFLUSHED for d in left)
    c = sync.counters
    for s in STREAMS:
        assert sync.queued(s) == 0
        assert c.received[s] == c.paired[s] + c.total_dropped(s)
    assert c.pairs == len(case["expected"])


def test_make_policy_picks_the_reference_policy():
    assert type(make_policy("optimal", "approximate", 3, 5)) is ApproximateTimePolicy
    assert type(make_policy("optimal", "exact", 3, 5)) is ExactTimePolicy
    assert type(make_policy("rclpy", "approximate", 3, 5)) is RclpyApproximatePolicy
    assert type(make_policy("rclpy", "exact", 3, None)) is RclpyExactPolicy


class _RclpyModel:
    """rclpy's message_filters synchronizers restated step by step (dicts of stamp -> name), as a test oracle.

    ``add`` follows the reference's statements in order: store (a repeat overwrites), trim the
    oldest stamps, then search (approximate) or intersect (exact); it returns the emitted name tuples.
    """

    def __init__(self, n: int, queue_size: int, slop_ns: int | None) -> None:
        self.queues: list[dict] = [{} for _ in range(n)]
        self.queue_size, self.slop = queue_size, slop_ns

    def add(self, index: int, stamp: int, name: str) -> list[tuple]:
        my_queue = self.queues[index]
        my_queue[stamp] = name
        while len(my_queue) > self.queue_size:
            del my_queue[min(my_queue)]
        if self.slop is None:
            common = set.intersection(*[set(q) for q in self.queues])
            if not common:
                return []
            t = sorted(common)[0]
            out = [tuple(q[t] for q in self.queues)]
            for q in self.queues:
                del q[t]
            for q in self.queues:
                for s in list(q):
                    if s < t:
                        del q[s]
            return out
        stamps = []
        for queue in self.queues[:index] + self.queues[index + 1:]:
            topic_stamps = [(s, abs(s - stamp)) for s in queue if not abs(s - stamp) > self.slop]
            if not topic_stamps:
                return []
            stamps.append([s for s, _ in sorted(topic_stamps, key=lambda x: x[1])])
        for vv in itertools.product(*stamps):
            vv = list(vv)
            vv.insert(index, stamp)
            qt = list(zip(self.queues, vv))
            if max(vv) - min(vv) < self.slop and all(t in q for q, t in qt):
                out = [tuple(q[t] for q, t in qt)]
                for q, t in qt:
                    del q[t]
                return out
        return []


@pytest.mark.parametrize("n", [2, 3])
@pytest.mark.parametrize("exact", [False, True])
def test_rclpy_policies_agree_with_a_step_by_step_model(n, exact):
    """Random stamps with repeats and late frames: same sets, on the same input, as the restated reference."""
    rng = np.random.default_rng(11 + n + 10 * exact)
    emitted = 0
    for trial in range(40):
        q, slop = int(rng.integers(1, 5)), int(rng.integers(0, 4))
        model = _RclpyModel(n, q, None if exact else slop)
        pol = RclpyExactPolicy(n, q) if exact else RclpyApproximatePolicy(n, q, slop)
        for k in range(60):
            topic, stamp = int(rng.integers(0, n)), int(rng.integers(0, 12))
            name = f"{trial}.{k}"
            sets, _ = pol.add(topic, stamp, name)
            assert [tuple(e[1] for e in s) for s in sets] == model.add(topic, stamp, name), (trial, k)
            emitted += len(sets)
        assert sorted(e[1] for _, e in pol.pending()) == sorted(v for qq in model.queues for v in qq.values())
    assert emitted > 50


# ----------------------------------------------------------------------------- details and defaults


def _details(result) -> list:
    return [(topic, entry[0], reason, detail) for topic, entry, reason, detail in result[1]]


def test_policy_drop_details_name_the_cause():
    p = ApproximateTimePolicy(2, 10, max_interval_ns=5)
    p.add(0, 3)
    assert _details(p.add(1, 10)) == [(0, 3, DropReason.NO_PARTNER, "no set within slop (7 ns > 5 ns)")]
    p = ApproximateTimePolicy(2, 10, age_penalty=0.0)
    p.add(0, 0)
    p.add(1, 10)
    assert _details(p.add(0, 5)) == [(0, 0, DropReason.SUPERSEDED, "a later set matched better")]
    p = ApproximateTimePolicy(2, 1)
    p.add(0, 0)
    p.add(1, 1)
    assert _details(p.add(1, 3)) == [(1, 1, DropReason.QUEUE_OVERFLOW, "queue of 1 full"),
                                     (0, 0, DropReason.NO_PARTNER, "partner candidates were lost to queue overflow")]
    e = ExactTimePolicy(2, 1)
    e.add(0, 1)
    assert _details(e.add(0, 1)) == [(0, 1, DropReason.REPLACED, "a later message with the same stamp replaced it")]
    assert _details(e.add(0, 2)) == [(0, 1, DropReason.QUEUE_OVERFLOW, "more than 1 stamps pending")]
    e = ExactTimePolicy(2, 5)
    e.add(0, 1)
    e.add(0, 2)
    assert _details(e.add(1, 2)) == [(0, 1, DropReason.NO_PARTNER, "no message of every topic before a newer set")]
    r = RclpyExactPolicy(2, 1)
    r.add(0, 1)
    assert _details(r.add(0, 1)) == [(0, 1, DropReason.REPLACED, "a later message with the same stamp replaced it")]
    assert _details(r.add(0, 2)) == [(0, 1, DropReason.QUEUE_OVERFLOW, "more than 1 stamps queued")]
    r = RclpyExactPolicy(2, 5)
    r.add(1, 1)
    r.add(1, 2)
    assert _details(r.add(0, 2)) == [(1, 1, DropReason.NO_PARTNER, "older than an emitted set")]


def test_synchronizer_passes_details_and_defaults():
    sync = Synchronizer()
    assert sync.mode == "approximate" and sync.queue_size == 10 and sync.slop_s == 0.05
    assert sync.slop_ns == 50_000_000 and sync.policy == "optimal" and not sync.reject_late
    pol = sync._policy
    assert pol.age_penalty == 0.1 and pol.max_interval_ns == 50_000_000 and pol.lower_bounds == [0, 0]
    assert ApproximateTimePolicy(2, 3).age_penalty == 0.1 and ApproximateTimePolicy(2, 3).lower_bounds == [0, 0]
    assert make_policy("optimal", "approximate", 3, 7).max_interval_ns == 7  # inclusive by default
    assert make_policy("optimal", "approximate", 3, 7).age_penalty == 0.1
    assert Synchronizer(slop_s=None).slop_s is None and Synchronizer(slop_s=None)._policy.max_interval_ns is None
    sync.push(frame("thermal", 0))
    _, d = sync.push(frame("visible", S))
    assert [(x.stream, x.stamp_ns, x.reason, x.detail) for x in d] == [
        ("thermal", 0, DropReason.NO_PARTNER, f"no set within slop ({S} ns > 50000000 ns)")]
    assert [(x.stream, x.stamp_ns, x.detail) for x in sync.flush()] == [("visible", S, "still queued at end of stream")]
    r = sync.reject("thermal", 7.0, DropReason.DECODE_ERROR)
    assert r.stamp_ns == 7 and type(r.stamp_ns) is int and r.detail == ""
    with pytest.raises(ValueError, match=r"stream must be one of \('thermal', 'visible'\), got 'depth'"):
        sync.reject("depth", 0, DropReason.DECODE_ERROR)
    with pytest.raises(ValueError, match=r"^the rclpy policy needs a slop \(slop_s is None\)$"):
        make_policy("rclpy", "approximate", 3, None)
    with pytest.raises(ValueError, match=r"^a strict slop bound of 0 s pairs nothing; use slop_inclusive=True or "):
        make_policy("optimal", "approximate", 3, 0, slop_inclusive=False)
    with pytest.raises(ValueError, match=r"^inter_message_lower_bounds_ns needs one non-negative value per topic$"):
        ApproximateTimePolicy(2, 3, inter_message_lower_bounds_ns=[1])


def test_given_seq_is_kept_and_missing_seq_is_the_arrival_index():
    sync = Synchronizer("exact")
    sync.push(frame("thermal", 1))
    f = Frame(stamp_ns=2, frame_id="t", image=_IMG, stream="thermal", seq=0)
    sync.push(f)
    assert f.seq == 0
    g = frame("thermal", 3)
    sync.push(g)
    assert g.seq == 2


def test_reject_late_remembers_64_stamps_by_default():
    sync = Synchronizer("approximate", 100, None, reject_late=True)
    for k in range(65):
        sync.push(frame("thermal", k))
    assert [x.reason for x in sync.push(frame("thermal", 0))[1]] == [DropReason.OUT_OF_ORDER]
    assert [x.reason for x in sync.push(frame("thermal", 1))[1]] == [DropReason.DUPLICATE]


def test_counters_as_dict_lists_reasons_in_name_order():
    sync = Synchronizer()
    for reason in (DropReason.UNFLUSHED, DropReason.DECODE_ERROR, DropReason.NO_PARTNER):
        sync.reject("thermal", 0, reason)
    assert list(sync.counters.as_dict()["dropped"]["thermal"]) == ["decode_error", "no_partner", "unflushed"]


def test_pair_drops_keep_stream_detail_and_default():
    t = Frame(stamp_ns=5, frame_id="t", image=_IMG)  # no stream set: the pair position names it
    v = frame("visible", 6)
    drops = pair_drops(Pair(t, v), DropReason.PIPELINE_ERROR, "boom")
    assert [(d.stream, d.stamp_ns, d.reason, d.detail) for d in drops] == [
        ("thermal", 5, DropReason.PIPELINE_ERROR, "boom"), ("visible", 6, DropReason.PIPELINE_ERROR, "boom")]
    assert [d.detail for d in pair_drops(Pair(t, v), DropReason.SUPERSEDED)] == ["", ""]


# ----------------------------------------------------------------------------- LatestPairSlot


def _pair(t: int) -> Pair:
    return Pair(frame("thermal", t), frame("visible", t))


def test_latest_pair_slot_supersedes():
    slot = LatestPairSlot()
    assert slot.get(timeout=0) is None
    p1, p2 = _pair(1), _pair(2)
    assert slot.put(p1) is None
    assert len(slot) == 1
    old = slot.put(p2)
    assert old is p1
    drops = pair_drops(old, DropReason.SUPERSEDED, "newer pair")
    assert [(d.stream, d.stamp_ns, d.reason) for d in drops] == [
        ("thermal", 1, DropReason.SUPERSEDED), ("visible", 1, DropReason.SUPERSEDED)]
    assert slot.get(timeout=0.01) is p2
    assert slot.get(timeout=0.01) is None and len(slot) == 0


def test_latest_pair_slot_threads():
    slot = LatestPairSlot()
    got: list[Pair] = []
    superseded = 0

    def consumer():
        while True:
            p = slot.get(timeout=2.0)
            if p is None:
                return
            got.append(p)
            time.sleep(0.002)  # slower than the producer

    th = threading.Thread(target=consumer)
    th.start()
    for t in range(300):
        if slot.put(_pair(t)) is not None:
            superseded += 1
    time.sleep(0.05)
    slot.close()
    th.join(timeout=5)
    assert not th.is_alive()
    # every pair was either consumed or superseded, consumed ones in order, the newest always delivered
    assert len(got) + superseded == 300
    stamps = [p.stamp_ns for p in got]
    assert stamps == sorted(stamps) and stamps[-1] == 299 and superseded > 0


def test_latest_pair_slot_close_wakes_waiter():
    slot = LatestPairSlot()
    res = []
    th = threading.Thread(target=lambda: res.append(slot.get(timeout=10)))
    th.start()
    time.sleep(0.05)
    t0 = time.monotonic()
    assert slot.close() is None
    th.join(timeout=2)
    assert res == [None] and time.monotonic() - t0 < 1.0
