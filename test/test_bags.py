"""ROS 2 bags without ROS: make-bag (jitter, isolated faults, sidecar), reading back, bad bags."""

from __future__ import annotations

import json
import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from ivif_fusion.io import bags, fault_bag
from ivif_fusion.io.messages import ConversionError, msg_to_frame, stamp_ns
from ivif_fusion.types import DropReason

W, H = 80, 60


def write_pairs(root: Path, n: int, seed: int = 0, size: tuple[int, int] = (W, H)) -> Path:
    """n synthetic registered pairs: a bright warm blob (thermal) over a textured colour scene."""
    rng = np.random.default_rng(seed)
    (root / "ir").mkdir(parents=True)
    (root / "vi").mkdir(parents=True)
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w]
    for i in range(n):
        cx, cy = rng.uniform(10, w - 10), rng.uniform(10, h - 10)
        blob = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / 60.0)
        ir = np.clip(40 + 200 * blob + rng.normal(0, 5, (h, w)), 0, 255).astype(np.uint8)
        vi = np.clip(rng.normal(110, 30, (h, w, 3)) + np.stack([xx, yy, xx + yy], -1), 0, 255).astype(np.uint8)
        cv2.imwrite(str(root / "ir" / f"{i:05d}.png"), ir)
        cv2.imwrite(str(root / "vi" / f"{i:05d}.png"), vi[..., ::-1])
    return root


@pytest.fixture(scope="module")
def pairs_dir(tmp_path_factory) -> Path:  # noqa: ANN001
    return write_pairs(tmp_path_factory.mktemp("pairs"), 16)


FAULTS = dict(drop=0.2, duplicate=0.2, reorder=0.2, corrupt=0.2)


def test_typestore_has_vision_msgs_roundtrip():
    ts = bags.typestore()
    assert "vision_msgs/msg/Detection2DArray" in ts.types
    from ivif_fusion.io.messages import detections_to_msg, msg_to_detections
    from ivif_fusion.types import Detection

    hdr = fault_bag.bag_header(1_700_000_000_123_456_789, "thermal_optical_frame")
    msg = detections_to_msg(ts.types, hdr, [Detection(2, "car", 0.75, 10, 20, 30, 60)])
    back = ts.deserialize_cdr(ts.serialize_cdr(msg, bags.DETECTIONS), bags.DETECTIONS)
    assert stamp_ns(back.header) == 1_700_000_000_123_456_789
    d = msg_to_detections(back, ["person", "bicycle", "car"])[0]
    assert (d.class_id, d.label, d.x1, d.y1, d.x2, d.y2) == (2, "car", 10, 20, 30, 60)
    assert d.score == pytest.approx(0.75)


@pytest.mark.parametrize("storage", ["sqlite3", "mcap"])
def test_make_bag_stamps_faults_and_sidecar(pairs_dir: Path, tmp_path: Path, storage: str):
    opts = fault_bag.MakeBagOptions(storage=storage, rate_hz=10, jitter_ms=4, seed=7, **FAULTS)
    res = fault_bag.make_bag(pairs_dir, tmp_path / "bag", opts, progress=False)
    side = fault_bag.load_sidecar(res.sidecar)
    assert side["pairs"] == 16 and side["image_size"] == [W, H]
    kinds = [f["kind"] for f in side["faults"]]
    assert len(kinds) >= 2, kinds
    # isolated faults: never in the first/last two pairs, never closer than two indices
    idx = [f["index"] for f in side["faults"]]
    assert min(idx) >= 2 and max(idx) <= 16 - 3
    ends = [i + (1 if k == "reorder" else 0) for i, k in zip(idx, kinds)]
    assert all(b - a >= 3 for a, b in zip(ends, idx[1:]))

    msgs = bags.read_all(res.bag)
    by_topic: dict[str, list] = {bags.THERMAL_TOPIC: [], bags.RGB_TOPIC: []}
    for m in msgs:
        assert m.msg is not None
        by_topic[m.topic].append(m)
    log_times = [m.log_time_ns for m in msgs]
    assert log_times == sorted(log_times)  # the reader gives log-time order
    for stream, topic in (("thermal", bags.THERMAL_TOPIC), ("visible", bags.RGB_TOPIC)):
        got = [stamp_ns(m.msg.header) for m in by_topic[topic]]
        want = []
        for f in side["frames"]:
            want += [f[f"{stream}_stamp_ns"]] * f["written"][stream]
        assert sorted(got) == sorted(want)
        assert len(got) == side["messages"][topic]
        assert {m.msg.header.frame_id for m in by_topic[topic]} == {side["frame_ids"][stream]}
        # jitter: within 2 std (8 ms) of the nominal 10 Hz grid
        nominal = np.array([opts.start_ns + round(f["index"] * 1e8) for f in side["frames"]])
        stamps = np.array([f[f"{stream}_stamp_ns"] for f in side["frames"]])
        assert np.abs(stamps - nominal).max() <= 8_000_000
        assert np.abs(stamps - nominal).max() > 0
        for f in side["faults"]:
            if f["stream"] != stream:
                continue
            k = f["index"]
            if f["kind"] == "reorder":
                order = [stamp_ns(m.msg.header) for m in by_topic[topic]]
                late, nxt = side["frames"][k][f"{stream}_stamp_ns"], side["frames"][k + 1][f"{stream}_stamp_ns"]
                assert order.index(late) == order.index(nxt) + 1
            if f["kind"] == "corrupt":
                bad = [m for m in by_topic[topic] if stamp_ns(m.msg.header) == f["stamp_ns"]]
                with pytest.raises(ConversionError) as ei:
                    msg_to_frame(bad[0].msg, stream)
                assert ei.value.reason == DropReason.DECODE_ERROR


def test_make_bag_is_deterministic_and_encodings(pairs_dir: Path, tmp_path: Path):
    opts = fault_bag.MakeBagOptions(seed=3, thermal_encoding="mono16", compressed_visible=True, max_side=40, **FAULTS)
    a = fault_bag.make_bag(pairs_dir, tmp_path / "a", opts, progress=False)
    b = fault_bag.make_bag(pairs_dir, tmp_path / "b", opts, progress=False)
    sa, sb = fault_bag.load_sidecar(a.sidecar), fault_bag.load_sidecar(b.sidecar)
    assert sa["frames"] == sb["frames"] and sa["faults"] == sb["faults"]
    assert sa["image_size"] == [40, 30]
    msgs = [m for m in bags.read_all(a.bag) if m.msg is not None]
    th = next(m.msg for m in msgs if m.topic == bags.THERMAL_TOPIC)
    rgb = next(m.msg for m in msgs if m.topic == bags.RGB_TOPIC)
    assert (th.encoding, th.width, th.height, th.step) == ("mono16", 40, 30, 80)
    assert rgb.__msgtype__ == bags.COMPRESSED and "jpeg" in rgb.format
    f = msg_to_frame(rgb, "visible")
    assert f.image.shape == (30, 40, 3)
    other = fault_bag.make_bag(pairs_dir, tmp_path / "c", fault_bag.MakeBagOptions(seed=4, **FAULTS), progress=False)
    assert fault_bag.load_sidecar(other.sidecar)["frames"] != sa["frames"]


def test_expected_accounting_model():
    frames = [{"index": i, "thermal_stamp_ns": i * 100_000_000, "visible_stamp_ns": i * 100_000_000 + 2_000_000}
              for i in range(10)]
    side = {"frames": frames, "faults": [
        {"kind": "drop", "stream": "visible", "index": 2, "stamp_ns": 0},
        {"kind": "duplicate", "stream": "thermal", "index": 4, "stamp_ns": 0},
        {"kind": "reorder", "stream": "thermal", "index": 6, "stamp_ns": 0}]}
    exp = fault_bag.expected_accounting(side, "approximate", 0.05)
    assert exp == {"pairs": 10 - 2 - 1, "received": {"thermal": 11, "visible": 9},
                   "dropped": {"thermal": {"duplicate": 1, "no_partner": 1, "out_of_order": 1, "unflushed": 1},
                               "visible": {"no_partner": 1, "unflushed": 1}}}
    # a pair wider than the slop: no exact prediction
    assert fault_bag.expected_accounting(side, "approximate", 0.001) is None
    # exact mode needs equal stamps
    assert fault_bag.expected_accounting(side, "exact", 0.05) is None
    # the model holds only when repeats and late stamps are dropped on arrival under the optimal policy
    assert fault_bag.expected_accounting(side, "approximate", 0.05, reject_late=False) is None
    assert fault_bag.expected_accounting(side, "approximate", 0.05, policy="rclpy") is None
    assert fault_bag.expected_accounting(side, "approximate", 0.05, policy="optimal", reject_late=True) == exp


def test_make_bag_rejects_bad_options(pairs_dir: Path, tmp_path: Path):
    from ivif_fusion.errors import UserError

    with pytest.raises(UserError, match="probability"):
        fault_bag.make_bag(pairs_dir, tmp_path / "x", fault_bag.MakeBagOptions(drop=1.5), progress=False)
    with pytest.raises(UserError, match="too large"):
        fault_bag.make_bag(pairs_dir, tmp_path / "y", fault_bag.MakeBagOptions(jitter_ms=20, rate_hz=10), progress=False)
    (tmp_path / "exists").mkdir()
    with pytest.raises(bags.BagWriteError, match="exists already"):
        fault_bag.make_bag(pairs_dir, tmp_path / "exists", fault_bag.MakeBagOptions(), progress=False)


def test_make_bag_ground_truth_from_msrs(msrs_root: Path, tmp_path: Path):
    from ivif_fusion.data.labels import read_yolo

    names = ["00004N.png", "00008N.png", "00012N.png", "00016N.png"]
    res = fault_bag.make_bag(msrs_root, tmp_path / "bag", fault_bag.MakeBagOptions(max_side=160), names=names,
                        labels_dir=msrs_root / "labels_det" / "fusion", progress=False)
    side = fault_bag.load_sidecar(res.sidecar)
    assert side["classes"] == ["person", "bicycle", "car"]
    assert side["image_size"] == [160, 120]
    for f in side["frames"]:
        lab = read_yolo(msrs_root / "labels_det" / "fusion" / (Path(f["name"]).stem + ".txt"))
        assert len(f["boxes"]) == len(lab)
        if len(lab):
            c, cx, cy, w, h = lab[0]
            assert f["boxes"][0][0] == int(c)
            assert f["boxes"][0][1] == pytest.approx((cx - w / 2) * 160, abs=0.01)
            assert f["boxes"][0][4] == pytest.approx((cy + h / 2) * 120, abs=0.01)


# ----------------------------------------------------------------------------- bad bags


def test_bad_bags_give_clear_errors(pairs_dir: Path, tmp_path: Path):
    with pytest.raises(bags.BagOpenError, match="not found"):
        bags.BagReader(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(bags.BagOpenError, match="no metadata.yaml"):
        with bags.BagReader(tmp_path / "empty"):
            pass
    for storage in ("sqlite3", "mcap"):
        res = fault_bag.make_bag(pairs_dir, tmp_path / storage, fault_bag.MakeBagOptions(storage=storage), progress=False)
        data = next(p for p in res.bag.iterdir() if p.suffix in (".db3", ".mcap"))
        os.truncate(data, data.stat().st_size // 2)
        with pytest.raises(bags.BagOpenError, match="truncated or corrupt"):
            with bags.BagReader(res.bag):
                pass


def test_missing_topic_and_wrong_type(pairs_dir: Path, tmp_path: Path):
    res = fault_bag.make_bag(pairs_dir, tmp_path / "bag", fault_bag.MakeBagOptions(), progress=False)
    with bags.BagReader(res.bag) as r:
        assert r.require(bags.THERMAL_TOPIC, bags.IMAGE_TYPES, "thermal").count == 16
        with pytest.raises(bags.BagTopicError, match=r"'/cam/thermal' not in bag.*/rgb/image \[sensor_msgs/msg/Image\]"):
            r.require("/cam/thermal", bags.IMAGE_TYPES, "thermal")
    ts = bags.typestore().types
    with bags.BagWriter(tmp_path / "str", "sqlite3") as w:
        w.write("/thermal/image", 1, ts["std_msgs/msg/String"](data="not an image"))
    with bags.BagReader(tmp_path / "str") as r:
        with pytest.raises(bags.BagTypeError, match="std_msgs/msg/String"):
            r.require("/thermal/image", bags.IMAGE_TYPES, "thermal")


def test_sidecar_checks(tmp_path: Path):
    p = tmp_path / "x.json"
    p.write_text(json.dumps({"format": "something else"}))
    with pytest.raises(bags.BagError, match="not an ivif make-bag sidecar"):
        fault_bag.load_sidecar(p)
    p.write_text("{not json")
    with pytest.raises(bags.BagError, match="cannot be read"):
        fault_bag.load_sidecar(p)
