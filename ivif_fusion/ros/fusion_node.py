"""ROS 2 node: synchronized thermal + RGB in, per-task fused images, detections and masks out.

The only module that imports rclpy. It connects topics to the core path::

    Image/CompressedImage -> msg_to_frame -> Synchronizer -> LatestPairSlot -> worker: Pipeline.run
                                                                              -> ~/fused/<task>, ~/detections/<task>,
                                                                                 ~/mask/<task>, /diagnostics

Subscription callbacks only decode and pair (cheap); inference runs on a worker thread that
always takes the newest pair, so callbacks and timers never wait on the model. Parameters are
declared by :mod:`ivif_fusion.ros.declare` (defaults from ``config_file``, overrides win, an
unknown one is an error). Bad input never kills the node: every message ends as part of a
published pair or as a counted drop (see :mod:`ivif_fusion.stream.accounting`), reported on
``/diagnostics`` with the health of each input (:mod:`ivif_fusion.ros.diagnostics`). The decode,
accounting and output steps are the ones ``ivif replay`` uses (:mod:`ivif_fusion.stream`), time
jumps included (stamps going back start a new timeline, :mod:`ivif_fusion.runtime.time_jump`).

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
from ..runtime.stream_health import StreamHealth
from ..runtime.sync import Synchronizer
from ..stream.accounting import LatestPairAccounting
from ..stream.decode import decode_or_drop
from ..stream.outputs import OutputPlan
from ..types import Drop, DropReason, Pair
from .camera_info import CameraInfoRelay
from .convert import ros_classes
from .declare import declare_node_parameters
from .diagnostics import node_diagnostics, pipeline_errors_finding
from .qos import describe_qos, qos_profile
from .topics import camera_info_topic, input_topic

NODE_NAME = "fusion_node"
PARAMETER_HINT = ("tasks are plain parameters: -p 'pipeline.tasks:=[det, seg]' -p tasks.det.kind:=detection "
                  "(docs/ros.md, Parameters)")


class FusionNode(Node):
    """Thermal/RGB fusion node; see the module docstring. Raises ConfigError/UserError on bad setup.

    Args:
        inference_thread: start the inference worker (default). Without it, pairs wait in
            ``accounting`` until the caller takes them and calls :meth:`process` (a caller that
            drives the node's steps itself, e.g. a test comparing them with replay).
        kwargs: passed to rclpy's ``Node`` (context, parameter_overrides, ...).
    """

    def __init__(self, *, inference_thread: bool = True, **kwargs: Any) -> None:
        super().__init__(NODE_NAME, automatically_declare_parameters_from_overrides=True, **kwargs)
        self._inference_thread = inference_thread
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
        self.accounting = LatestPairAccounting(self._make_sync(), time_jump_s=self.cfg.time_jump_s,
                                               make_sync=self._make_sync, on_jump=self._on_jump)
        inputs = {"thermal": ros.thermal, "visible": ros.visible}
        self.health = StreamHealth(self.cfg.diagnostics, {s: c.rate_hz for s, c in inputs.items()},
                                   {s: input_topic(c, self.resolve_topic_name) for s, c in inputs.items()}, time.monotonic())
        out_qos = qos_profile(ros.output_qos)
        self.outputs = OutputPlan(self.classes, {t: self.pipeline.task_config(t).kind for t in self.pipeline.task_names},
                                  ros, self.cfg.sync.reference, "~")
        self._pubs: dict[Any, Any] = {o: self.create_publisher(self.classes[o.msgtype], o.topic, out_qos)
                                      for o in self.outputs.outputs}
        # camera_info next to each fused image topic (image_transport's camera convention).
        self._info_pubs = {o.task: self.create_publisher(self.classes["sensor_msgs/msg/CameraInfo"],
                                                         f"{o.topic}/camera_info", out_qos)
                           for o in self.outputs.outputs if o.kind == "fused" and ros.publish_camera_info}
        self._diag_pub = self.create_publisher(self.classes["diagnostic_msgs/msg/DiagnosticArray"], "/diagnostics",
                                               QoSProfile(depth=10))
        self._errors_since_diag = 0
        self._last_error = ""

        self._stop = threading.Event()
        self._worker = threading.Thread(target=self._work, name="ivif-inference", daemon=True)
        if self._inference_thread:
            self._worker.start()

        def sub(stream: str, cfg: Any) -> Any:
            cls = self.classes["sensor_msgs/msg/CompressedImage" if cfg.transport == "compressed"
                               else "sensor_msgs/msg/Image"]
            topic, qos = input_topic(cfg, self.resolve_topic_name), qos_profile(cfg)
            # The middleware reports samples it lost before they reached the callback: diagnostics show them.
            events = SubscriptionEventCallbacks(message_lost=lambda info: self.health.observe_lost(stream,
                                                                                                  info.total_count))
            try:
                return self.create_subscription(cls, topic, lambda msg: self.on_message(stream, msg), qos,
                                                event_callbacks=events)
            except UnsupportedEventTypeError:
                self.get_logger().warning("this RMW does not report lost messages: diagnostics cannot count them")
                return self.create_subscription(cls, topic, lambda msg: self.on_message(stream, msg), qos)

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
        for p in [*self._pubs.values(), *self._info_pubs.values(), self._diag_pub]:
            self.destroy_publisher(p)
        self._subs, self._pubs, self._info_pubs = [], {}, {}
        return joined

    def cleanup(self) -> None:
        """Free the pipeline (weights, backend sessions)."""
        self.pipeline = None

    def _make_sync(self) -> Synchronizer:
        return Synchronizer.from_config(self.cfg.sync)

    # ------------------------------------------------------------------ input side (executor thread)

    def on_message(self, stream: str, msg: Any) -> None:
        """Subscription callback: decode-or-drop, stamp checks, then pair (cheap; inference runs on the worker)."""
        t0 = time.perf_counter()
        frame = decode_or_drop(msg, stream, fallback_stamp_ns=0, received_s=t0)
        if isinstance(frame, Drop):
            self.accounting.reject_drop(frame)
            self.get_logger().warning(f"{stream} message dropped ({frame.reason.value}): {frame.detail}",
                                      throttle_duration_sec=2.0)
            return
        self.accounting.add_timing("decode", (time.perf_counter() - t0) * 1e3)
        self.health.observe_stamp(stream, frame.stamp_ns, self.get_clock().now().nanoseconds)
        try:
            self.accounting.hand_over(frame)
        except Exception as e:  # noqa: BLE001 - pairing must not take the node down either
            self.get_logger().error(f"pairing failed on a {stream} frame: {e}", throttle_duration_sec=2.0)

    def _on_clock_jump(self, jump: Any) -> None:
        self.accounting.clock_reset()

    def _on_jump(self, event: Any, drops: list[Drop]) -> None:
        """Pairing was reset (stamps or the clock went back): one log line, WARN in diagnostics."""
        what = event.describe() if event is not None else "the ROS clock jumped back"
        self.health.note_jump(time.monotonic(), event, len(drops))
        self.get_logger().warning(f"time jump: {what}; synchronizer reset, {len(drops)} frames dropped as "
                                  "time_jump; pairing resumes with the new stamps")

    # ------------------------------------------------------------------ inference worker

    def _work(self) -> None:
        while not self._stop.is_set():
            pair = self.accounting.take(timeout=0.2)
            if pair is None:
                continue
            self.process(pair)

    def process(self, pair: Pair) -> None:
        """Run the pipeline on ``pair``, publish its outputs and count it (published or dropped)."""
        from ..runtime.pipeline import PairSizeMismatch

        t_start = time.perf_counter()
        ref = pair.thermal if self.cfg.sync.reference == "thermal" else pair.visible
        latest = max(t_start if f.received_s is None else f.received_s for f in (pair.thermal, pair.visible))
        timings = {"wait": (t_start - latest) * 1e3}
        try:
            result = self.pipeline.run(pair)
            t_pub = time.perf_counter()
            for output, msg in self.outputs.messages(result):
                self._pubs[output].publish(msg)
            self._publish_camera_info(result)
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

    def _publish_camera_info(self, result: Any) -> None:
        """One CameraInfo per fused image, same header, intrinsics at the fused size."""
        header = self.outputs.header(result.pair)
        for task, pub in self._info_pubs.items():
            to = result.outputs.get(task)
            if to is not None and to.fused_rgb is not None:
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
        if self._worker.ident is not None:
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
