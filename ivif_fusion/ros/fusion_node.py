"""ROS 2 node: synchronized thermal + RGB in, per-task fused images, detections and masks out.

The only module that imports rclpy. It connects topics to the core path::

    Image/CompressedImage -> msg_to_frame -> Synchronizer -> LatestPairSlot -> worker: Pipeline.run
                                                                              -> ~/fused/<task>, ~/detections/<task>,
                                                                                 ~/mask/<task>, /diagnostics

Subscription callbacks only decode and pair (cheap); inference runs on a worker thread that
always takes the newest pair, so callbacks and timers never wait on the model. Parameters are
declared by :mod:`ivif_fusion.ros.declare` (defaults from ``config_file``, overrides win, an
unknown one is an error). Bad input never kills the node: every message ends as part of a
published pair or as a counted drop (see :mod:`ivif_fusion.ros.accounting`), reported on
``/diagnostics`` with the health of each input (:mod:`ivif_fusion.ros.diagnostics`). Stamps
going back start a new timeline (:mod:`ivif_fusion.runtime.time_jump`).

The work is split in the phases of a managed node: :meth:`FusionNode.configure` (pipeline and
weights), :meth:`~FusionNode.activate` (publishers, subscriptions, worker, timer),
:meth:`~FusionNode.deactivate` and :meth:`~FusionNode.cleanup`. The plain node runs configure
and activate in its constructor; :mod:`ivif_fusion.ros.lifecycle_node` drives them from
lifecycle transitions.

Run: ``fusion_node --ros-args -p config_file:=/path/multitask.yaml -r thermal/image_raw:=/cam/ir``.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import Any

import numpy as np
import rclpy
from rclpy._rclpy_pybind11 import RCLError
from rclpy.clock import JumpThreshold
from rclpy.duration import Duration
from rclpy.event_handler import SubscriptionEventCallbacks, UnsupportedEventTypeError
from rclpy.exceptions import ParameterException
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import QoSProfile

from ..config import ConfigError, RuntimeConfig
from ..errors import is_user_error
from ..io.messages import ConversionError, make_header, msg_to_frame, stamp_ns
from ..runtime.stream_health import StreamHealth
from ..runtime.sync import Synchronizer
from ..runtime.time_jump import STALE_DETAIL, TimeJumpGuard, Verdict
from ..types import DropReason, Pair
from .accounting import NodeAccounting
from .camera_info import CameraInfoRelay
from .convert import output_topics, result_messages, ros_classes
from .declare import declare_node_parameters
from .diagnostics import node_diagnostics, pipeline_errors_finding
from .qos import describe_qos, qos_profile
from .topics import camera_info_topic, input_topic

NODE_NAME = "fusion_node"
PARAMETER_HINT = ("tasks are plain parameters: -p 'pipeline.tasks:=[det, seg]' -p tasks.det.kind:=detection "
                  "(docs/ros.md, Parameters)")


class FusionNode(Node):
    """Thermal/RGB fusion node; see the module docstring. Raises ConfigError/UserError on bad setup."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(NODE_NAME, automatically_declare_parameters_from_overrides=True, **kwargs)
        self.cfg = declare_node_parameters(self)
        self.classes = ros_classes()
        self.configure()
        self.activate()

    # ------------------------------------------------------------------ phases

    def configure(self) -> None:
        """Load weights and backends (raises ConfigError/UserError on a bad file); nothing is subscribed yet."""
        log = self.get_logger()
        from ..runtime.pipeline import Pipeline  # heavy (torch): after parameters are known

        t = time.perf_counter()
        self.pipeline = Pipeline.from_config(self.cfg)
        notes = getattr(self.pipeline, "backend_notes", [])
        for n in notes:
            log.warning(f"backend fallback: {n}")
        self.backend_name = getattr(getattr(self.pipeline, "backend", None), "name", "")
        try:  # first inference pays one-time setup (threads, kernels): not on the first camera pair
            self.pipeline.run_arrays(np.zeros((64, 64), np.float32), np.zeros((64, 64, 3), np.float32))
        except Exception as e:  # noqa: BLE001 - a warm-up failure shows up again, counted, on real pairs
            log.warning(f"pipeline warm-up failed: {e}")
        log.info(f"pipeline ready in {time.perf_counter() - t:.2f} s: backend={self.backend_name} "
                 f"tasks={self.pipeline.task_names}")
        self._active = False

    def activate(self) -> None:
        """Create publishers, subscriptions, the inference worker and the diagnostics timer."""
        ros = self.cfg.ros
        self.accounting = NodeAccounting(self._make_sync())
        self.time_jumps = TimeJumpGuard(self.cfg.time_jump_s)
        inputs = {"thermal": ros.thermal, "visible": ros.visible}
        self.health = StreamHealth(self.cfg.diagnostics, {s: c.rate_hz for s, c in inputs.items()},
                                   {s: input_topic(c, self.resolve_topic_name) for s, c in inputs.items()}, time.monotonic())
        out_qos = qos_profile(ros.output_qos)
        self._pubs: dict[tuple[str, str], Any] = {}
        for task in self.pipeline.task_names:
            kind = self.pipeline.task_config(task).kind
            for out, topic in output_topics(task, kind, ros).items():
                cls = self.classes["vision_msgs/msg/Detection2DArray" if out == "detections"
                                   else "sensor_msgs/msg/Image"]
                self._pubs[(out, task)] = self.create_publisher(cls, topic, out_qos)
                if out == "fused" and ros.publish_camera_info:
                    self._pubs[("camera_info", task)] = self.create_publisher(
                        self.classes["sensor_msgs/msg/CameraInfo"], f"{topic}/camera_info", out_qos)
        self._diag_pub = self.create_publisher(self.classes["diagnostic_msgs/msg/DiagnosticArray"], "/diagnostics",
                                               QoSProfile(depth=10))
        self._errors_since_diag = 0
        self._last_error = ""

        self._stop = threading.Event()
        self._worker = threading.Thread(target=self._work, name="ivif-inference", daemon=True)
        self._worker.start()

        def sub(stream: str, cfg: Any) -> Any:
            cls = self.classes["sensor_msgs/msg/CompressedImage" if cfg.transport == "compressed"
                               else "sensor_msgs/msg/Image"]
            topic, qos = input_topic(cfg, self.resolve_topic_name), qos_profile(cfg)
            # The middleware reports samples it lost before they reached the callback: diagnostics show them.
            events = SubscriptionEventCallbacks(message_lost=lambda info: self.health.observe_lost(stream,
                                                                                                  info.total_count))
            try:
                return self.create_subscription(cls, topic, lambda msg: self._on_message(stream, msg), qos,
                                                event_callbacks=events)
            except UnsupportedEventTypeError:
                self.get_logger().warning("this RMW does not report lost messages: diagnostics cannot count them")
                return self.create_subscription(cls, topic, lambda msg: self._on_message(stream, msg), qos)

        self._subs = [sub("thermal", ros.thermal), sub("visible", ros.visible)]
        reference = inputs[self.cfg.sync.reference]
        self.camera_info = CameraInfoRelay(self.classes["sensor_msgs/msg/CameraInfo"])
        if ros.publish_camera_info:
            self._subs.append(self.create_subscription(self.classes["sensor_msgs/msg/CameraInfo"],
                                                       camera_info_topic(reference, self.resolve_topic_name),
                                                       self.camera_info.on_info,
                                                       qos_profile(reference)))
        back = Duration(nanoseconds=-max(1, int(self.cfg.time_jump_s * 1e9)))
        self._clock_jump = self.get_clock().create_jump_callback(
            JumpThreshold(min_forward=None, min_backward=back, on_clock_change=False),
            post_callback=self._on_clock_jump) if self.cfg.time_jump_s > 0 else None
        self._diag_timer = self.create_timer(ros.diagnostics_period_s, self.publish_diagnostics)
        self._active = True
        self.get_logger().info(
            f"subscribed: thermal={self._subs[0].topic_name} ({describe_qos(ros.thermal)}) "
            f"rgb={self._subs[1].topic_name} ({describe_qos(ros.visible)}); publishing "
            f"{sorted(p.topic_name for p in self._pubs.values())} ({describe_qos(ros.output_qos)})")

    def deactivate(self) -> bool:
        """Stop processing: destroy subscriptions, timer and publishers, stop the worker. True if it joined."""
        if not getattr(self, "_active", False):
            return True
        self._active = False
        for s in self._subs:
            self.destroy_subscription(s)
        self.destroy_timer(self._diag_timer)
        if self._clock_jump is not None:
            self._clock_jump.unregister()
        joined = self.shutdown()
        for p in [*self._pubs.values(), self._diag_pub]:
            self.destroy_publisher(p)
        self._subs, self._pubs = [], {}
        return joined

    def cleanup(self) -> None:
        """Free the pipeline (weights, backend sessions)."""
        self.pipeline = None

    def _make_sync(self) -> Synchronizer:
        return Synchronizer.from_config(self.cfg.sync)

    # ------------------------------------------------------------------ input side (executor thread)

    def _on_message(self, stream: str, msg: Any) -> None:
        t0 = time.perf_counter()
        try:
            frame = msg_to_frame(msg, stream)
        except Exception as e:  # noqa: BLE001 - any bad message is a counted drop, never a crash
            reason = e.reason if isinstance(e, ConversionError) else DropReason.DECODE_ERROR
            try:
                stamp = stamp_ns(msg.header)
            except Exception:  # noqa: BLE001
                stamp = 0
            self.accounting.reject(stream, stamp, reason, str(e))
            self.get_logger().warning(f"{stream} message dropped ({reason.value}): {e}", throttle_duration_sec=2.0)
            return
        frame.received_s = t0  # type: ignore[attr-defined]  # for node_total latency
        self.accounting.add_timing("decode", (time.perf_counter() - t0) * 1e3)
        if not self._admit(stream, frame.stamp_ns):
            return
        try:
            self.accounting.push(frame)
        except Exception as e:  # noqa: BLE001 - pairing must not take the node down either
            self.get_logger().error(f"pairing failed on a {stream} frame: {e}", throttle_duration_sec=2.0)

    def _admit(self, stream: str, stamp: int) -> bool:
        """Stamp checks and time jumps before pairing; False when the frame was dropped as stale."""
        self.health.observe_stamp(stream, stamp, self.get_clock().now().nanoseconds)
        verdict = self.time_jumps.check(stream, stamp)
        if verdict is Verdict.STALE:
            self.accounting.reject(stream, stamp, DropReason.TIME_JUMP, STALE_DETAIL)
            return False
        if verdict is Verdict.JUMP:
            self._reset_timeline(self.time_jumps.jumps[-1])
        return True

    def _on_clock_jump(self, jump: Any) -> None:
        self.time_jumps.clock_reset()
        self._reset_timeline(None)

    def _reset_timeline(self, event: Any) -> None:
        what = event.describe() if event is not None else "the ROS clock jumped back"
        drops = self.accounting.restart(self._make_sync, f"time jump: {what}")
        self.health.note_jump(time.monotonic(), event, len(drops))
        self.get_logger().warning(f"time jump: {what}; synchronizer reset, {len(drops)} frames dropped as "
                                  "time_jump; pairing resumes with the new stamps")

    # ------------------------------------------------------------------ inference worker

    def _work(self) -> None:
        while not self._stop.is_set():
            pair = self.accounting.take(timeout=0.2)
            if pair is None:
                continue
            self._process(pair)

    def _process(self, pair: Pair) -> None:
        from ..runtime.pipeline import PairSizeMismatch

        t_start = time.perf_counter()
        ref = pair.thermal if self.cfg.sync.reference == "thermal" else pair.visible
        latest = max(getattr(pair.thermal, "received_s", t_start), getattr(pair.visible, "received_s", t_start))
        timings = {"wait": (t_start - latest) * 1e3}
        try:
            result = self.pipeline.run(pair)
            header = make_header(self.classes["std_msgs/msg/Header"], self.classes["builtin_interfaces/msg/Time"],
                                 ref.stamp_ns, ref.frame_id)
            t_pub = time.perf_counter()
            for out, task, msg in result_messages(self.classes, result, header, self.cfg.ros):
                pub = self._pubs.get((out, task))
                if pub is not None:
                    pub.publish(msg)
            self._publish_camera_info(result, header)
            now = time.perf_counter()
            timings.update(result.timings_ms)
            timings["publish"] = (now - t_pub) * 1e3
            timings["node_total"] = (now - latest) * 1e3
        except Exception as e:  # noqa: BLE001 - a failing pair is counted, the node keeps running
            reason = DropReason.SIZE_MISMATCH if isinstance(e, PairSizeMismatch) else DropReason.PIPELINE_ERROR
            self.accounting.done(pair, reason, str(e))
            self._errors_since_diag += 1
            self._last_error = f"{type(e).__name__}: {e}"
            self.get_logger().error(f"pair at {ref.stamp_ns} dropped ({reason.value}): {self._last_error}",
                                    throttle_duration_sec=2.0)
            return
        self.accounting.done(pair)
        self.accounting.add_timings(timings)

    def _publish_camera_info(self, result: Any, header: Any) -> None:
        """One CameraInfo per fused image, same header, intrinsics at the fused size."""
        for task, to in result.outputs.items():
            pub = self._pubs.get(("camera_info", task))
            if pub is not None and to.fused_rgb is not None:
                h, w = to.fused_rgb.shape[:2]
                pub.publish(self.camera_info.for_image(header, w, h))

    # ------------------------------------------------------------------ diagnostics

    def snapshot(self) -> dict:
        return self.accounting.snapshot()

    def publish_diagnostics(self) -> None:
        snap = self.accounting.snapshot()
        errors, self._errors_since_diag = self._errors_since_diag, 0
        report = self.health.update(time.monotonic(), snap, pipeline_errors_finding(errors, self._last_error))
        header = self.classes["std_msgs/msg/Header"](stamp=self.get_clock().now().to_msg(), frame_id="")
        self._diag_pub.publish(node_diagnostics(self.classes, header, self.get_fully_qualified_name(), snap, report,
                                                self.backend_name))

    # ------------------------------------------------------------------ shutdown

    def shutdown(self, timeout: float = 10.0) -> bool:
        """Stop the worker (it finishes the pair in hand) and count what is left. True if it joined."""
        if getattr(self, "_worker", None) is None:
            return True
        self._stop.set()
        self.accounting.close()
        self._worker.join(timeout)
        return not self._worker.is_alive()


def main(argv: list[str] | None = None) -> int:
    """Console script ``fusion_node``: spin until SIGINT/SIGTERM, then shut down cleanly."""
    return run_node(FusionNode, argv)


def run_node(node_cls: type, argv: list[str] | None = None) -> int:
    """Create ``node_cls`` and spin it; setup errors the user can fix print one line and return 2."""
    try:
        rclpy.init(args=argv if argv is not None else sys.argv)
    except RCLError as e:  # rcl cannot parse the arguments (e.g. a parameter value it has no type for)
        print(f"[{NODE_NAME}] ERROR: invalid ROS arguments: {e}; {PARAMETER_HINT}", file=sys.stderr)
        return 2
    node = None
    rc = 0
    try:
        node = node_cls()
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except Exception as e:
        if not (isinstance(e, (ConfigError, ParameterException)) or is_user_error(e)):
            raise
        # Setup the user can fix (bad config, missing weights): one clear line, non-zero exit.
        print(f"[{NODE_NAME}] ERROR: {e}", file=sys.stderr)
        rc = 2
    finally:
        if node is not None:
            joined = node.shutdown()
            # The context may already be shut down (SIGINT), so the node logger cannot reach rosout.
            print(f"[{NODE_NAME}] {'worker stopped' if joined else 'worker did not stop within 10 s'}",
                  file=sys.stderr)
            node.destroy_node()
        rclpy.try_shutdown()
    return rc


if __name__ == "__main__":
    sys.exit(main())
