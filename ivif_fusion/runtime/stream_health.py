"""Health of the node's input streams, in the manner of diagnostic_updater (no ROS here).

:class:`StreamHealth` is fed every received frame's stamp (:meth:`observe_stamp`, with the node
clock's time), time jumps (:meth:`note_jump`) and, once per diagnostics period, the accounting
snapshot (:meth:`update`). It keeps the last ``WINDOW`` periods and judges, per stream:

- frequency (FrequencyStatus): frames received per second over the window against ``rate_hz``
  of the stream's config, +- ``rate_tolerance``; no frame at all in the window is an ERROR;
- timestamps (TimeStampStatus): a stamp older than ``max_stamp_age_s`` or ahead of the clock by
  more than ``max_stamp_lead_s`` in the last period is an ERROR, like a zero stamp;
- drops: the fraction of the window's frames dropped for a fault (anything but the normal
  flow-control reasons ``no_partner`` and ``superseded``) at ``drop_warn_ratio`` is a WARN; every
  frame of the window dropped, whatever the reason, is an ERROR ("everything dropped" never
  reads OK);
- messages the middleware reports lost before they reached the node (DDS ``message_lost``
  events, :meth:`observe_lost`) in the window are a WARN: the loss is visible even without
  an expected rate;
- a time jump in the window is a WARN;

and, for the node, the window's mean latency (``node_total``) against ``latency_warn_ms``.
Levels are OK / WARN / ERROR (0 / 1 / 2, the DiagnosticStatus values); every non-OK finding
says what was measured and what to check.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from ..config import DiagnosticsConfig
from ..types import DropReason
from .time_jump import JumpEvent

OK, WARN, ERROR = 0, 1, 2
WINDOW = 5
"""Diagnostics periods a rate, a drop ratio or a time jump is judged over (diagnostic_updater's default)."""
FLOW_REASONS = (DropReason.NO_PARTNER.value, DropReason.SUPERSEDED.value)
"""Drops that are how pairing works (extra frames of the faster camera, latest-pair-wins), not faults."""
LATENCY_STAGE = "node_total"


@dataclass
class Finding:
    level: int
    message: str


@dataclass
class StreamReport:
    """One stream's judgement for a period: level, message and the values behind it."""

    level: int
    message: str
    values: dict[str, str] = field(default_factory=dict)


@dataclass
class HealthReport:
    streams: dict[str, StreamReport]
    latency: Finding
    level: int
    message: str


@dataclass
class _Sample:
    t_s: float
    received: int
    paired: int
    dropped: dict[str, int]
    lost: int = 0


@dataclass
class _StampStats:
    count: int = 0
    zero: int = 0
    too_old: int = 0
    too_new: int = 0
    max_age_s: float = float("-inf")
    max_lead_s: float = float("-inf")


def _worst(findings: list[Finding]) -> Finding:
    bad = [f for f in findings if f.level > OK]
    if not bad:
        return Finding(OK, "ok")
    top = max(f.level for f in bad)
    return Finding(top, "; ".join(f.message for f in bad if f.level == top))


class StreamHealth:
    """Per-stream frequency, timestamp, drop and time-jump checks (see module docstring)."""

    def __init__(self, cfg: DiagnosticsConfig, rates_hz: dict[str, float], topics: dict[str, str], now_s: float
                 ) -> None:
        self.cfg = cfg
        self.rates_hz = rates_hz
        self.topics = topics
        self._samples = {s: deque([_Sample(now_s, 0, 0, {})], maxlen=WINDOW + 1) for s in rates_hz}
        self._stamps = {s: _StampStats() for s in rates_hz}
        self._latency: deque[tuple[int, float]] = deque([(0, 0.0)], maxlen=WINDOW + 1)
        self._jumps: deque[tuple[float, str]] = deque(maxlen=8)
        self._lost = dict.fromkeys(rates_hz, 0)

    # ------------------------------------------------------------------ inputs

    def observe_stamp(self, stream: str, stamp_ns: int, now_ns: int) -> None:
        """A frame of ``stream`` arrived at ``now_ns`` (node clock) carrying ``stamp_ns``."""
        st = self._stamps[stream]
        st.count += 1
        if stamp_ns == 0:
            st.zero += 1
            return
        delta_s = (now_ns - stamp_ns) / 1e9
        st.max_age_s = max(st.max_age_s, delta_s)
        st.max_lead_s = max(st.max_lead_s, -delta_s)
        if self.cfg.max_stamp_age_s > 0 and delta_s > self.cfg.max_stamp_age_s:
            st.too_old += 1
        if self.cfg.max_stamp_lead_s > 0 and -delta_s > self.cfg.max_stamp_lead_s:
            st.too_new += 1

    def observe_lost(self, stream: str, total: int) -> None:
        """The middleware's running count of ``stream`` messages lost before the node (message_lost event)."""
        self._lost[stream] = max(self._lost[stream], int(total))

    def note_jump(self, now_s: float, event: JumpEvent | None, lost: int) -> None:
        """Pairing was reset at ``now_s`` because of ``event`` (None: the clock jumped); ``lost`` frames dropped."""
        what = event.describe() if event is not None else "the ROS clock jumped back"
        self._jumps.append((now_s, f"time jump: {what}; pairing reset, {lost} frames dropped as time_jump"))

    # ------------------------------------------------------------------ judgement

    def update(self, now_s: float, snapshot: dict, extra: list[Finding] | None = None) -> HealthReport:
        """Judge the window ending at ``now_s`` from an accounting snapshot (cumulative counters)."""
        streams = {s: self._judge_stream(s, now_s, snapshot["streams"][s]) for s in self._samples}
        latency = self._judge_latency(snapshot.get("stages", {}))
        window_s = self._window_s(now_s)
        jumps = [Finding(WARN, msg) for t, msg in self._jumps if now_s - t <= window_s]
        findings = [Finding(r.level, r.message) for r in streams.values()] + [latency] + jumps + list(extra or [])
        top = _worst(findings)
        return HealthReport(streams, latency, top.level, top.message)

    def _window_s(self, now_s: float) -> float:
        first = next(iter(self._samples.values()))[0]
        return max(now_s - first.t_s, 1e-9)

    def _judge_stream(self, stream: str, now_s: float, counts: dict) -> StreamReport:
        samples = self._samples[stream]
        samples.append(_Sample(now_s, int(counts["received"]), int(counts["paired"]), dict(counts["dropped"]),
                               self._lost[stream]))
        first, last = samples[0], samples[-1]
        span = max(last.t_s - first.t_s, 1e-9)
        received = last.received - first.received
        dropped = {r: n - first.dropped.get(r, 0) for r, n in last.dropped.items() if n - first.dropped.get(r, 0)}
        n_dropped = sum(dropped.values())
        faults = sum(n for r, n in dropped.items() if r not in FLOW_REASONS)
        rate = received / span
        expected = self.rates_hz[stream]
        topic = self.topics.get(stream, stream)
        values = {"window_s": f"{span:.2f}", "rate_hz": f"{rate:.2f}", "expected_hz": f"{expected:g}",
                  "received": str(received), "dropped": str(n_dropped), "lost": str(last.lost - first.lost),
                  "lost_total": str(last.lost)}
        values.update({f"drop_ratio.{r}": f"{n / received:.3f}" for r, n in sorted(dropped.items()) if received})
        findings: list[Finding] = []
        if received == 0:
            findings.append(Finding(ERROR, f"no {stream} frames for {span:.1f} s on {topic}: check that the camera "
                                           "publishes, the topic name or remapping, and QoS compatibility"))
        elif n_dropped >= received:
            why = ", ".join(f"{r} {n}" for r, n in sorted(dropped.items()))
            findings.append(Finding(ERROR, f"all {received} {stream} frames of the last {span:.1f} s were dropped "
                                           f"({why}); see the drop reasons in docs/ros.md"))
        elif faults / received >= self.cfg.drop_warn_ratio:
            why = ", ".join(f"{r} {n}" for r, n in sorted(dropped.items()) if r not in FLOW_REASONS)
            findings.append(Finding(WARN, f"{faults} of {received} {stream} frames dropped in {span:.1f} s ({why})"))
        lost = last.lost - first.lost
        if lost > 0:
            findings.append(Finding(WARN, f"{lost} {stream} messages lost by the middleware before the node in "
                                          f"{span:.1f} s ({received} received): use the large-image DDS profile, "
                                          "a larger history depth or reliable QoS (docs/ros.md, Transport and QoS)"))
        if expected > 0 and received > 0:
            lo, hi = expected * (1 - self.cfg.rate_tolerance), expected * (1 + self.cfg.rate_tolerance)
            if rate < lo:
                findings.append(Finding(WARN, f"{stream} at {rate:.2f} Hz, expected {expected:g} Hz "
                                              f"+-{self.cfg.rate_tolerance:.0%}: frames are lost before the node "
                                              "(QoS reliability and depth, the DDS profile for large images) or "
                                              "the camera runs slow"))
            elif rate > hi:
                findings.append(Finding(WARN, f"{stream} at {rate:.2f} Hz, expected {expected:g} Hz "
                                              f"+-{self.cfg.rate_tolerance:.0%}: check rate_hz and the camera setting"))
        findings += self._judge_stamps(stream, values)
        top = _worst(findings)
        return StreamReport(top.level, top.message if top.level else f"{stream} ok", values)

    def _judge_stamps(self, stream: str, values: dict[str, str]) -> list[Finding]:
        st, self._stamps[stream] = self._stamps[stream], _StampStats()
        if st.count > st.zero:
            values["stamp_max_age_s"] = f"{st.max_age_s:.3f}"
            values["stamp_max_lead_s"] = f"{st.max_lead_s:.3f}"
        out = []
        if st.zero:
            out.append(Finding(ERROR, f"{st.zero} {stream} frames with a zero stamp: the driver does not stamp"))
        if st.too_old:
            out.append(Finding(ERROR, f"{st.too_old} {stream} stamps up to {st.max_age_s:.2f} s old on arrival "
                                      f"(max_stamp_age_s {self.cfg.max_stamp_age_s:g}): clocks not synchronised, "
                                      "a bag played without --clock/use_sim_time, or a large transport delay"))
        if st.too_new:
            out.append(Finding(ERROR, f"{st.too_new} {stream} stamps up to {st.max_lead_s:.2f} s in the future "
                                      f"(max_stamp_lead_s {self.cfg.max_stamp_lead_s:g}): clocks not synchronised"))
        return out

    def _judge_latency(self, stages: dict) -> Finding:
        st = stages.get(LATENCY_STAGE)
        count, total = (st.count, st.total_ms) if st is not None else (0, 0.0)
        self._latency.append((count, total))
        (c0, t0), (c1, t1) = self._latency[0], self._latency[-1]
        if c1 == c0:
            return Finding(OK, "no pair published in the window")
        mean = (t1 - t0) / (c1 - c0)
        if self.cfg.latency_warn_ms > 0 and mean > self.cfg.latency_warn_ms:
            return Finding(WARN, f"mean latency {mean:.0f} ms over {c1 - c0} pairs > latency_warn_ms "
                                 f"{self.cfg.latency_warn_ms:g}: use pipeline.max_side, a faster backend or a GPU")
        return Finding(OK, f"mean latency {mean:.1f} ms over {c1 - c0} pairs")
