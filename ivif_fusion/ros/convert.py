"""ROS-side glue: the rclpy message classes the node uses and its diagnostics message.

Output messages are built by :class:`ivif_fusion.stream.outputs.OutputPlan` (shared with replay).
The functions that build messages take the message classes as a mapping, so they run with
rclpy's generated classes in the node and with any stand-in classes in tests;
:func:`ros_classes` is the only function here that imports ROS message packages.
"""

from __future__ import annotations

from typing import Any, Mapping

# Stages reported in diagnostics besides the pipeline's own (Result.timings_ms).
NODE_STAGES = ("decode", "wait", "publish", "node_total")


def ros_classes() -> dict[str, Any]:
    """rclpy message classes the node uses, keyed by ROS type name (and by short name)."""
    from builtin_interfaces.msg import Time
    from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
    from geometry_msgs.msg import Point, Pose, PoseWithCovariance, Quaternion
    from sensor_msgs.msg import CameraInfo, CompressedImage, Image
    from std_msgs.msg import Header
    from vision_msgs.msg import (BoundingBox2D, Detection2D, Detection2DArray, ObjectHypothesis,
                                 ObjectHypothesisWithPose, Point2D, Pose2D)

    classes = {
        "builtin_interfaces/msg/Time": Time, "std_msgs/msg/Header": Header,
        "sensor_msgs/msg/Image": Image, "sensor_msgs/msg/CompressedImage": CompressedImage,
        "sensor_msgs/msg/CameraInfo": CameraInfo,
        "diagnostic_msgs/msg/DiagnosticArray": DiagnosticArray,
        "diagnostic_msgs/msg/DiagnosticStatus": DiagnosticStatus, "diagnostic_msgs/msg/KeyValue": KeyValue,
        "geometry_msgs/msg/Point": Point, "geometry_msgs/msg/Pose": Pose,
        "geometry_msgs/msg/PoseWithCovariance": PoseWithCovariance, "geometry_msgs/msg/Quaternion": Quaternion,
        "vision_msgs/msg/BoundingBox2D": BoundingBox2D, "vision_msgs/msg/Detection2D": Detection2D,
        "vision_msgs/msg/Detection2DArray": Detection2DArray, "vision_msgs/msg/ObjectHypothesis": ObjectHypothesis,
        "vision_msgs/msg/ObjectHypothesisWithPose": ObjectHypothesisWithPose,
        "vision_msgs/msg/Point2D": Point2D, "vision_msgs/msg/Pose2D": Pose2D,
    }
    classes.update({k.rsplit("/", 1)[-1]: v for k, v in list(classes.items())})
    return classes


def diagnostics_msg(classes: Mapping[str, Any], header: Any, name: str, snapshot: dict, *, backend: str = "",
                    level: int | None = None, message: str = "") -> Any:
    """DiagnosticArray from a :meth:`~ivif_fusion.stream.accounting.PairAccounting.snapshot`.

    Two statuses: ``<name>: pairing`` with ``<stream>.received``, ``<stream>.paired``,
    ``<stream>.pending`` and ``<stream>.dropped.<reason>`` (every reason, zeros included) plus
    ``pairs.processed``/``pairs.in_flight``; and ``<name>: latency`` with
    ``<stage>.mean_ms``/``last_ms``/``max_ms``/``count`` per stage. Values are decimal text.
    """
    from ..types import DropReason

    kv = classes["diagnostic_msgs/msg/KeyValue"]
    status_cls = classes["diagnostic_msgs/msg/DiagnosticStatus"]
    pairing = []
    for stream, v in snapshot["streams"].items():
        pairing += [kv(key=f"{stream}.received", value=str(v["received"])),
                    kv(key=f"{stream}.paired", value=str(v["paired"])),
                    kv(key=f"{stream}.pending", value=str(v["pending"]))]
        pairing += [kv(key=f"{stream}.dropped.{r.value}", value=str(v["dropped"].get(r.value, 0)))
                    for r in DropReason]
    pairing += [kv(key=f"pairs.{k}", value=str(n)) for k, n in snapshot["pairs"].items()]
    if backend:
        pairing.append(kv(key="backend", value=backend))
    latency = []
    for stage, st in sorted(snapshot["stages"].items()):
        latency += [kv(key=f"{stage}.mean_ms", value=f"{st.mean_ms:.3f}"),
                    kv(key=f"{stage}.last_ms", value=f"{st.last_ms:.3f}"),
                    kv(key=f"{stage}.max_ms", value=f"{st.max_ms:.3f}"),
                    kv(key=f"{stage}.count", value=str(st.count))]
    ok = status_cls.OK  # rclpy: a 1-byte bytes value; other generators: int
    lvl = 0 if level is None else int(level)
    statuses = [
        status_cls(level=bytes([lvl]) if isinstance(ok, bytes) else lvl, name=f"{name}: pairing",
                   message=message or "ok", hardware_id=name, values=pairing),
        status_cls(level=ok, name=f"{name}: latency", message="per-stage latency (ms)", hardware_id=name,
                   values=latency),
    ]
    return classes["diagnostic_msgs/msg/DiagnosticArray"](header=header, status=statuses)


def parse_diagnostics(msg: Any, name_suffix: str = ": pairing") -> dict[str, str] | None:
    """{key: value} of the first status whose name ends with ``name_suffix`` (for tests and tools)."""
    for st in msg.status:
        if st.name.endswith(name_suffix):
            return {v.key: v.value for v in st.values}
    return None
