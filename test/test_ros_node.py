"""The ROS 2 node, live over real DDS kept on this machine, plus its ROS-free parts.

Live tests start ``python -m ivif_fusion.ros.fusion_node`` in a subprocess and talk to it from
this process with rclpy, over a per-run random ROS_DOMAIN_ID, ROS_AUTOMATIC_DISCOVERY_RANGE=
LOCALHOST and the Fast DDS profile config/fastdds_localhost.xml (shared memory + UDPv4 on
127.0.0.1 only). The environment is set before rclpy is imported. Inputs are real MSRS pairs
resized to 160x120; the backbone is a randomly initialised VFN checkpoint (interface test).
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from ivif_fusion.ros.camera_rig import RGB_FRAME, THERMAL_FRAME, MessageFactory, Send, load_pairs, schedule
from ros_fixtures.live import Client as LiveClient
from ros_fixtures.live import NodeProcess as LiveNodeProcess
from ros_fixtures.live import ros_missing

ROOT = Path(__file__).resolve().parents[1]

PROFILE = ROOT / "config" / "fastdds_localhost.xml"
DOMAIN_ID = random.SystemRandom().randint(10, 100)   # per run: concurrent runs on this machine do not meet
ROS_ENV = {
    "ROS_DOMAIN_ID": str(DOMAIN_ID),
    "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST",
    "FASTDDS_DEFAULT_PROFILES_FILE": str(PROFILE),
    "RMW_IMPLEMENTATION": "rmw_fastrtps_cpp",
}
W, H = 160, 120
NODE = "/fusion_node"
START_TIMEOUT = 90.0


MISSING = ros_missing()
pytestmark = pytest.mark.skipif(MISSING is not None, reason=str(MISSING))


# ----------------------------------------------------------------------------- ROS-free parts


def _pair(stamp: int = 5):
    from ivif_fusion.types import Frame, Pair

    t = Frame(stamp, "thermal_optical", np.zeros((4, 6), np.float32), "mono16", "thermal")
    r = Frame(stamp + 1, "rgb_optical", np.zeros((4, 6, 3), np.float32), "rgb8", "visible")
    return Pair(t, r)


def test_accounting_balances_with_superseded_and_errors():
    from ivif_fusion.runtime.sync import Synchronizer
    from ivif_fusion.stream.accounting import LatestPairAccounting as NodeAccounting
    from ivif_fusion.types import DropReason, Frame

    acc = NodeAccounting(Synchronizer("exact", 10, None))
    for k in (1, 2, 3):
        for s in ("thermal", "visible"):
            acc.hand_over(Frame(k, "f", np.zeros((2, 2), np.float32), "mono8", s))
    acc.reject("visible", 9, DropReason.UNSUPPORTED_ENCODING, "yuv422")
    snap = acc.snapshot()
    # Three exact pairs went through the one-pair slot: the first two were superseded, one waits.
    assert snap["pairs"] == {"processed": 0, "in_flight": 1}
    assert snap["streams"]["thermal"]["dropped"] == {"superseded": 2}
    assert snap["streams"]["visible"]["dropped"] == {"superseded": 2, "unsupported_encoding": 1}
    assert NodeAccounting.balanced(snap)
    pair = acc.take(timeout=0)
    assert pair.thermal.stamp_ns == 3
    acc.done(pair)
    for s in ("thermal", "visible"):
        acc.hand_over(Frame(4, "f", np.zeros((2, 2), np.float32), "mono8", s))
    acc.done(acc.take(timeout=0), DropReason.PIPELINE_ERROR, "boom")
    acc.hand_over(Frame(5, "f", np.zeros((2, 2), np.float32), "mono8", "thermal"))
    snap = acc.snapshot()
    assert snap["streams"]["thermal"] == {"received": 5, "paired": 1, "pending": 1,
                                          "dropped": {"pipeline_error": 1, "superseded": 2}}
    assert acc.close() and NodeAccounting.balanced(acc.snapshot())
    assert acc.snapshot()["streams"]["thermal"]["dropped"]["unflushed"] == 1


def test_output_plan_copies_reference_header_and_encodes():
    from ivif_fusion.config import RosConfig
    from ivif_fusion.io.messages import stamp_ns
    from ivif_fusion.ros.convert import ros_classes
    from ivif_fusion.stream.outputs import OutputPlan
    from ivif_fusion.types import Detection, Result, TaskOutput

    c = ros_classes()
    kinds_of = {"det": "detection", "seg": "segmentation"}

    def result_messages(result, ros):  # noqa: ANN001, ANN202 - (kind, task, message)
        plan = OutputPlan(c, kinds_of, ros, "thermal", "~")
        return [(o.kind, o.task, m) for o, m in plan.messages(result)]

    fused = np.zeros((4, 6, 3), np.uint8)
    fused[..., 0] = 200  # red
    mask = np.arange(24, dtype=np.uint8).reshape(4, 6)
    pair = _pair(12 * 10**9 + 345)
    res = Result(pair, {
        "det": TaskOutput(fused, [Detection(2, "car", 0.75, 1.0, 2.0, 5.0, 4.0)]),
        "seg": TaskOutput(fused, None, mask),
    })
    msgs = result_messages(res, RosConfig(fused_encoding="bgr8"))
    kinds = [(k, t) for k, t, _ in msgs]
    assert kinds == [("fused", "det"), ("detections", "det"), ("fused", "seg"), ("mask", "seg")]
    for _, _, m in msgs:
        assert stamp_ns(m.header) == 12 * 10**9 + 345 and m.header.frame_id == "thermal_optical"
    assert len({id(m.header) for _, _, m in msgs}) == len(msgs)  # every message has its own header
    f = msgs[0][2]
    assert (f.encoding, f.width, f.height, f.step) == ("bgr8", 6, 4, 18)
    assert bytes(f.data[:3]) == bytes([0, 0, 200])  # BGR order on the wire
    d = msgs[1][2].detections[0]
    assert (d.bbox.center.position.x, d.bbox.center.position.y, d.bbox.size_x, d.bbox.size_y) == (3.0, 3.0, 4.0, 2.0)
    assert (d.results[0].hypothesis.class_id, d.results[0].hypothesis.score) == ("car", 0.75)
    m = msgs[3][2]
    assert m.encoding == "mono8" and bytes(m.data) == mask.tobytes()
    assert [k for k, _, _ in result_messages(res, RosConfig(publish_fused=False,
                                                            publish_masks=False))] == ["detections"]
    # the visible reference: its stamp and frame_id
    plan = OutputPlan(c, kinds_of, RosConfig(), "visible", "~")
    header = plan.header(pair)
    assert (stamp_ns(header), header.frame_id) == (12 * 10**9 + 346, "rgb_optical")
    assert [o.topic for o in plan.outputs] == ["~/fused/det", "~/detections/det", "~/fused/seg", "~/mask/seg"]


def test_diagnostics_message_lists_every_reason():
    from ivif_fusion.ros.convert import diagnostics_msg, parse_diagnostics, ros_classes
    from ivif_fusion.runtime.sync import Synchronizer
    from ivif_fusion.stream.accounting import LatestPairAccounting as NodeAccounting
    from ivif_fusion.types import DropReason

    c = ros_classes()
    acc = NodeAccounting(Synchronizer())
    acc.reject("thermal", 1, DropReason.NON_FINITE)
    acc.add_timing("decode", 2.0)
    acc.add_timing("decode", 4.0)
    msg = diagnostics_msg(c, c["Header"](), "/fusion_node", acc.snapshot(), backend="torch", level=1, message="x")
    kv = parse_diagnostics(msg)
    assert kv["thermal.received"] == "1" and kv["thermal.dropped.non_finite"] == "1"
    assert sum(k.startswith("visible.dropped.") for k in kv) == len(DropReason)
    assert kv["backend"] == "torch" and msg.status[0].level == bytes([1])
    lat = parse_diagnostics(msg, ": latency")
    assert lat == {"decode.mean_ms": "3.000", "decode.last_ms": "4.000", "decode.max_ms": "4.000", "decode.count": "2"}


# ----------------------------------------------------------------------------- live fixtures


def Client() -> LiveClient:  # noqa: N802 - constructs the fixture's class
    """A test-side rclpy node on this run's DDS domain, spun on a background thread."""
    return LiveClient(DOMAIN_ID, "ivif_test_client")


def _qos(depth: int):  # noqa: ANN202
    from rclpy.qos import QoSProfile, ReliabilityPolicy

    return QoSProfile(depth=depth, reliability=ReliabilityPolicy.RELIABLE)


def NodeProcess(log_path: Path, params: dict) -> LiveNodeProcess:  # noqa: N802 - constructs the fixture's class
    """``python -m ivif_fusion.ros.fusion_node`` with ``params`` as ``-p key:=value``, on this run's DDS domain."""
    return LiveNodeProcess(log_path, ROS_ENV, [a for k, v in params.items() for a in ("-p", f"{k}:={v}")])


def _config_file(tmp: Path, ckpt: Path, tasks: list[dict]) -> Path:
    from ivif_fusion.config import dump_yaml, runtime_defaults

    cfg = runtime_defaults({"pipeline.tasks": tasks, "pipeline.backbone_weights": str(ckpt),
                              "pipeline.threads": 1, "ros.thermal.reliability": "reliable", "ros.thermal.depth": 400,
                              "ros.visible.reliability": "reliable", "ros.visible.depth": 400,
                              "ros.diagnostics_period_s": 0.25})
    path = tmp / "node.yaml"
    path.write_text(dump_yaml(cfg) + "\n")
    return path


def _task_networks(tmp: Path, ckpt: Path) -> tuple[list[dict], str, str]:
    """Tasks for the live node: two fusion tasks, plus detection and segmentation (random-init networks saved
    here: the tests check the message path, not the model), each when the pipeline can run it here.

    Returns the tasks and, per task network, why it cannot run ('' when it can)."""
    from ivif_fusion.config import runtime_defaults
    from ivif_fusion.runtime.pipeline import Pipeline

    def runnable(task: dict) -> str:
        try:
            cfg = runtime_defaults({"pipeline.tasks": [task], "pipeline.backbone_weights": str(ckpt)})
            Pipeline.from_config(cfg).run_arrays(np.zeros((H, W), np.float32), np.zeros((H, W, 3), np.float32))
            return ""
        except Exception as e:  # noqa: BLE001 - reported as a skip reason of the task's test
            return f"{type(e).__name__}: {e}"

    tasks = [{"name": "fusion", "kind": "fusion"}, {"name": "fusion_b", "kind": "fusion"}]
    try:
        from ivif_fusion.tasks.detection import DetectorConfig, YoloDetector

        det_ckpt = YoloDetector(DetectorConfig()).save(tmp / "yolo_random.pt")
        det = {"name": "detection", "kind": "detection", "weights": str(det_ckpt), "image_size": 160,
               "score_threshold": 0.0}
        det_skip = runnable(det)
    except Exception as e:  # noqa: BLE001 - e.g. ultralytics missing
        det_skip = f"{type(e).__name__}: {e}"
    from ivif_fusion.tasks.segmentation import SegmenterConfig, SmallSegmenter

    seg_ckpt = SmallSegmenter(SegmenterConfig(), seed=0).save(tmp / "seg_random.pt")
    seg = {"name": "segmentation", "kind": "segmentation", "weights": str(seg_ckpt)}
    seg_skip = runnable(seg)
    return [*tasks, *([det] if not det_skip else []), *([seg] if not seg_skip else [])], det_skip, seg_skip


@pytest.fixture(scope="module")
def ros_client():
    with pytest.MonkeyPatch.context() as mp:
        for k, v in ROS_ENV.items():
            mp.setenv(k, v)
        client = Client()
        yield client
        client.close()


@pytest.fixture(scope="module")
def pairs(data_root):  # noqa: ANN001, ANN201
    return load_pairs(data_root, 3, (W, H))


def _start(tmp: Path, ckpt: Path, client: Client, tasks: list[dict], extra: dict) -> NodeProcess:
    cfg = _config_file(tmp, ckpt, tasks)
    node = NodeProcess(tmp / "node.log", {"config_file": str(cfg), **extra})
    t0 = time.monotonic()
    topic = f"{NODE}/fused/{tasks[0]['name']}"
    try:
        client.wait(lambda: client.node.count_publishers(topic) > 0 or not node.alive(), START_TIMEOUT,
                    f"{topic} to be advertised")
        assert node.alive(), f"node exited with {node.proc.returncode}:\n{node.log()[-3000:]}"
    except AssertionError:
        node.stop()
        raise AssertionError(f"node did not come up:\n{node.log()[-3000:]}") from None
    print(f"node up in {time.monotonic() - t0:.1f} s")
    return node


def _latest_diag(diags: list, min_time: float = 0.0) -> dict | None:
    from ivif_fusion.ros.convert import parse_diagnostics

    for t, m in reversed(diags):
        kv = parse_diagnostics(m)
        if kv is not None and t >= min_time and m.status[0].hardware_id == NODE:
            return kv
    return None


def _balanced(kv: dict) -> bool:
    for s in ("thermal", "visible"):
        dropped = sum(int(v) for k, v in kv.items() if k.startswith(f"{s}.dropped."))
        if int(kv[f"{s}.received"]) != int(kv[f"{s}.paired"]) + dropped + int(kv[f"{s}.pending"]):
            return False
    return True


def _wait_quiet(client: Client, diags: list, thermal: int, rgb: int, after: float) -> dict:
    """The first diagnostics after ``after`` showing every sent message received and nothing in flight."""
    out: dict = {}

    def ready() -> bool:
        kv = _latest_diag(diags, after)
        if kv and int(kv["thermal.received"]) == thermal and int(kv["visible.received"]) == rgb \
                and kv["pairs.in_flight"] == "0":
            out.update(kv)
            return True
        return False

    client.wait(ready, 30, f"diagnostics with {thermal} thermal / {rgb} rgb received and nothing in flight")
    return out


@pytest.fixture(scope="module")
def live(tmp_path_factory, ros_client, random_vfn_ckpt, pairs):  # noqa: ANN001, ANN201
    """Node A: Image/Image, reliable QoS, tasks fusion + fusion_b (+ detection when available).

    It rejects repeated and late stamps (``sync.reject_late``), so the fuzz test can count them, and
    subscribes reliably: these tests count frames exactly, the QoS defaults are tested in test_ros_robot.py.
    """
    from diagnostic_msgs.msg import DiagnosticArray
    from sensor_msgs.msg import Image
    from vision_msgs.msg import Detection2DArray

    tmp = tmp_path_factory.mktemp("node_a")
    tasks, det_skip, seg_skip = _task_networks(tmp, random_vfn_ckpt)
    node = _start(tmp, random_vfn_ckpt, ros_client, tasks,
                  {"sync.reject_late": "true", "ros.thermal.reliability": "reliable",
                   "ros.visible.reliability": "reliable"})
    qos = _qos(400)
    got: dict[str, list] = {t["name"]: [] for t in tasks}
    dets: list = []
    diags: list = []
    subs = [ros_client.collect(Image, f"{NODE}/fused/{name}", qos, sink) for name, sink in got.items()]
    subs.append(ros_client.collect(DiagnosticArray, "/diagnostics", _qos(50), diags))
    masks: list = []
    if not det_skip:
        subs.append(ros_client.collect(Detection2DArray, f"{NODE}/detections/detection", qos, dets))
    if not seg_skip:
        subs.append(ros_client.collect(Image, f"{NODE}/mask/segmentation", qos, masks))
    pubs = {"thermal": ros_client.node.create_publisher(Image, "thermal/image_raw", qos),
            "visible": ros_client.node.create_publisher(Image, "rgb/image_raw", qos)}
    ros_client.wait(lambda: all(p.get_subscription_count() > 0 for p in pubs.values())
                    and all(s.get_publisher_count() > 0 for s in subs), 30, "publishers/subscribers to match")
    state = {"node": node, "tasks": tasks, "det_skip": det_skip, "seg_skip": seg_skip, "got": got, "dets": dets,
             "masks": masks,
             "diags": diags,
             "pubs": pubs, "factory": MessageFactory(pairs, visible_compressed=False), "tmp": tmp}
    yield state
    node.stop()


def _send(client: Client, pubs: dict, factory: MessageFactory, sends: list[Send]) -> None:
    from ivif_fusion.ros.camera_rig import run

    run(pubs, factory, sends)


# ----------------------------------------------------------------------------- live tests


def test_live_node_parameters_match_declarations(live, ros_client):  # noqa: ANN001
    from rcl_interfaces.srv import GetParameters, ListParameters

    from ivif_fusion.config import load_runtime
    from ivif_fusion.ros.params import parameter_names

    cli = ros_client.node.create_client(ListParameters, f"{NODE}/list_parameters")
    assert cli.wait_for_service(timeout_sec=20)
    res = cli.call(ListParameters.Request(), timeout_sec=20)
    declared = set(res.result.names)
    expected = set(parameter_names(load_runtime(live["tmp"] / "node.yaml")))
    assert expected <= declared
    assert declared - expected <= {"use_sim_time", "start_type_description_service"}
    get = ros_client.node.create_client(GetParameters, f"{NODE}/get_parameters")
    assert get.wait_for_service(timeout_sec=20)
    values = get.call(GetParameters.Request(names=["sync.slop_s", "ros.thermal.depth", "pipeline.tasks"]),
                      timeout_sec=20).values
    # Config-file values are the defaults: depth 400 from the test's file, slop from the package default.
    assert values[0].double_value == pytest.approx(0.05) and values[1].integer_value == 400
    assert list(values[2].string_array_value)[1] == "fusion_b"


def test_live_rgb8_scenario(live, ros_client):  # noqa: ANN001
    """9 Hz mono16 thermal + 30 Hz rgb8, jittered stamps: per-task fused outputs with the thermal headers."""
    sends = schedule(3.0, seed=1)
    n_t = sum(s.stream == "thermal" for s in sends)
    n_r = len(sends) - n_t
    assert (n_t, n_r) == (27, 90)
    t_start = time.perf_counter()
    _send(ros_client, live["pubs"], live["factory"], sends)
    kv = _wait_quiet(ros_client, live["diags"], n_t, n_r, t_start)
    print(f"scenario: {time.perf_counter() - t_start:.1f} s, diagnostics {kv}")
    assert _balanced(kv), kv
    paired = int(kv["thermal.paired"])
    assert int(kv["visible.paired"]) == paired
    # Every thermal frame has an RGB frame within 17 ms + jitter (slop 50 ms): all pair except a pending one;
    # the rest of the RGB frames are the extra 30 Hz frames no thermal frame claims.
    assert int(kv["thermal.dropped.no_partner"]) == 0 and int(kv["thermal.dropped.queue_overflow"]) == 0, kv
    assert int(kv["thermal.dropped.superseded"]) + int(kv["thermal.pending"]) + paired == n_t, kv
    assert int(kv["thermal.dropped.decode_error"]) == 0 and int(kv["visible.dropped.unsupported_encoding"]) == 0
    # How many pairs inference keeps up with depends on the (shared) CPU; latest-pair-wins drops the rest.
    assert paired >= 3, f"too few pairs processed: {kv}"
    thermal_stamps = {s.stamp_ns for s in sends if s.stream == "thermal"}
    ros_client.wait(lambda: all(len(v) >= paired for v in live["got"].values()), 10, "fused outputs")
    from ivif_fusion.io.messages import image_msg_to_array, stamp_ns

    for task, msgs in live["got"].items():
        assert len(msgs) == paired, f"{task}: {len(msgs)} fused images for {paired} pairs"
        for _, m in msgs:
            assert (m.encoding, m.width, m.height, m.step) == ("rgb8", W, H, 3 * W)
            assert stamp_ns(m.header) in thermal_stamps and m.header.frame_id == THERMAL_FRAME
        img, _ = image_msg_to_array(msgs[-1][1])
        assert img.shape == (H, W, 3) and img.std() > 5.0   # a real image, not a constant
    # Both generic tasks share the backbone output: identical images for the same stamp.
    a, b = live["got"]["fusion"][-1][1], live["got"]["fusion_b"][-1][1]
    assert stamp_ns(a.header) == stamp_ns(b.header) and bytes(a.data) == bytes(b.data)
    lat = _latest_diag_stage(live["diags"])
    for stage in ("decode", "backbone", "total", "publish", "node_total"):
        assert float(lat[f"{stage}.count"]) > 0 and float(lat[f"{stage}.mean_ms"]) > 0.0, stage


def _latest_diag_stage(diags: list) -> dict:
    from ivif_fusion.ros.convert import parse_diagnostics

    return parse_diagnostics(diags[-1][1], ": latency")


def test_live_detections(live, ros_client):  # noqa: ANN001
    """Detection2DArray per fused image of the detection task, same header (runs after the scenario)."""
    if live["det_skip"]:
        pytest.skip(f"pipeline cannot run a detection task here yet: {live['det_skip']}")
    from ivif_fusion.io.messages import stamp_ns

    fused = {stamp_ns(m.header) for _, m in live["got"]["detection"]}
    dets = live["dets"]
    assert fused and len(dets) == len(fused)
    for _, m in dets:
        assert stamp_ns(m.header) in fused and m.header.frame_id == THERMAL_FRAME
        for d in m.detections:
            assert d.header.frame_id == THERMAL_FRAME and len(d.results) == 1
            assert 0 <= d.bbox.center.position.x <= W and 0 <= d.bbox.center.position.y <= H


def test_live_masks(live, ros_client, pairs):  # noqa: ANN001
    """Segmentation task: for each processed pair a mono8 mask with the thermal input's header, the input size,
    only the network's class ids, and equal to the segmenter's prediction on the fused image of that stamp."""
    if live["seg_skip"]:
        pytest.skip(f"pipeline cannot run a segmentation task here: {live['seg_skip']}")
    from ivif_fusion.io.messages import image_msg_to_array, stamp_ns
    from ivif_fusion.ros.camera_rig import T0_NS
    from ivif_fusion.tasks.segmentation import SmallSegmenter

    diags = live["diags"]
    ros_client.wait(lambda: _latest_diag(diags) is not None, 10, "diagnostics")
    base = _latest_diag(diags)
    # Four pairs (thermal and RGB with the same stamp), newer than the earlier tests' and 0.4 s apart.
    t0 = T0_NS + 100 * 10**9
    sends = [Send(0.4 * k, stream, t0 + k * 10**8, k) for k in range(4) for stream in ("thermal", "visible")]
    sent = {s.stamp_ns for s in sends}
    t_start = time.perf_counter()
    _send(ros_client, live["pubs"], live["factory"], sends)
    kv = _wait_quiet(ros_client, diags, int(base["thermal.received"]) + 4, int(base["visible.received"]) + 4, t_start)
    processed = int(kv["pairs.processed"]) - int(base["pairs.processed"])
    assert processed >= 1, kv  # latest-pair-wins may supersede some on a busy machine, never all

    def new(msgs: list) -> dict:
        return {stamp_ns(m.header): m for _, m in list(msgs) if stamp_ns(m.header) in sent}

    ros_client.wait(lambda: len(new(live["masks"])) == len(new(live["got"]["segmentation"])) == processed, 10,
                    f"{processed} fused images and masks of the segmentation task")
    masks, fused = new(live["masks"]), new(live["got"]["segmentation"])
    assert set(masks) == set(fused) <= sent
    segmenter = SmallSegmenter.from_checkpoint(next(t["weights"] for t in live["tasks"] if t["name"] == "segmentation"))
    n_classes = len(segmenter.classes)
    for stamp, m in masks.items():
        assert stamp_ns(m.header) == stamp and m.header.frame_id == THERMAL_FRAME
        assert (m.encoding, m.height, m.width, m.step) == ("mono8", H, W, W)
        mask, _enc = image_msg_to_array(m)
        assert mask.shape == pairs[0][0].shape and mask.dtype == np.uint8 and int(mask.max()) < n_classes
        image, _enc = image_msg_to_array(fused[stamp])
        # the node's mask is the segmenter's output for this very fused image (float order may flip a rare tie)
        assert (segmenter.predict(image)[0] == mask).mean() > 0.99


def _bad_image(kind: str, stamp: int, rng: np.random.Generator):  # noqa: ANN202
    """A malformed sensor_msgs/Image of the given kind and the drop reason the node must count."""
    from builtin_interfaces.msg import Time
    from sensor_msgs.msg import Image
    from std_msgs.msg import Header

    from ivif_fusion.io.messages import array_to_image_msg, make_header

    header = make_header(Header, Time, stamp, THERMAL_FRAME)
    h, w = 8, 10
    if kind == "encoding":
        m = array_to_image_msg(Image, header, rng.integers(0, 255, (h, w), dtype=np.uint8), "mono8")
        m.encoding = str(rng.choice(["yuv422", "bayer_rggb8", "16SC1", "", "rgb9"]))
        return m, "unsupported_encoding"
    if kind == "step":
        m = array_to_image_msg(Image, header, rng.integers(0, 255, (h, w, 3), dtype=np.uint8), "rgb8")
        m.step = int(rng.integers(1, 3 * w))  # shorter than a row
        return m, "decode_error"
    if kind == "size":
        m = array_to_image_msg(Image, header, rng.integers(0, 65535, (h, w), dtype=np.uint16), "mono16")
        m.height = h + int(rng.integers(1, 5))  # data too short for the declared height
        return m, "decode_error"
    if kind == "nan":
        a = rng.random((h, w), dtype=np.float32)
        a[rng.integers(0, h), rng.integers(0, w)] = rng.choice([np.nan, np.inf, -np.inf])
        return array_to_image_msg(Image, header, a, "32FC1"), "non_finite"
    if kind == "empty":
        return Image(header=header, height=0, width=0, encoding="mono8", step=0), "decode_error"
    raise ValueError(kind)


def test_live_fuzz_node_survives_and_balances(live, ros_client):  # noqa: ANN001
    """300 malformed / reordered / duplicate messages, then valid pairs: the node answers and counts balance."""
    rng = np.random.default_rng(7)
    diags = live["diags"]
    before = _latest_diag(diags)
    assert before is not None
    base = {k: int(v) for k, v in before.items() if k != "backend"}
    kinds = ["encoding", "step", "size", "nan", "empty"]
    expected: dict[str, int] = {}
    stamp = 1_800_000_000 * 10**9
    sent = {"thermal": 0, "visible": 0}
    factory = live["factory"]
    pubs = live["pubs"]
    for i in range(240):
        stream = ("thermal", "visible")[i % 2]
        msg, reason = _bad_image(kinds[i % len(kinds)], stamp + i * 1000, rng)
        pubs[stream].publish(msg)
        sent[stream] += 1
        key = f"{stream}.dropped.{reason}"
        expected[key] = expected.get(key, 0) + 1
    # Valid frames with repeated and older stamps on the thermal stream (after a newer one was accepted).
    t_new = stamp + 10**9
    valid = [("thermal", t_new, None), ("thermal", t_new, "duplicate"), ("thermal", t_new - 5 * 10**8, "out_of_order")]
    valid += [("thermal", t_new + k * 10**6, None) for k in range(1, 11)]
    # Older than the last accepted stamp and equal to none received: out of order.
    valid += [("thermal", t_new + 10 * 10**6 - k * 10**5 - 50_000, "out_of_order") for k in range(58)]
    for stream, st, reason in valid:
        pubs[stream].publish(factory.make(Send(0.0, stream, st, 0)))
        sent[stream] += 1
        if reason:
            key = f"{stream}.dropped.{reason}"
            expected[key] = expected.get(key, 0) + 1
    total_bad = sum(expected.values())
    assert sum(sent.values()) == 311 and total_bad == 300
    # Then real traffic with newer stamps: the node still pairs, fuses and publishes.
    n_before = len(live["got"]["fusion"])
    later = [Send(s.at_s, s.stream, s.stamp_ns + 2 * 10**9 + stamp - 1_700_000_000 * 10**9, s.index)
             for s in schedule(1.0, seed=3)]
    t_start = time.perf_counter()
    _send(ros_client, pubs, factory, later)
    for s in later:
        sent[s.stream] += 1
    kv = _wait_quiet(ros_client, diags, base["thermal.received"] + sent["thermal"],
                     base["visible.received"] + sent["visible"], t_start)
    assert live["node"].alive()
    assert _balanced(kv), kv
    for key, n in expected.items():
        assert int(kv[key]) - base[key] == n, f"{key}: {int(kv[key]) - base[key]} != {n}"
    ros_client.wait(lambda: len(live["got"]["fusion"]) > n_before, 10, "fused output after the fuzz run")
    from ivif_fusion.io.messages import stamp_ns

    assert stamp_ns(live["got"]["fusion"][-1][1].header) > t_new
    assert "Traceback" not in live["node"].log()


def test_live_compressed_visible_and_clean_shutdown(tmp_path, ros_client, random_vfn_ckpt, pairs, live):  # noqa: ANN001
    """Node B: RGB as CompressedImage (jpeg); fused outputs carry thermal headers; SIGINT exits 0."""
    from diagnostic_msgs.msg import DiagnosticArray
    from sensor_msgs.msg import CompressedImage, Image

    live["node"].stop()  # one node at a time keeps the 2 cores for this one
    assert live["node"].proc.returncode == 0, live["node"].log()[-2000:]
    node = _start(tmp_path, random_vfn_ckpt, ros_client, [{"name": "fusion", "kind": "fusion"}],
                     {"ros.visible.transport": "compressed", "ros.fused_encoding": "bgr8",
                      "ros.thermal.topic": "cam_b/thermal", "ros.visible.topic": "cam_b/rgb",
                      # reliable inputs: this test is about the transport, not about loss on a busy machine
                      "ros.thermal.reliability": "reliable", "ros.visible.reliability": "reliable"})
    try:
        qos = _qos(400)
        got: list = []
        diags: list = []
        subs = [ros_client.collect(Image, f"{NODE}/fused/fusion", qos, got),
                ros_client.collect(DiagnosticArray, "/diagnostics", _qos(50), diags)]
        pubs = {"thermal": ros_client.node.create_publisher(Image, "cam_b/thermal", qos),
                "visible": ros_client.node.create_publisher(CompressedImage, "cam_b/rgb/compressed", qos)}
        ros_client.wait(lambda: all(p.get_subscription_count() > 0 for p in pubs.values())
                        and all(s.get_publisher_count() > 0 for s in subs), 30, "matching")
        sends = [Send(s.at_s, s.stream, s.stamp_ns + 10**12, s.index) for s in schedule(2.0, seed=2)]
        t_start = time.perf_counter()
        _send(ros_client, pubs, MessageFactory(pairs, visible_compressed=True), sends)
        n_t = sum(s.stream == "thermal" for s in sends)
        kv = _wait_quiet(ros_client, diags, n_t, len(sends) - n_t, t_start)
        assert _balanced(kv) and int(kv["visible.dropped.decode_error"]) == 0, kv
        paired = int(kv["thermal.paired"])
        print(f"compressed scenario: {time.perf_counter() - t_start:.1f} s, diagnostics {kv}")
        assert int(kv["thermal.dropped.no_partner"]) == 0 and int(kv["visible.dropped.unsupported_encoding"]) == 0, kv
        assert paired >= 3, kv
        ros_client.wait(lambda: len(got) >= paired, 10, "fused outputs")
        from ivif_fusion.io.messages import stamp_ns

        stamps = {s.stamp_ns for s in sends if s.stream == "thermal"}
        for _, m in got:
            assert (m.encoding, m.width, m.height) == ("bgr8", W, H)
            assert stamp_ns(m.header) in stamps and m.header.frame_id == THERMAL_FRAME
        assert len(got) == paired
        assert RGB_FRAME not in {m.header.frame_id for _, m in got}
    finally:
        t0 = time.monotonic()
        rc = node.stop()
    print(f"SIGINT to exit: {time.monotonic() - t0:.2f} s")
    assert rc == 0, node.log()[-2000:]
    assert "worker stopped" in node.log()


@pytest.mark.parametrize(("params", "needle"), [
    ({"sync.queue_size": "0"}, "sync.queue_size out of range"),
    ({"pipeline.backbone_weights": "/nonexistent/vfn.pt"}, "/nonexistent/vfn.pt not found"),
])
def test_node_setup_errors_exit_2_with_one_line(tmp_path, params, needle):  # noqa: ANN001
    args = [sys.executable, "-m", "ivif_fusion.ros.fusion_node", "--ros-args"]
    for k, v in params.items():
        args += ["-p", f"{k}:={v}"]
    env = {**os.environ, **ROS_ENV}
    res = subprocess.run(args, capture_output=True, text=True, env=env, cwd=str(ROOT), timeout=120)
    assert res.returncode == 2, res.stdout + res.stderr
    assert needle in res.stderr and "ERROR:" in res.stderr
    assert "Traceback" not in res.stderr + res.stdout
