"""ROS-side glue around the core conversions in :mod:`ivif_fusion.io.messages`.

The functions that build messages take the message classes as a mapping, so they run with
rclpy's generated classes in the node and with any stand-in classes in tests;
:func:`ros_classes` is the only function here that imports ROS message packages.
"""

from __future__ import annotations

from typing import Any, Mapping

from ..config import RosConfig
from ..io.messages import array_to_image_msg, detections_to_msg, mask_to_msg
from ..types import Result

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


def output_topics(task: str, kind: str, ros: RosConfig) -> dict[str, str]:
    """Which outputs a task publishes: {"fused"|"detections"|"mask": private topic name}."""
    topics = {}
    if ros.publish_fused:
        topics["fused"] = f"~/fused/{task}"
    if ros.publish_detections and kind == "detection":
        topics["detections"] = f"~/detections/{task}"
    if ros.publish_masks and kind == "segmentation":
        topics["mask"] = f"~/mask/{task}"
    return topics


def result_messages(classes: Mapping[str, Any], result: Result, header: Any, ros: RosConfig,
                    ) -> list[tuple[str, str, Any]]:
    """(output kind, task, message) for every output of ``result``, each with a copy of ``header``.

    Fused images go out as ``ros.fused_encoding`` (rgb8/bgr8), detections as vision_msgs
    Detection2DArray, masks as mono8 class-id images. Outputs that a task does not produce
    (``None``) or that ``ros`` disables are skipped.
    """
    out = []
    image_cls = classes["sensor_msgs/msg/Image"]
    for task, to in result.outputs.items():
        if ros.publish_fused and to.fused_rgb is not None:
            out.append(("fused", task, array_to_image_msg(image_cls, header, to.fused_rgb, ros.fused_encoding)))
        if ros.publish_detections and to.detections is not None:
            out.append(("detections", task, detections_to_msg(classes, header, to.detections)))
        if ros.publish_masks and to.mask is not None:
            out.append(("mask", task, mask_to_msg(image_cls, header, to.mask)))
    return out


def diagnostics_msg(classes: Mapping[str, Any], header: Any, name: str, snapshot: dict, *, backend: str = "",
                    level: int | None = None, message: str = "") -> Any:
    """DiagnosticArray from a :meth:`NodeAccounting.snapshot`.

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
