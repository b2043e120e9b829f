"""The node's edge path and ``ivif replay`` give the same pairs, drops and output messages.

One arrival sequence of thermal/visible images, bad ones included (truncated data, an unsupported
encoding, NaN pixels, a duplicate, a late frame), goes (a) through a real in-process
:class:`~ivif_fusion.ros.fusion_node.FusionNode` (rclpy messages, its subscription callback and
its per-pair step driven directly, without the inference thread) and (b) into a bag replayed by
``ivif replay`` with the node's own pipeline. Both must pair the same frames, count the same drops
by reason and emit the same messages (kind/task, header, payload).

DDS stays on this machine: a random ROS_DOMAIN_ID, ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST and
config/fastdds_localhost.xml, as in test_ros_node.py.
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest

from ivif_fusion.io import bags
from ros_fixtures.live import ros_missing
from ivif_fusion.io.messages import array_to_image_msg, make_header, stamp_ns

ROOT = Path(__file__).resolve().parents[1]
DOMAIN_ID = random.SystemRandom().randint(101, 200)
ROS_ENV = {"ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST",
           "FASTDDS_DEFAULT_PROFILES_FILE": str(ROOT / "config" / "fastdds_localhost.xml"),
           "RMW_IMPLEMENTATION": "rmw_fastrtps_cpp"}
W, H = 160, 120
T0 = 1_700_000_000_000_000_000
PERIOD = 100_000_000
VISIBLE_OFFSET = 3_000_000


MISSING = ros_missing()
pytestmark = pytest.mark.skipif(MISSING is not None, reason=str(MISSING))


# ----------------------------------------------------------------------------- the arrival sequence


def arrivals() -> list[tuple[str, int, str]]:
    """(stream, stamp, how) in arrival order: ten pairs, faults at k = 2, 4, 5, 6 and 7."""
    seq = []
    for k in range(10):
        t = T0 + k * PERIOD
        th = ("thermal", t, {2: "truncated", 5: "nan"}.get(k, "ok"))
        vi = ("visible", t + VISIBLE_OFFSET, "yuv422" if k == 4 else "ok")
        if k == 7:
            seq.append(vi)           # thermal 7 arrives after thermal 8
            continue
        seq.append(th)
        if k == 8:
            seq.append(("thermal", T0 + 7 * PERIOD, "ok"))
        seq.append(vi)
        if k == 6:
            seq.append(vi)           # the visible frame arrives twice
    return seq


def build(classes: dict, stream: str, stamp: int, how: str, index: int) -> object:
    """The message of one arrival with ``classes`` (rclpy or rosbags): Image, Header, Time."""
    rng = np.random.default_rng(index)
    header = make_header(classes["Header"], classes["Time"], stamp,
                         "thermal_optical" if stream == "thermal" else "rgb_optical")
    if how == "nan":
        arr = rng.random((H, W)).astype(np.float32)
        arr[3, 4] = np.nan
        return array_to_image_msg(classes["Image"], header, arr, "32FC1")
    if stream == "thermal":
        msg = array_to_image_msg(classes["Image"], header, rng.integers(0, 256, (H, W), dtype=np.uint8), "mono8")
    else:
        msg = array_to_image_msg(classes["Image"], header, rng.integers(0, 256, (H, W, 3), dtype=np.uint8), "rgb8")
    if how == "truncated":
        msg.data = msg.data[: len(msg.data) // 2]
    elif how == "yuv422":
        msg.encoding = "yuv422"
    return msg


def payload(msg: object) -> tuple:
    """Header and content of an output message, comparable across rclpy and rosbags classes."""
    head = (stamp_ns(msg.header), msg.header.frame_id)
    if hasattr(msg, "encoding"):
        return (*head, msg.encoding, msg.height, msg.width, msg.step, int(msg.is_bigendian), bytes(msg.data))
    dets = []
    for d in msg.detections:
        b = d.bbox
        results = [(r.hypothesis.class_id, r.hypothesis.score, r.pose.pose.position.x, r.pose.pose.position.y,
                    r.pose.pose.orientation.w, tuple(r.pose.covariance)) for r in d.results]
        dets.append((stamp_ns(d.header), d.header.frame_id, d.id, b.center.position.x, b.center.position.y,
                     b.center.theta, b.size_x, b.size_y, results))
    return (*head, dets)


# ----------------------------------------------------------------------------- the two paths


def _config(tmp: Path, ckpt: Path) -> Path:
    from ivif_fusion.config import dump_yaml, runtime_defaults
    from ivif_fusion.tasks.detection import DetectorConfig, YoloDetector
    from ivif_fusion.tasks.segmentation import SegmenterConfig, SmallSegmenter

    det = {"name": "detection", "kind": "detection", "image_size": 160, "score_threshold": 0.0,
           "weights": str(YoloDetector(DetectorConfig()).save(tmp / "yolo_random.pt"))}
    seg = {"name": "segmentation", "kind": "segmentation",
           "weights": str(SmallSegmenter(SegmenterConfig()).save(tmp / "seg_random.pt"))}
    cfg = runtime_defaults({"pipeline.tasks": [{"name": "fusion", "kind": "fusion"}, det, seg],
                            "pipeline.backbone_weights": str(ckpt), "pipeline.threads": 1,
                            "sync.reject_late": True,  # repeated and late stamps are counted drops
                            "replay.metrics_pairs": 0, "replay.sample_frames": 0})
    path = tmp / "node.yaml"
    path.write_text(dump_yaml(cfg) + "\n")
    return path


@pytest.fixture
def node(tmp_path, random_vfn_ckpt, monkeypatch):  # noqa: ANN001, ANN201
    for k, v in ROS_ENV.items():
        monkeypatch.setenv(k, v)
    import rclpy
    from rclpy.parameter import Parameter

    from ivif_fusion.ros.fusion_node import FusionNode

    ctx = rclpy.Context()
    rclpy.init(context=ctx, domain_id=DOMAIN_ID)
    n = FusionNode(context=ctx, inference_thread=False,
                   parameter_overrides=[Parameter("config_file", Parameter.Type.STRING,
                                                  str(_config(tmp_path, random_vfn_ckpt)))])
    yield n
    n.shutdown()
    n.destroy_node()
    rclpy.try_shutdown(context=ctx)


def run_node(node, seq):  # noqa: ANN001, ANN201
    """The node's callbacks on ``seq``; each pair processed as soon as it is handed over."""
    from ivif_fusion.ros.convert import ros_classes

    classes = ros_classes()
    sent: list[tuple[str, object]] = []
    plan_messages = node.outputs.messages

    def recording(result):  # noqa: ANN001, ANN202 - what the node publishes, in order
        out = plan_messages(result)
        sent.extend((f"{o.kind}/{o.task}", m) for o, m in out)
        return out

    node.outputs.messages = recording
    pairs = []
    for i, (stream, stamp, how) in enumerate(seq):
        node.on_message(stream, build(classes, stream, stamp, how, i))
        pair = node.accounting.take(timeout=0)
        if pair is not None:
            pairs.append((pair.thermal.stamp_ns, pair.visible.stamp_ns))
            node.process(pair)
    node.accounting.close()
    return pairs, node.accounting.snapshot(), sent


def run_replay(node, seq, tmp: Path):  # noqa: ANN001, ANN201
    """The same arrivals written to a bag (log time = arrival order) and replayed with the node's pipeline."""
    from ivif_fusion.config import load_runtime
    from ivif_fusion.replay import replay

    types = bags.typestore().types
    classes = {"Image": types[bags.IMAGE], "Header": types[bags.HEADER], "Time": types[bags.TIME]}
    cfg = load_runtime(node.get_parameter("config_file").value)
    topics = {"thermal": cfg.replay.thermal_topic, "visible": cfg.replay.visible_topic}
    with bags.BagWriter(tmp / "in", "sqlite3") as w:
        for i, (stream, stamp, how) in enumerate(seq):
            w.write(topics[stream], T0 + i * 1_000_000, build(classes, stream, stamp, how, i))
    pairs = []
    s = replay(tmp / "in", cfg, tmp / "out", pipeline=node.pipeline, progress=False,
               on_pair=lambda r: pairs.append((r.pair.thermal.stamp_ns, r.pair.visible.stamp_ns)))
    prefix = cfg.replay.output_prefix.rstrip("/") + "/"
    out = [(m.topic[len(prefix):], m.msg) for m in bags.read_all(s.output_bag)]
    return pairs, s, out


def test_node_edges_and_replay_agree(node, tmp_path):
    seq = arrivals()
    node_pairs, snap, node_out = run_node(node, seq)
    replay_pairs, summary, replay_out = run_replay(node, seq, tmp_path)

    # the same pairs: 0, 1, 3, 6 and 8 (2, 4, 5, 7 lost a frame; 9 is still waiting at the end)
    want = [(T0 + k * PERIOD, T0 + k * PERIOD + VISIBLE_OFFSET) for k in (0, 1, 3, 6, 8)]
    assert node_pairs == replay_pairs == want

    # the same drops by reason, per stream
    expected = {
        "thermal": {"decode_error": 1, "no_partner": 1, "non_finite": 1, "out_of_order": 1, "unflushed": 1},
        "visible": {"duplicate": 1, "no_partner": 3, "unflushed": 1, "unsupported_encoding": 1},
    }
    for st in ("thermal", "visible"):
        assert snap["streams"][st]["dropped"] == summary.accounting[st]["dropped"] == expected[st]
        assert snap["streams"][st]["received"] == summary.accounting[st]["received"] == (10 if st == "thermal" else 11)
        assert snap["streams"][st]["pending"] == 0 and summary.accounting[st]["balanced"]
    assert snap["pairs"]["processed"] == summary.pairs_fused == 5

    # the same output messages: kind/task, header (thermal reference) and payload, in order per topic
    node_topics = {t for t, _ in node_out}
    assert node_topics == {t for t, _ in replay_out} == {
        "fused/fusion", "fused/detection", "detections/detection", "fused/segmentation", "mask/segmentation"}
    for topic in sorted(node_topics):
        a = [payload(m) for t, m in node_out if t == topic]
        b = [payload(m) for t, m in replay_out if t == topic]
        assert len(a) == len(b) == 5, topic
        assert [p[:2] for p in a] == [(t, "thermal_optical") for t, _ in want]
        assert a == b, topic
    # The node publishes the plan's topics, plus a camera_info next to each fused image (node only).
    infos = {f"{t}/camera_info" for t in node_topics if t.startswith("fused/")}
    assert sorted(p.topic_name for p in node.publishers if "/fusion_node/" in p.topic_name) == sorted(
        f"/fusion_node/{t}" for t in node_topics | infos)
