"""Pairing policies against worked scenarios written as data (test/data/pairing/*.yaml).

Each case gives the inputs in arrival order and every set the reference emits, with the input
whose arrival emits it; most also give every drop with its reason and what is still pending. The
``optimal`` files hold the scenarios of message_filters' C++ tests (ApproximateTime, ExactTime),
the ``rclpy`` files those of its Python tests plus hand-worked cases. Two-topic cases also go
through :class:`Synchronizer` (topic 0 = thermal, 1 = visible), which must give the same pairs at
the same moments and account for every frame.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from ivif_fusion.runtime.sync import (STREAMS, ApproximateTimePolicy, ExactTimePolicy, RclpyApproximatePolicy,
                                      RclpyExactPolicy, Synchronizer, make_policy, seconds_to_ns)
from ivif_fusion.types import DropReason, Frame

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


def stamp_ns(seconds: float) -> int:
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
        emitted, dropped = pol.add(topic, stamp_ns(t), name)
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
    img = np.zeros((1, 1), np.float32)
    sets, drops = [], []
    for k, (name, topic, t) in enumerate(case["input"]):
        frame = Frame(stamp_ns(t), name, img, "mono8", STREAMS[topic])
        pairs, dropped = sync.push(frame)
        sets += [{"after": k, "set": [p.thermal.frame_id, p.visible.frame_id]} for p in pairs]
        drops += [[k, STREAMS.index(d.stream), d.stamp_ns, d.reason.value] for d in dropped]
        assert sync.balanced()
    assert sets == case["expected"]
    assert all(p.thermal.stream == "thermal" and p.visible.stream == "visible" for p in [])
    if "drops" in case:
        by_name = {name: (topic, stamp_ns(t)) for name, topic, t in case["input"]}
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
