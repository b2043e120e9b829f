"""ROS 2 node: synchronized thermal + RGB in, per-task fused images, detections and masks out.

The only module that imports rclpy. It connects topics to the core path::

    Image/CompressedImage -> decode_or_drop -> Synchronizer -> LatestPairSlot -> worker: Pipeline.run
                                                                                -> OutputPlan: ~/fused/<task>,
                                                                                   ~/detections/<task>, ~/mask/<task>
                                                                                -> /diagnostics

Subscription callbacks only decode and pair (cheap); inference runs on a worker thread that
always takes the newest pair, so callbacks and timers never wait on the model. Parameters are
declared from :mod:`ivif_fusion.ros.params` (defaults from ``config_file``, overrides win).
Bad input never kills the node: every message ends as part of a published pair or as a
counted drop (see :mod:`ivif_fusion.stream.accounting`), reported on ``/diagnostics``. The decode,
accounting and output steps are the ones ``ivif replay`` uses (:mod:`ivif_fusion.stream`).

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
from ..runtime.sync import Synchronizer
from ..stream.accounting import LatestPairAccounting
from ..stream.decode import decode_or_drop
from ..stream.outputs import OutputPlan
from ..types import Drop, DropReason, Pair
from . import params as P
from .convert import diagnostics_msg, ros_classes

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
    """Thermal/RGB fusion node; see the module docstring. Raises ConfigError/UserError on bad setup.

    Args:
        inference_thread: start the inference worker (default). Without it, pairs wait in
            ``accounting`` until the caller takes them and calls :meth:`process` (a caller that
            drives the node's steps itself, e.g. a test comparing them with replay).
        kwargs: passed to rclpy's ``Node`` (context, parameter_overrides, ...).
    """

    def __init__(self, *, inference_thread: bool = True, **kwargs: Any) -> None:
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
        self.accounting = LatestPairAccounting(Synchronizer.from_config(self.cfg.sync))
        qos = qos_profile(ros.qos_reliability, ros.qos_depth)
        self.outputs = OutputPlan(self.classes, {t: self.pipeline.task_config(t).kind for t in self.pipeline.task_names},
                                  ros, self.cfg.sync.reference, "~")
        self._pubs = {o: self.create_publisher(self.classes[o.msgtype], o.topic, qos) for o in self.outputs.outputs}
        self._diag_pub = self.create_publisher(self.classes["diagnostic_msgs/msg/DiagnosticArray"], "/diagnostics",
                                               QoSProfile(depth=10))
        self._errors_since_diag = 0
        self._last_error = ""

        self._stop = threading.Event()
        self._worker = threading.Thread(target=self._work, name="ivif-inference", daemon=True)
        if inference_thread:
            self._worker.start()

        def sub(stream: str, topic: str, compressed: bool) -> Any:
            cls = self.classes["sensor_msgs/msg/CompressedImage" if compressed else "sensor_msgs/msg/Image"]
            return self.create_subscription(cls, topic, lambda msg: self.on_message(stream, msg), qos)

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

    def on_message(self, stream: str, msg: Any) -> None:
        """Subscription callback: decode-or-drop, then pair (cheap; inference runs on the worker)."""
        t0 = time.perf_counter()
        frame = decode_or_drop(msg, stream, fallback_stamp_ns=0, received_s=t0)
        if isinstance(frame, Drop):
            self.accounting.reject_drop(frame)
            self.get_logger().warning(f"{stream} message dropped ({frame.reason.value}): {frame.detail}",
                                      throttle_duration_sec=2.0)
            return
        self.accounting.add_timing("decode", (time.perf_counter() - t0) * 1e3)
        try:
            self.accounting.hand_over(frame)
        except Exception as e:  # noqa: BLE001 - pairing must not take the node down either
            self.get_logger().error(f"pairing failed on a {stream} frame: {e}", throttle_duration_sec=2.0)

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
        if self._worker.ident is not None:
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
