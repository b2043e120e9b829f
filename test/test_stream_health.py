"""Stream health checks (frequency, timestamps, drops, time jumps, latency) on hand-made snapshots."""

from ivif_fusion.config import DiagnosticsConfig
from ivif_fusion.runtime.stream_health import ERROR, OK, WARN, StreamHealth
from ivif_fusion.runtime.time_jump import JumpEvent

S = 10**9


def _snap(t_recv, t_paired, t_drop, v_recv, v_paired, v_drop, stages=None):
    return {"streams": {"thermal": {"received": t_recv, "paired": t_paired, "pending": 0, "dropped": t_drop},
                        "visible": {"received": v_recv, "paired": v_paired, "pending": 0, "dropped": v_drop}},
            "stages": stages or {}}


def _health(**kw):
    rates = {"thermal": kw.pop("thermal_hz", 0.0), "visible": kw.pop("visible_hz", 0.0)}
    return StreamHealth(DiagnosticsConfig(**kw), rates, {"thermal": "thermal/image_raw", "visible": "rgb/image_raw"},
                        now_s=0.0)


def test_every_frame_dropped_is_error():
    h = _health()
    # 10 s: 90 thermal frames, all dropped as unsupported_encoding; RGB 300 frames, 200 flow drops, 100 paired.
    rep = h.update(10.0, _snap(90, 0, {"unsupported_encoding": 90}, 300, 0, {"no_partner": 300}))
    assert rep.streams["thermal"].level == ERROR
    assert "all 90 thermal frames" in rep.streams["thermal"].message
    assert rep.streams["thermal"].values["drop_ratio.unsupported_encoding"] == "1.000"
    assert rep.streams["visible"].level == ERROR   # nothing paired: every RGB frame dropped too
    assert rep.level == ERROR


def test_stream_below_expected_rate_is_warn():
    h = _health(thermal_hz=9.0, visible_hz=30.0, rate_tolerance=0.1)
    # 5 s: thermal 30 frames = 6.0 Hz (< 8.1), RGB 150 = 30 Hz; 30 pairs processed, the rest flow drops.
    rep = h.update(5.0, _snap(30, 30, {}, 150, 30, {"no_partner": 120}))
    t = rep.streams["thermal"]
    assert (t.level, t.values["rate_hz"], t.values["expected_hz"]) == (WARN, "6.00", "9")
    assert "thermal at 6.00 Hz, expected 9 Hz +-10%" in t.message
    assert rep.streams["visible"].level == OK and rep.streams["visible"].values["drop_ratio.no_partner"] == "0.800"
    assert rep.level == WARN and rep.message == t.message
    # Next window at the expected rate: 45 more thermal frames in 5 s over a 10 s window = 7.5 Hz: still low;
    # rates are measured over the window, like diagnostic_updater's FrequencyStatus.
    rep = h.update(10.0, _snap(75, 75, {}, 300, 75, {"no_partner": 225}))
    assert rep.streams["thermal"].values["rate_hz"] == "7.50" and rep.streams["thermal"].level == WARN


def test_no_frames_is_error_and_faults_warn():
    h = _health(drop_warn_ratio=0.5)
    rep = h.update(5.0, _snap(0, 0, {}, 50, 20, {"decode_error": 25, "superseded": 5}))
    assert rep.streams["thermal"].level == ERROR and "no thermal frames for 5.0 s on thermal/image_raw" in \
        rep.streams["thermal"].message
    assert rep.streams["visible"].level == WARN
    assert rep.streams["visible"].message == "25 of 50 visible frames dropped in 5.0 s (decode_error 25)"


def test_stamps_old_future_zero_are_errors_for_the_period():
    h = _health(max_stamp_age_s=5.0, max_stamp_lead_s=1.0)
    now = 100 * S
    h.observe_stamp("thermal", now - 7 * S, now)
    h.observe_stamp("thermal", now - S // 10, now)
    h.observe_stamp("visible", now + 2 * S, now)
    h.observe_stamp("visible", 0, now)
    rep = h.update(1.0, _snap(2, 2, {}, 2, 2, {}))
    t, v = rep.streams["thermal"], rep.streams["visible"]
    assert t.level == ERROR and "1 thermal stamps up to 7.00 s old" in t.message
    assert t.values["stamp_max_age_s"] == "7.000" and t.values["stamp_max_lead_s"] == "-0.100"
    assert v.level == ERROR and "zero stamp" in v.message and "2.00 s in the future" in v.message
    h.observe_stamp("thermal", now, now)
    h.observe_stamp("visible", now, now)
    rep = h.update(2.0, _snap(4, 4, {}, 4, 4, {}))
    assert rep.level == OK and rep.message == "ok"


def test_time_jump_warns_for_the_window_then_clears():
    h = _health()
    h.note_jump(3.0, JumpEvent("thermal", 20 * S, 8 * S), lost=3)
    rep = h.update(4.0, _snap(10, 10, {}, 10, 10, {}))
    assert rep.level == WARN
    assert rep.message == ("time jump: thermal stamps went back by 12.000 s (20000000000 -> 8000000000); "
                           "pairing reset, 3 frames dropped as time_jump")
    for t in (5.0, 6.0, 7.0, 8.0, 9.0):  # the window slides past the jump (5 periods)
        rep = h.update(t, _snap(10 + int(t), 10 + int(t), {}, 10 + int(t), 10 + int(t), {}))
    assert rep.level == OK


def test_latency_window_mean_and_warning():
    from ivif_fusion.metrics.latency import StageStats

    h = _health(latency_warn_ms=100.0)
    rep = h.update(1.0, _snap(9, 9, {}, 9, 9, {}, {"node_total": StageStats(4, 200.0, 80.0, 50.0)}))
    assert rep.latency.level == OK and rep.latency.message == "mean latency 50.0 ms over 4 pairs"
    rep = h.update(2.0, _snap(18, 18, {}, 18, 18, {}, {"node_total": StageStats(6, 1000.0, 500.0, 400.0)}))
    # Window mean over the 6 pairs since the start: 1000 / 6 = 166.7 ms > 100.
    assert rep.latency.level == WARN and "mean latency 167 ms over 6 pairs" in rep.latency.message


def test_middleware_loss_warns_without_an_expected_rate():
    h = _health()
    h.observe_lost("visible", 12)
    h.observe_lost("visible", 30)     # running total from the message_lost event
    rep = h.update(5.0, _snap(45, 45, {}, 18, 18, {}))
    v = rep.streams["visible"]
    assert v.level == WARN and v.values["lost"] == "30" and v.values["lost_total"] == "30"
    assert v.message.startswith("30 visible messages lost by the middleware before the node in 5.0 s (18 received)")
    assert rep.streams["thermal"].level == OK and rep.streams["thermal"].values["lost"] == "0"
    # No new loss in the following windows: the window slides past it.
    for t in (6.0, 7.0, 8.0, 9.0, 10.0):
        rep = h.update(t, _snap(45 + int(t), 45 + int(t), {}, 18 + int(t), 18 + int(t), {}))
    assert rep.streams["visible"].level == OK and rep.streams["visible"].values["lost_total"] == "30"
