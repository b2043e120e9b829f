"""ROS 2 node: synchronized thermal + RGB in, per-task fused images, detections and masks out.

The only module that imports rclpy. It connects topics to the core path::

    Image/CompressedImage -> msg_to_frame -> Synchronizer -> LatestPairSlot -> worker: Pipeline.run
                                                                              -> ~/fused/<task>, ~/detections/<task>,
                                                                                 ~/mask/<task>, /diagnostics

Subscription callbacks only decode and pair (cheap); inference runs on a worker thread that
always takes the newest pair, so callbacks and timers never wait on the model. Parameters are
declared from :mod:`ivif_fusion.ros.params` (defaults from ``config_file``, overrides win).
Bad input never kills the node: every message ends as part of a published pair or as a
counted drop (see :mod:`ivif_fusion.ros.accounting`), reported on ``/diagnostics``.

Run: ``fusion_node --ros-args -p config_file:=/path/multitask.yaml -r thermal/image:=/cam/ir``.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import Any

import numpy as np
import rclpy
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, ParameterType
from rclpy.exceptions import ParameterException
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

from ..config import ConfigError, RuntimeConfig
from ..errors import is_user_error
from ..io.messages import ConversionError, make_header, msg_to_frame, stamp_ns
from ..runtime.sync import Synchronizer
from ..types import DropReason, Pair
from . import params as P
from .accounting import NodeAccounting
from .convert import diagnostics_msg, output_topics, result_messages, ros_classes

NODE_NAME = "fusion_node"

_TYPES = {P.BOOL: ParameterType.PARAMETER_BOOL, P.INT: ParameterType.PARAMETER_INTEGER,
          P.FLOAT: ParameterType.PARAMETER_DOUBLE, P.STRING: ParameterType.PARAMETER_STRING,
          P.STRING_ARRAY: ParameterType.PARAMETER_STRING_ARRAY, P.YAML: ParameterType.PARAMETER_STRING}


def _descriptor(spec: P.ParamSpec) -> ParameterDescriptor:
    d = ParameterDescriptor(name=spec.name, type=_TYPES[spec.kind], description=spec.description,
                            additional_constraints=spec.constraints, read_only=True)
    if spec.kind == P.INT and (spec.min is not None or spec.max is not None):
        d.integer_range = [IntegerRange(from_value=int(spec.min if spec.min is not None else -2**63),
                                        to_value=int(spec.max if spec.max is not None else 2**63 - 1), step=0)]
    elif spec.kind == P.FLOAT and (spec.min is not None or spec.max is not None):
        d.floating_point_range = [FloatingPointRange(from_value=float(spec.min if spec.min is not None else -1e300),
                                                     to_value=float(spec.max if spec.max is not None else 1e300),
                                                     step=0.0)]
    return d


def qos_profile(reliability: str, depth: int) -> QoSProfile:
    """Sensor-data QoS (keep-last, volatile) with the configured reliability and depth."""
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=int(depth), durability=DurabilityPolicy.VOLATILE,
                      reliability=ReliabilityPolicy.RELIABLE if reliability == "reliable"
                      else ReliabilityPolicy.BEST_EFFORT)


class FusionNode(Node):
    """Thermal/RGB fusion node; see the module docstring. Raises ConfigError/UserError on bad setup."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(NODE_NAME, **kwargs)
        self.cfg = self._declare_parameters()
        self.classes = ros_classes()
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

        ros = self.cfg.ros
        self.accounting = NodeAccounting(Synchronizer.from_config(self.cfg.sync))
        qos = qos_profile(ros.qos_reliability, ros.qos_depth)
        self._pubs: dict[tuple[str, str], Any] = {}
        for task in self.pipeline.task_names:
            kind = self.pipeline.task_config(task).kind
            for out, topic in output_topics(task, kind, ros).items():
                cls = self.classes["vision_msgs/msg/Detection2DArray" if out == "detections"
                                   else "sensor_msgs/msg/Image"]
                self._pubs[(out, task)] = self.create_publisher(cls, topic, qos)
        self._diag_pub = self.create_publisher(self.classes["diagnostic_msgs/msg/DiagnosticArray"], "/diagnostics",
                                               QoSProfile(depth=10))
        self._errors_since_diag = 0
        self._last_error = ""

        self._stop = threading.Event()
        self._worker = threading.Thread(target=self._work, name="ivif-inference", daemon=True)
        self._worker.start()

        def sub(stream: str, topic: str, compressed: bool) -> Any:
            cls = self.classes["sensor_msgs/msg/CompressedImage" if compressed else "sensor_msgs/msg/Image"]
            return self.create_subscription(cls, topic, lambda msg: self._on_message(stream, msg), qos)

        self._subs = [sub("thermal", ros.thermal_topic, ros.thermal_compressed),
                      sub("visible", ros.visible_topic, ros.visible_compressed)]
        self._diag_timer = self.create_timer(ros.diagnostics_period_s, self.publish_diagnostics)
        log.info(f"subscribed: thermal={self._subs[0].topic_name} rgb={self._subs[1].topic_name} "
                 f"({ros.qos_reliability}, depth {ros.qos_depth}); publishing "
                 f"{sorted(p.topic_name for p in self._pubs.values())}")

    # ------------------------------------------------------------------ parameters

    def _declare_parameters(self) -> RuntimeConfig:
        config_file = self.declare_parameter(
            P.CONFIG_FILE_PARAM, str(P.DEFAULT_CONFIG_FILE),
            ParameterDescriptor(name=P.CONFIG_FILE_PARAM, type=ParameterType.PARAMETER_STRING, read_only=True,
                                description="YAML file (config/multitask.yaml layout) whose values are the "
                                            "defaults of all other parameters; parameter overrides win."),
        ).value
        from ..config import load_runtime

        file_cfg = load_runtime(config_file)
        values = {}
        for spec in P.parameter_specs(file_cfg):
            p = self.declare_parameter(spec.name, spec.default, _descriptor(spec))
            values[spec.name] = p.value
        return P.config_from_parameters(config_file, values)

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
        try:
            self.accounting.push(frame)
        except Exception as e:  # noqa: BLE001 - pairing must not take the node down either
            self.get_logger().error(f"pairing failed on a {stream} frame: {e}", throttle_duration_sec=2.0)

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

    # ------------------------------------------------------------------ diagnostics

    def snapshot(self) -> dict:
        return self.accounting.snapshot()

    def publish_diagnostics(self) -> None:
        snap = self.accounting.snapshot()
        errors, self._errors_since_diag = self._errors_since_diag, 0
        status = self.classes["diagnostic_msgs/msg/DiagnosticStatus"]
        warn = status.WARN[0] if isinstance(status.WARN, bytes) else status.WARN
        header = self.classes["std_msgs/msg/Header"](stamp=self.get_clock().now().to_msg(), frame_id="")
        msg = diagnostics_msg(self.classes, header, self.get_fully_qualified_name(), snap, backend=self.backend_name,
                              level=warn if errors else None,
                              message=f"{errors} pipeline errors since last report (last: {self._last_error})"
                              if errors else "ok")
        self._diag_pub.publish(msg)

    # ------------------------------------------------------------------ shutdown

    def shutdown(self, timeout: float = 10.0) -> bool:
        """Stop the worker (it finishes the pair in hand) and count what is left. True if it joined."""
        self._stop.set()
        self.accounting.close()
        self._worker.join(timeout)
        return not self._worker.is_alive()


def main(argv: list[str] | None = None) -> int:
    """Console script ``fusion_node``: spin until SIGINT/SIGTERM, then shut down cleanly."""
    rclpy.init(args=argv if argv is not None else sys.argv)
    node = None
    rc = 0
    try:
        node = FusionNode()
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
