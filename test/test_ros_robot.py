"""The node as a robot runs it: 640x480 cameras over loopback DDS with the shipped profile and defaults.

Live tests (a node subprocess, this process as camera and consumer; environment from
test/ros_fixtures/live.py: random ROS_DOMAIN_ID, LOCALHOST discovery, config/fastdds_localhost.xml):

- reception: 50 pairs (thermal mono16 + rgb8, 640x480) from a reliable and from a best-effort
  publisher, each with >= 95 % of the frames received by the node under its default QoS;
- camera_info: one per fused image, same header, intrinsics scaled to the fused size;
- diagnostics: a stream below its expected rate is WARN; every frame dropped is ERROR;
- time jump: the same stamps sent twice; outputs resume and diagnostics go WARN;
- lifecycle: configure (failing on a missing file, then succeeding), activate, deactivate,
  cleanup and shutdown driven through the node's lifecycle services;
- use_sim_time: /clock going back resets pairing once;
- Fast DDS defaults (no large-image profile): the frames the middleware loses show up as a WARN.

Stamps are taken from the wall clock, as a camera driver's would be, so the stamp checks pass.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "test"))

from ros_fixtures.live import Client, NodeProcess, ros_env, ros_missing  # noqa: E402
from ivif_fusion.ros.camera_rig import MessageFactory, Send, load_pairs, run  # noqa: E402

ENV = ros_env()
DOMAIN_ID = int(ENV["ROS_DOMAIN_ID"])
W, H = 640, 480
FUSED_W, FUSED_H = 160, 120          # pipeline.max_side 160 keeps inference cheap; reception is the point
RATE_HZ = 5.0
NODE = "/fusion_node"
START_TIMEOUT = 90.0
K = [500.0, 0.0, 320.0, 0.0, 500.0, 240.0, 0.0, 0.0, 1.0]


MISSING = ros_missing("lifecycle_msgs.srv")
pytestmark = pytest.mark.skipif(MISSING is not None, reason=str(MISSING))


def _config(tmp: Path, ckpt: Path, **overrides) -> Path:
    from ivif_fusion.config import dump_yaml, runtime_defaults

    cfg = runtime_defaults({"pipeline.tasks": [{"name": "fusion", "kind": "fusion"}],
                            "pipeline.backbone_weights": str(ckpt), "pipeline.threads": 1,
                            "pipeline.max_side": FUSED_W, "ros.diagnostics_period_s": 0.5,
                            "ros.thermal.rate_hz": 9.0, **overrides})
    path = tmp / "node.yaml"
    path.write_text(dump_yaml(cfg) + "\n")
    return path


def _status(msg, suffix: str) -> tuple[int, str, dict] | None:  # noqa: ANN001
    for st in msg.status:
        if st.name.endswith(suffix) and st.hardware_id.endswith("fusion_node"):
            level = st.level[0] if isinstance(st.level, bytes) else int(st.level)
            return level, st.message, {v.key: v.value for v in st.values}
    return None


def _latest(diags: list, suffix: str = ": pairing", after: float = 0.0, name: str = NODE):
    for t, m in reversed(diags):
        st = _status(m, suffix)
        if st is not None and t >= after and m.status[0].hardware_id == name:
            return st
    return None


def _qos(reliable: bool, depth: int = 10):  # noqa: ANN202
    from rclpy.qos import QoSProfile, ReliabilityPolicy

    return QoSProfile(depth=depth, reliability=ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT)


def _sends(n: int, t0_ns: int, rate_hz: float = RATE_HZ) -> list[Send]:
    """``n`` pairs, thermal and RGB with the same stamp, ``1 / rate_hz`` apart."""
    out = []
    for k in range(n):
        at = k / rate_hz
        stamp = t0_ns + int(round(at * 1e9))
        out += [Send(at, "thermal", stamp, k), Send(at, "visible", stamp, k)]
    return out


@pytest.fixture(scope="module")
def client():
    with pytest.MonkeyPatch.context() as mp:
        for k, v in ENV.items():
            mp.setenv(k, v)
        c = Client(DOMAIN_ID)
        yield c
        c.close()


@pytest.fixture(scope="module")
def factory(data_root):  # noqa: ANN001, ANN201
    return MessageFactory(load_pairs(data_root, 3, (W, H)))


def _start(tmp: Path, client: Client, ros_args: list[str], topic: str,
           module: str = "ivif_fusion.ros.fusion_node") -> NodeProcess:
    node = NodeProcess(tmp / "node.log", ENV, ros_args, module)
    try:
        client.wait(lambda: client.node.count_publishers(topic) > 0 or not node.alive(), START_TIMEOUT,
                    f"{topic} to be advertised")
        assert node.alive(), f"node exited with {node.proc.returncode}"
    except AssertionError as e:
        node.stop()
        raise AssertionError(f"node did not come up ({e}):\n{node.log()[-3000:]}") from None
    return node


@pytest.fixture(scope="module")
def robot(tmp_path_factory, client, random_vfn_ckpt):  # noqa: ANN001, ANN201
    """The plain node with the package's default QoS and topics; this process subscribes to its outputs."""
    from diagnostic_msgs.msg import DiagnosticArray
    from sensor_msgs.msg import CameraInfo, Image

    tmp = tmp_path_factory.mktemp("robot")
    node = _start(tmp, client, ["-p", f"config_file:={_config(tmp, random_vfn_ckpt)}"], f"{NODE}/fused/fusion")
    state = {"node": node, "fused": [], "info": [], "diags": []}
    subs = [client.collect(Image, f"{NODE}/fused/fusion", _qos(True, 200), state["fused"]),
            client.collect(CameraInfo, f"{NODE}/fused/fusion/camera_info", _qos(True, 200), state["info"]),
            client.collect(DiagnosticArray, "/diagnostics", _qos(True, 100), state["diags"])]
    client.wait(lambda: all(s.get_publisher_count() > 0 for s in subs), 30, "the node's outputs to match")
    state["camera_info"] = client.node.create_publisher(CameraInfo, "thermal/camera_info", _qos(True))
    yield state
    rc = node.stop()
    assert rc == 0, node.log()[-3000:]
    assert "Traceback" not in node.log()


def _publishers(client: Client, factory: MessageFactory, reliable: bool, node: NodeProcess) -> dict:
    """Camera publishers as drivers make them: REP 2003 reliable (SystemDefaults), or best-effort SensorData."""
    pubs = {"thermal": client.node.create_publisher(factory.Image, "thermal/image_raw", _qos(reliable)),
            "visible": client.node.create_publisher(factory.Image, "rgb/image_raw", _qos(reliable))}
    try:
        client.wait(lambda: all(p.get_subscription_count() > 0 for p in pubs.values()), 30, "the node to subscribe")
    except AssertionError as e:
        raise AssertionError(f"{e}; node log:\n{node.log()[-3000:]}") from None
    return pubs


def _received(diags: list, after: float) -> dict[str, int]:
    _, _, kv = _latest(diags, after=after)
    return {s: int(kv[f"{s}.received"]) for s in ("thermal", "visible")}


def _camera_info_msg(client: Client, stamp_ns: int):  # noqa: ANN202
    from sensor_msgs.msg import CameraInfo

    from ivif_fusion.io.messages import make_header
    from builtin_interfaces.msg import Time
    from std_msgs.msg import Header

    return CameraInfo(header=make_header(Header, Time, stamp_ns, "thermal_optical"), width=W, height=H,
                      distortion_model="plumb_bob", d=[0.1, -0.05, 0.0, 0.0, 0.0], k=K,
                      r=[1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0], p=K[:3] + [0.0] + K[3:6] + [0.0] + K[6:] + [0.0])


@pytest.mark.parametrize("reliable", [True, False], ids=["reliable_publisher", "best_effort_publisher"])
def test_fifty_large_pairs_arrive(robot, client, factory, reliable):  # noqa: ANN001
    """>= 95 % of 50 pairs at 640x480 reach the node's callbacks under the shipped profile and defaults."""
    diags = robot["diags"]
    client.wait(lambda: _latest(diags) is not None, 20, "diagnostics")
    before = _received(diags, 0.0)
    pubs = _publishers(client, factory, reliable, robot["node"])

    def with_info(send: Send, _t: float) -> None:   # a camera driver publishes camera_info with each image
        if send.stream == "thermal":
            robot["camera_info"].publish(_camera_info_msg(client, send.stamp_ns))

    sends = _sends(50, time.time_ns())
    run(pubs, factory, sends, with_info)
    t_end = time.perf_counter()
    client.wait(lambda: _latest(diags, after=t_end + 1.0) is not None, 10, "diagnostics after the run")
    got = {s: n - before[s] for s, n in _received(diags, t_end + 1.0).items()}
    print(f"{'reliable' if reliable else 'best-effort'} publisher: received {got} of 50 per stream")
    assert got["thermal"] >= 48 and got["visible"] >= 48, got
    assert got["thermal"] <= 50 and got["visible"] <= 50, got
    for p in pubs.values():
        client.node.destroy_publisher(p)


def test_camera_info_with_every_fused_image(robot, client):  # noqa: ANN001
    """Runs after the reception tests: every fused image has a CameraInfo with the same header, K scaled by 1/4."""
    from ivif_fusion.io.messages import stamp_ns

    fused, info = robot["fused"], robot["info"]
    assert fused, "no fused image was published"
    client.wait(lambda: len(info) >= len(fused), 10, "camera_info for every fused image")
    by_stamp = {stamp_ns(m.header): m for _, m in info}
    for _, img in fused:
        ci = by_stamp[stamp_ns(img.header)]
        assert ci.header.frame_id == img.header.frame_id == "thermal_optical"
        assert (ci.width, ci.height) == (img.width, img.height) == (FUSED_W, FUSED_H)
    # The newest CameraInfo had arrived before the last fused images: 640x480 -> 160x120 scales K and P by 0.25.
    last = info[-1][1]
    assert list(last.k) == pytest.approx([125.0, 0.0, 80.0, 0.0, 125.0, 60.0, 0.0, 0.0, 1.0])
    assert list(last.p) == pytest.approx([125.0, 0.0, 80.0, 0.0, 0.0, 125.0, 60.0, 0.0, 0.0, 0.0, 1.0, 0.0])
    assert last.distortion_model == "plumb_bob" and list(last.d) == pytest.approx([0.1, -0.05, 0.0, 0.0, 0.0])


def test_stream_below_expected_rate_warns(robot):  # noqa: ANN001
    """ros.thermal.rate_hz is 9 and the cameras ran at 5 Hz: the thermal input read WARN with the numbers."""
    seen = [_status(m, ": thermal input") for _, m in robot["diags"]]
    warn = [s for s in seen if s and s[0] == 1 and "expected 9 Hz" in s[1]]
    names = sorted({f"{st.hardware_id} | {st.name}" for _, m in robot["diags"] for st in m.status})
    assert warn, ([s[:2] for s in seen if s][-5:], len(robot["diags"]), names)
    # While the cameras ran, the window's rate was their 5 Hz. Windows reaching into idle time read
    # lower, and one that catches a burst of late deliveries reads higher.
    rates = sorted(float(s[2]["rate_hz"]) for s in warn if float(s[2]["rate_hz"]) > 0)
    assert any(4.0 <= r <= 6.5 for r in rates), rates
    assert all(r < 9 * 0.9 for r in rates), rates   # every WARN was below the tolerance band of 9 Hz
    level, message, kv = warn[-1]
    assert kv["expected_hz"] == "9"
    assert "frames are lost before the node" in message
    # RGB has no expected rate: its input status never warned about a rate.
    assert not any("visible at" in s[1] for s in (_status(m, ": visible input") for _, m in robot["diags"]) if s)


def test_every_frame_dropped_reads_error(robot, client, factory):  # noqa: ANN001
    """4 s of frames in an unsupported encoding: the window fills with drops and the level is ERROR."""
    diags = robot["diags"]
    pubs = _publishers(client, factory, True, robot["node"])
    t0 = time.time_ns()
    t_start = time.perf_counter()
    for k in range(20):
        for stream, pub in pubs.items():
            msg = factory.make(Send(0.0, stream, t0 + k * 200_000_000, k))
            msg.encoding = "yuv422"
            pub.publish(msg)
        time.sleep(1 / RATE_HZ)
    client.wait(lambda: _latest(diags, after=time.perf_counter() - 0.3) is not None, 5, "diagnostics")
    statuses = [_status(m, ": pairing") for t, m in diags if t > t_start]
    errors = [s for s in statuses if s and s[0] == 2]
    assert errors, [s[:2] for s in statuses if s][-5:]
    assert "thermal frames of the last" in errors[-1][1] and "unsupported_encoding" in errors[-1][1]
    # The factory's messages are shared: put the encodings back for the tests that follow.
    for k in range(3):
        factory.make(Send(0.0, "thermal", 0, k)).encoding = "mono16"
        factory.make(Send(0.0, "visible", 0, k)).encoding = "rgb8"
    for p in pubs.values():
        client.node.destroy_publisher(p)


def test_time_jump_resets_pairing_and_outputs_resume(robot, client, factory):  # noqa: ANN001
    """The same 10 stamps sent twice (a looping bag): fused images resume after the jump; level WARN."""
    from ivif_fusion.io.messages import stamp_ns

    diags, fused = robot["diags"], robot["fused"]
    pubs = _publishers(client, factory, True, robot["node"])
    sends = _sends(10, time.time_ns())
    stamps = {s.stamp_ns for s in sends}
    run(pubs, factory, sends)
    t_jump = time.perf_counter()
    n_before = len(fused)
    run(pubs, factory, sends)
    client.wait(lambda: any(t > t_jump and stamp_ns(m.header) in stamps for t, m in fused[n_before:]), 20,
                "a fused image of the replayed stamps")
    client.wait(lambda: (_latest(diags, after=t_jump) or (0, "", {}))[0] >= 1, 10, "a non-OK diagnostics level")
    level, message, kv = _latest(diags, after=t_jump)
    assert level == 1 and "time jump: thermal stamps went back by 1.800 s" in message, message
    assert "thermal.dropped.time_jump" in kv and int(kv["thermal.dropped.out_of_order"]) == 0, kv
    assert "time jump" in robot["node"].log()
    for p in pubs.values():
        client.node.destroy_publisher(p)


def test_lifecycle_transitions_through_services(tmp_path, client, random_vfn_ckpt, factory):  # noqa: ANN001
    """fusion_lifecycle_node: configure fails on a missing file (process lives), then configure,
    activate (outputs flow), deactivate (nothing subscribed), cleanup, shutdown."""
    from lifecycle_msgs.msg import State, Transition
    from lifecycle_msgs.srv import ChangeState, GetState
    from sensor_msgs.msg import Image

    late = tmp_path / "late_vfn.pt"
    cfg = _config(tmp_path, late)
    ns, name = "/managed", "/managed/fusion_node"
    node = NodeProcess(tmp_path / "node.log", ENV, ["-r", "__ns:=/managed", "-p", f"config_file:={cfg}"],
                       "ivif_fusion.ros.lifecycle_node")
    try:
        def state() -> int:
            return client.call(GetState, f"{name}/get_state", GetState.Request(), START_TIMEOUT).current_state.id

        def change(tid: int) -> bool:
            req = ChangeState.Request(transition=Transition(id=tid))
            return client.call(ChangeState, f"{name}/change_state", req).success

        assert state() == State.PRIMARY_STATE_UNCONFIGURED
        assert change(Transition.TRANSITION_CONFIGURE) is False          # weights file missing
        assert node.alive() and state() == State.PRIMARY_STATE_UNCONFIGURED
        assert "configure failed" in node.log() and str(late) in node.log()
        shutil.copy(random_vfn_ckpt, late)
        assert change(Transition.TRANSITION_CONFIGURE) is True
        assert state() == State.PRIMARY_STATE_INACTIVE
        assert client.node.count_publishers(f"{name}/fused/fusion") == 0
        assert client.node.count_subscribers(f"{ns}/thermal/image_raw") == 0
        assert change(Transition.TRANSITION_ACTIVATE) is True and state() == State.PRIMARY_STATE_ACTIVE
        fused: list = []
        sub = client.collect(Image, f"{name}/fused/fusion", _qos(True, 50), fused)
        pubs = {"thermal": client.node.create_publisher(Image, f"{ns}/thermal/image_raw", _qos(True)),
                "visible": client.node.create_publisher(Image, f"{ns}/rgb/image_raw", _qos(True))}
        client.wait(lambda: all(p.get_subscription_count() > 0 for p in pubs.values())
                    and sub.get_publisher_count() > 0, 30, "the active node to match")
        run(pubs, factory, _sends(5, time.time_ns()))
        client.wait(lambda: len(fused) > 0, 20, "a fused image from the active node")
        assert change(Transition.TRANSITION_DEACTIVATE) is True and state() == State.PRIMARY_STATE_INACTIVE
        assert client.node.count_subscribers(f"{ns}/thermal/image_raw") == 0
        assert client.node.count_publishers(f"{name}/fused/fusion") == 0
        assert change(Transition.TRANSITION_CLEANUP) is True and state() == State.PRIMARY_STATE_UNCONFIGURED
        assert change(Transition.TRANSITION_UNCONFIGURED_SHUTDOWN) is True
        assert state() == State.PRIMARY_STATE_FINALIZED
        for p in pubs.values():
            client.node.destroy_publisher(p)
        client.node.destroy_subscription(sub)
    finally:
        rc = node.stop()
    assert rc == 0, node.log()[-3000:]
    assert "Traceback" not in node.log()


def test_sim_clock_reset_resets_pairing(tmp_path, client, random_vfn_ckpt):  # noqa: ANN001
    """use_sim_time: /clock going back by more than time_jump_s resets pairing, logged once."""
    from rosgraph_msgs.msg import Clock
    from builtin_interfaces.msg import Time

    cfg = _config(tmp_path, random_vfn_ckpt)
    name = "/sim/fusion_node"
    clock = client.node.create_publisher(Clock, "/clock", _qos(True))
    node = NodeProcess(tmp_path / "node.log", ENV, ["-r", "__ns:=/sim", "-p", "use_sim_time:=true",
                                                    "-p", f"config_file:={cfg}"])
    try:
        client.wait(lambda: client.node.count_publishers(f"{name}/fused/fusion") > 0 or not node.alive(),
                    START_TIMEOUT, "the sim-time node")
        assert node.alive(), node.log()[-3000:]
        client.wait(lambda: clock.get_subscription_count() > 0, 30, "the node to subscribe to /clock")
        for sec in (1000, 1001, 1002, 10, 11):   # the simulation restarts at 10 s
            clock.publish(Clock(clock=Time(sec=sec)))
            time.sleep(0.3)
        client.wait(lambda: "the ROS clock jumped back" in node.log(), 10, "the clock jump to be logged")
        assert node.log().count("the ROS clock jumped back") == 1   # forward steps are not jumps
    finally:
        rc = node.stop()
    assert rc == 0 and "Traceback" not in node.log(), node.log()[-3000:]
    client.node.destroy_publisher(clock)


DEFAULTS_PROFILE = """<?xml version="1.0" encoding="UTF-8" ?>
<dds xmlns="http://www.eprosima.com"><profiles><transport_descriptors>
<transport_descriptor><transport_id>udp</transport_id><type>UDPv4</type>
<interfaceWhiteList><address>127.0.0.1</address></interfaceWhiteList></transport_descriptor>
<transport_descriptor><transport_id>shm</transport_id><type>SHM</type></transport_descriptor>
</transport_descriptors><participant profile_name="defaults_on_loopback" is_default_profile="true"><rtps>
<userTransports><transport_id>shm</transport_id><transport_id>udp</transport_id></userTransports>
<useBuiltinTransports>false</useBuiltinTransports></rtps></participant></profiles></dds>
"""


def test_middleware_loss_is_visible_in_diagnostics(tmp_path, client, random_vfn_ckpt):  # noqa: ANN001
    """Camera and node on Fast DDS's default transports (loopback only): frames are lost in the middleware
    and the input status says so (the message_lost event), with no expected rate configured."""
    from diagnostic_msgs.msg import DiagnosticArray

    profile = tmp_path / "fastdds_defaults_loopback.xml"
    profile.write_text(DEFAULTS_PROFILE)
    env = {**ENV, "FASTDDS_DEFAULT_PROFILES_FILE": str(profile)}
    cfg = _config(tmp_path, random_vfn_ckpt, **{"ros.thermal.rate_hz": 0.0})
    node = NodeProcess(tmp_path / "node.log", env, ["-r", "__ns:=/lossy", "-p", f"config_file:={cfg}"])
    diags: list = []
    args = [sys.executable, str(ROOT / "test" / "ros_fixtures" / "pair_publisher.py"), "--duration", "4",
            "--width", str(W), "--height", str(H), "--reliable", "--thermal-topic", "/lossy/thermal/image_raw",
            "--rgb-topic", "/lossy/rgb/image_raw"]
    try:
        client.wait(lambda: client.node.count_publishers("/lossy/fusion_node/fused/fusion") > 0 or not node.alive(),
                    START_TIMEOUT, "the node")
        sub = client.collect(DiagnosticArray, "/diagnostics", _qos(True, 100), diags)
        client.wait(lambda: sub.get_publisher_count() > 0, 30, "diagnostics")
        res = subprocess.run(args, env={**os.environ, **env, "PYTHONPATH": str(ROOT)}, capture_output=True,
                             text=True, timeout=90)
        assert res.returncode == 0, res.stderr[-2000:]
        t_end = time.perf_counter()
        client.wait(lambda: _latest(diags, ": visible input", t_end + 0.5, "/lossy/fusion_node") is not None, 10,
                    "diagnostics after the camera stopped")
        # which input loses frames varies from run to run: judge both inputs' statuses
        seen = [st for t, m in diags if m.status[0].hardware_id == "/lossy/fusion_node"
                for st in (_status(m, ": thermal input"), _status(m, ": visible input")) if st]
        lost = [st for st in seen if int(st[2]["lost"]) > 0]  # statuses whose window holds middleware losses
        assert lost, [st[:2] for st in seen][-4:]
        assert all(level >= 1 for level, _, _ in lost), [st[:2] for st in lost]
        # the loss is named, unless a worse finding (an ERROR, e.g. all frames of that input dropped for want
        # of a partner the middleware lost) takes the message; its count is in the values either way
        said = [st for st in lost if "lost by the middleware" in st[1]]
        assert said or all(level == 2 for level, _, _ in lost), [st[:2] for st in lost]
        level, message, kv = (said or lost)[-1]
        assert int(kv["lost_total"]) > 0
        print(f"Fast DDS defaults: {message}")
    finally:
        rc = node.stop()
    assert rc == 0 and "Traceback" not in node.log(), node.log()[-3000:]
