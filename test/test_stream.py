"""The node/replay shared edges (ivif_fusion.stream): decode-or-drop, pair accounting, output plan.

Worked scenarios with hand-computed counts; messages are built with the rosbags classes of the bag
typestore (no ROS installation needed).
"""

from __future__ import annotations

import numpy as np
import pytest

from ivif_fusion.config import RosConfig
from ivif_fusion.io import bags
from ivif_fusion.io.messages import array_to_image_msg, make_header, stamp_ns
from ivif_fusion.runtime.sync import Synchronizer
from ivif_fusion.stream.accounting import LatestPairAccounting, PairAccounting
from ivif_fusion.stream.decode import decode_or_drop, header_stamp_or
from ivif_fusion.stream.outputs import DETECTIONS, IMAGE, Output, OutputPlan, task_outputs
from ivif_fusion.types import Detection, Drop, DropReason, Frame, Pair, Result, TaskOutput

TYPES = bags.typestore().types
TOPICS = {"thermal": "/t", "visible": "/v"}


def frame(stamp: int, stream: str) -> Frame:
    shape = (2, 2) if stream == "thermal" else (2, 2, 3)
    return Frame(stamp, f"{stream}_frame", np.zeros(shape, np.float32), "mono8", stream)


def header(stamp: int, frame_id: str = "cam") -> object:
    return make_header(TYPES[bags.HEADER], TYPES[bags.TIME], stamp, frame_id)


# ----------------------------------------------------------------------------- pair accounting


def test_pair_accounting_counts_every_step():
    acc = PairAccounting(Synchronizer("exact", 10, None))
    assert acc.push(frame(1, "thermal")) == ([], [])
    snap = acc.snapshot()
    assert snap["streams"]["thermal"] == {"received": 1, "paired": 0, "pending": 1, "dropped": {}}
    assert snap["streams"]["visible"] == {"received": 0, "paired": 0, "pending": 0, "dropped": {}}
    pairs, drops = acc.push(frame(1, "visible"))
    assert drops == [] and [(p.thermal.stamp_ns, p.visible.stamp_ns) for p in pairs] == [(1, 1)]
    # the pair is in flight: both streams pending, nothing processed yet
    snap = acc.snapshot()
    assert snap["pairs"] == {"processed": 0, "in_flight": 1}
    assert [snap["streams"][s]["pending"] for s in ("thermal", "visible")] == [1, 1]
    assert acc.done(pairs[0]) == []
    assert acc.snapshot()["pairs"] == {"processed": 1, "in_flight": 0}

    # a second pair fails in the pipeline: two drops, one per stream, with reason and detail
    for s in ("thermal", "visible"):
        pairs, _ = acc.push(frame(2, s))
    failed = acc.done(pairs[0], DropReason.PIPELINE_ERROR, "boom")
    assert [(d.stream, d.stamp_ns, d.reason, d.detail) for d in failed] == [
        ("thermal", 2, DropReason.PIPELINE_ERROR, "boom"), ("visible", 2, DropReason.PIPELINE_ERROR, "boom")]
    for s in ("thermal", "visible"):
        pairs, _ = acc.push(frame(3, s))
    acc.done(pairs[0], DropReason.SIZE_MISMATCH, "differ")
    for s in ("thermal", "visible"):
        pairs, _ = acc.push(frame(4, s))
    acc.done(pairs[0], DropReason.PIPELINE_ERROR, "again")

    # messages that never became frames
    rejected = acc.reject("visible", 7, DropReason.UNSUPPORTED_ENCODING, "yuv422")
    assert (rejected.stream, rejected.stamp_ns, rejected.reason, rejected.detail) == (
        "visible", 7, DropReason.UNSUPPORTED_ENCODING, "yuv422")
    again = acc.reject_drop(Drop("thermal", 8, DropReason.NON_FINITE, "nan"))
    assert (again.stream, again.stamp_ns, again.reason, again.detail) == ("thermal", 8, DropReason.NON_FINITE, "nan")

    # one frame waits; one pair is in flight: pending = queued + in flight
    for s in ("thermal", "visible"):
        pairs, _ = acc.push(frame(10, s))
    acc.push(frame(11, "thermal"))
    snap = acc.snapshot()
    assert snap["pairs"] == {"processed": 1, "in_flight": 1}
    assert snap["streams"]["thermal"] == {"received": 7, "paired": 1, "pending": 2,
                                          "dropped": {"non_finite": 1, "pipeline_error": 2, "size_mismatch": 1}}
    assert list(snap["streams"]["thermal"]["dropped"]) == ["non_finite", "pipeline_error", "size_mismatch"]
    assert snap["streams"]["visible"] == {"received": 6, "paired": 1, "pending": 1,
                                          "dropped": {"pipeline_error": 2, "size_mismatch": 1,
                                                      "unsupported_encoding": 1}}
    assert PairAccounting.balanced(snap)
    per = acc.per_stream(TOPICS)
    assert per["thermal"] == {"topic": "/t", "received": 7, "paired": 5, "fused": 1,
                              "dropped": {"non_finite": 1, "pipeline_error": 2, "size_mismatch": 1},
                              "dropped_total": 4, "balanced": False}
    assert per["visible"]["paired"] == 5 and per["visible"]["dropped_total"] == 4 and not per["visible"]["balanced"]

    # the pair in flight is published; the lone thermal frame ends UNFLUSHED
    acc.done(pairs[0])
    assert not acc.per_stream(TOPICS)["thermal"]["balanced"]   # one frame still queued
    assert acc.per_stream(TOPICS)["visible"]["balanced"]
    flushed = acc.flush()
    assert [(d.stream, d.stamp_ns, d.reason) for d in flushed] == [("thermal", 11, DropReason.UNFLUSHED)]
    per = acc.per_stream(TOPICS)
    assert per["thermal"]["fused"] == 2 and per["thermal"]["dropped"]["unflushed"] == 1
    assert per["thermal"]["balanced"] and per["visible"]["balanced"]
    assert acc.snapshot()["streams"]["thermal"]["pending"] == 0


def test_balanced_checks_every_stream():
    ok = {"received": 5, "paired": 2, "pending": 1, "dropped": {"a": 1, "b": 1}}
    assert PairAccounting.balanced({"streams": {"thermal": ok, "visible": dict(ok)}})
    for bad in ({**ok, "received": 6}, {**ok, "pending": 0}, {**ok, "dropped": {"a": 1}}, {**ok, "paired": 3}):
        assert not PairAccounting.balanced({"streams": {"thermal": ok, "visible": bad}})


def test_stage_timings_are_running_stats():
    acc = PairAccounting(Synchronizer())
    acc.add_timing("decode", 2)
    acc.add_timing("decode", 6.0)
    acc.add_timing("decode", 1.0)
    acc.add_timings({"total": 3, "wait": 0.5})
    acc.add_timings({"total": 5.0})
    st = acc.snapshot()["stages"]
    assert sorted(st) == ["decode", "total", "wait"]
    d = st["decode"]
    assert (d.count, d.total_ms, d.max_ms, d.last_ms, d.mean_ms) == (3, 9.0, 6.0, 1.0, 3.0)
    assert isinstance(d.total_ms, float) and isinstance(st["total"].total_ms, float)
    t = st["total"]
    assert (t.count, t.total_ms, t.max_ms, t.last_ms) == (2, 8.0, 5.0, 5.0)
    assert (st["wait"].count, st["wait"].last_ms) == (1, 0.5)
    # a snapshot is a copy: adding later does not change it
    acc.add_timing("decode", 100.0)
    assert d.count == 3 and acc.snapshot()["stages"]["decode"].count == 4


def test_latest_pair_wins_hand_over():
    acc = LatestPairAccounting(Synchronizer("exact", 10, None))
    assert acc.take(timeout=0) is None
    acc.hand_over(frame(1, "thermal"))
    assert acc.hand_over(frame(1, "visible")) == []
    acc.hand_over(frame(2, "thermal"))
    drops = acc.hand_over(frame(2, "visible"))
    assert [(d.stream, d.stamp_ns, d.reason, d.detail) for d in drops] == [
        ("thermal", 1, DropReason.SUPERSEDED, "a newer pair arrived before inference"),
        ("visible", 1, DropReason.SUPERSEDED, "a newer pair arrived before inference")]
    assert acc.snapshot()["pairs"] == {"processed": 0, "in_flight": 1}
    pair = acc.take(timeout=0)
    assert pair.thermal.stamp_ns == 2 and acc.take(timeout=0) is None
    acc.done(pair)
    acc.hand_over(frame(3, "thermal"))
    acc.hand_over(frame(3, "visible"))
    acc.hand_over(frame(4, "visible"))
    left = acc.close()
    assert [(d.stream, d.stamp_ns, d.reason, d.detail) for d in left] == [
        ("thermal", 3, DropReason.UNFLUSHED, "node shut down before inference"),
        ("visible", 3, DropReason.UNFLUSHED, "node shut down before inference"),
        ("visible", 4, DropReason.UNFLUSHED, "still queued at end of stream")]
    snap = acc.snapshot()
    assert snap["pairs"] == {"processed": 1, "in_flight": 0}
    assert snap["streams"]["visible"] == {"received": 4, "paired": 1, "pending": 0,
                                          "dropped": {"superseded": 1, "unflushed": 2}}
    assert acc.take(timeout=0) is None and acc.close() == []


def test_hand_over_returns_pairing_drops_and_superseded_pairs_together():
    """Exact mode: a newer pair drops an older unmatched stamp (no_partner) and replaces the waiting pair."""
    acc = LatestPairAccounting(Synchronizer("exact", 10, None))
    for f in (frame(1, "thermal"), frame(1, "visible"), frame(2, "thermal"), frame(3, "thermal")):
        acc.hand_over(f)
    drops = acc.hand_over(frame(3, "visible"))
    assert sorted((d.stream, d.stamp_ns, d.reason.value) for d in drops) == [
        ("thermal", 1, "superseded"), ("thermal", 2, "no_partner"), ("visible", 1, "superseded")]
    assert acc.take(timeout=0).thermal.stamp_ns == 3


# ----------------------------------------------------------------------------- decode-or-drop


def test_decode_or_drop_frames_and_drops():
    h = header(5_000_000_123, "th")
    good = array_to_image_msg(TYPES[bags.IMAGE], h, np.full((2, 3), 51, np.uint8), "mono8")
    f = decode_or_drop(good, "thermal", fallback_stamp_ns=9, received_s=12.5)
    assert isinstance(f, Frame)
    assert (f.stamp_ns, f.frame_id, f.stream, f.encoding, f.received_s) == (5_000_000_123, "th", "thermal", "mono8",
                                                                            12.5)
    assert float(f.image[0, 0]) == pytest.approx(0.2)
    assert decode_or_drop(good, "thermal").received_s is None

    missing = decode_or_drop(None, "visible", fallback_stamp_ns=77, error="cannot deserialize: x")
    assert missing == Drop("visible", 77, DropReason.DECODE_ERROR, "cannot deserialize: x")
    assert decode_or_drop(None, "thermal").detail == "message could not be read"
    assert decode_or_drop(None, "thermal").stamp_ns == 0

    bad = array_to_image_msg(TYPES[bags.IMAGE], h, np.zeros((2, 3), np.uint8), "mono8")
    bad.encoding = "yuv422"
    d = decode_or_drop(bad, "thermal", fallback_stamp_ns=9)
    assert (d.stream, d.stamp_ns, d.reason) == ("thermal", 5_000_000_123, DropReason.UNSUPPORTED_ENCODING)
    assert d.detail.startswith("unsupported image encoding 'yuv422'")
    nan = array_to_image_msg(TYPES[bags.IMAGE], h, np.array([[np.nan, 0.0]], np.float32), "32FC1")
    assert decode_or_drop(nan, "thermal").reason == DropReason.NON_FINITE

    class Broken:  # any other failure is a DECODE_ERROR drop stamped with the fallback
        @property
        def header(self) -> object:
            raise RuntimeError("no header")

    d = decode_or_drop(Broken(), "visible", fallback_stamp_ns=31)
    assert (d.stream, d.stamp_ns, d.reason) == ("visible", 31, DropReason.DECODE_ERROR)
    assert "invalid header" in d.detail or "no header" in d.detail


def test_header_stamp_or():
    class Msg:
        header = header(3 * 10**9 + 4)

    assert header_stamp_or(Msg(), 8) == 3 * 10**9 + 4
    assert header_stamp_or(object(), 8) == 8


# ----------------------------------------------------------------------------- output plan


def test_task_outputs_follow_kind_and_switches():
    ros = RosConfig()
    assert task_outputs("d", "detection", ros, "/p") == [Output("fused", "d", "/p/fused/d", IMAGE),
                                                         Output("detections", "d", "/p/detections/d", DETECTIONS)]
    assert task_outputs("s", "segmentation", ros, "~") == [Output("fused", "s", "~/fused/s", IMAGE),
                                                           Output("mask", "s", "~/mask/s", IMAGE)]
    assert task_outputs("f", "fusion", ros, "~") == [Output("fused", "f", "~/fused/f", IMAGE)]
    assert IMAGE == "sensor_msgs/msg/Image" and DETECTIONS == "vision_msgs/msg/Detection2DArray"
    assert task_outputs("d", "detection", RosConfig(publish_fused=False), "~") == [
        Output("detections", "d", "~/detections/d", DETECTIONS)]
    assert task_outputs("d", "detection", RosConfig(publish_detections=False), "~") == [
        Output("fused", "d", "~/fused/d", IMAGE)]
    assert task_outputs("s", "segmentation", RosConfig(publish_masks=False), "~") == [
        Output("fused", "s", "~/fused/s", IMAGE)]
    assert task_outputs("s", "segmentation", RosConfig(publish_detections=False, publish_fused=False), "~") == [
        Output("mask", "s", "~/mask/s", IMAGE)]
    assert task_outputs("d", "detection", RosConfig(publish_masks=False, publish_fused=False), "~") == [
        Output("detections", "d", "~/detections/d", DETECTIONS)]


def _result(stamp: int = 7 * 10**9 + 5) -> Result:
    pair = Pair(Frame(stamp, "th_frame", np.zeros((2, 3), np.float32), "mono8", "thermal"),
                Frame(stamp + 2, "vi_frame", np.zeros((2, 3, 3), np.float32), "rgb8", "visible"))
    fused = np.zeros((2, 3, 3), np.uint8)
    fused[0, 0] = (10, 20, 30)
    return Result(pair, {
        "det": TaskOutput(fused, [Detection(1, "car", 0.5, 0.0, 0.0, 2.0, 2.0)]),
        "seg": TaskOutput(fused, None, np.array([[0, 1, 2], [3, 4, 5]], np.uint8)),
        "fus": TaskOutput(fused),
    })


def test_output_plan_messages_with_rosbags_classes():
    plan = OutputPlan(TYPES, {"det": "detection", "seg": "segmentation", "fus": "fusion"},
                      RosConfig(fused_encoding="bgr8"), "thermal", "/ivif/")
    assert [o.topic for o in plan.outputs] == ["/ivif/fused/det", "/ivif/detections/det", "/ivif/fused/seg",
                                               "/ivif/mask/seg", "/ivif/fused/fus"]
    res = _result()
    msgs = plan.messages(res)
    assert [(o.kind, o.task) for o, _ in msgs] == [("fused", "det"), ("detections", "det"), ("fused", "seg"),
                                                   ("mask", "seg"), ("fused", "fus")]
    for o, m in msgs:
        assert m.__msgtype__ == o.msgtype
        assert (stamp_ns(m.header), m.header.frame_id) == (7 * 10**9 + 5, "th_frame")
    assert len({id(m.header) for _, m in msgs}) == len(msgs)
    fused = msgs[0][1]
    assert (fused.encoding, fused.height, fused.width, fused.step) == ("bgr8", 2, 3, 9)
    assert bytes(fused.data[:3]) == bytes([30, 20, 10])
    dets = msgs[1][1].detections
    assert len(dets) == 1 and dets[0].results[0].hypothesis.class_id == "car"
    assert (dets[0].bbox.center.position.x, dets[0].bbox.size_x) == (1.0, 2.0)
    mask = msgs[3][1]
    assert (mask.encoding, mask.step, bytes(mask.data)) == ("mono8", 3, bytes([0, 1, 2, 3, 4, 5]))

    # the visible reference; outputs a task did not produce, or a task missing from the result, are skipped
    plan = OutputPlan(TYPES, {"det": "detection", "gone": "fusion"}, RosConfig(), "visible", "~")
    res.outputs["det"] = TaskOutput(res.outputs["det"].fused_rgb, None)
    msgs = plan.messages(res)
    assert [(o.kind, o.task) for o, _ in msgs] == [("fused", "det")]
    m = msgs[0][1]
    assert (stamp_ns(m.header), m.header.frame_id, m.encoding) == (7 * 10**9 + 7, "vi_frame", "rgb8")
    res.outputs["det"] = TaskOutput(None, [])   # no fused image; an empty detection list is still a message
    assert [(o.kind, len(m.detections)) for o, m in plan.messages(res)] == [("detections", 0)]
    # a segmentation task without a fused image: only its mask goes out
    seg_plan = OutputPlan(TYPES, {"seg": "segmentation"}, RosConfig(), "thermal", "~")
    res.outputs["seg"] = TaskOutput(None, None, np.zeros((2, 3), np.uint8))
    assert [o.kind for o, _ in seg_plan.messages(res)] == ["mask"]


def test_output_plan_rejects_unknown_reference():
    with pytest.raises(ValueError, match="reference must be 'thermal' or 'visible', got 'rgb'"):
        OutputPlan(TYPES, {}, RosConfig(), "rgb", "~")
    plan = OutputPlan(TYPES, {"x": "fusion"}, RosConfig(), "thermal", "/a//")
    assert [o.topic for o in plan.outputs] == ["/a/fused/x"]
    assert [o.topic for o in OutputPlan(TYPES, {"x": "fusion"}, RosConfig(), "thermal", "/camX/").outputs] == [
        "/camX/fused/x"]
    header_msg = plan.header(_result(11).pair)
    assert (stamp_ns(header_msg), header_msg.frame_id) == (11, "th_frame")
    assert type(header_msg) is TYPES[bags.HEADER]
