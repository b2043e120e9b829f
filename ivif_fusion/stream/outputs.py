"""The output plan: which topics a set of tasks publishes and the messages of each processed pair.

Shared by the node (topics under its private namespace ``~``, rclpy classes) and ``ivif replay``
(topics under ``replay.output_prefix``, rosbags classes); the message classes are injected as a
mapping from ROS type name to class, so the same code builds both.

Per task, following ``ros.publish_*``: ``<prefix>/fused/<task>`` (sensor_msgs/Image in
``ros.fused_encoding``), ``<prefix>/detections/<task>`` (vision_msgs/Detection2DArray, detection
tasks) and ``<prefix>/mask/<task>`` (mono8 class ids, segmentation tasks). Every output message
carries a new header with the stamp and frame_id of the pair's reference frame (``sync.reference``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..config import RosConfig
from ..io.messages import array_to_image_msg, detections_to_msg, make_header, mask_to_msg
from ..types import Pair, Result

IMAGE = "sensor_msgs/msg/Image"
DETECTIONS = "vision_msgs/msg/Detection2DArray"
HEADER = "std_msgs/msg/Header"
TIME = "builtin_interfaces/msg/Time"
OUTPUT_KINDS = ("fused", "detections", "mask")


@dataclass(frozen=True)
class Output:
    """One output topic: what it carries (``fused``/``detections``/``mask``), for which task."""

    kind: str
    task: str
    topic: str
    msgtype: str


def task_outputs(task: str, task_kind: str, ros: RosConfig, prefix: str) -> list[Output]:
    """The outputs of one task of kind ``task_kind`` (detection/segmentation/fusion), in publishing order."""
    out = []
    if ros.publish_fused:
        out.append(Output("fused", task, f"{prefix}/fused/{task}", IMAGE))
    if ros.publish_detections and task_kind == "detection":
        out.append(Output("detections", task, f"{prefix}/detections/{task}", DETECTIONS))
    if ros.publish_masks and task_kind == "segmentation":
        out.append(Output("mask", task, f"{prefix}/mask/{task}", IMAGE))
    return out


class OutputPlan:
    """Output topics of ``tasks`` and the messages of each :class:`Result`.

    Args:
        classes: ROS type name -> message class; needs the Image, Header, Time and (for detection
            tasks) the :data:`~ivif_fusion.io.messages.DETECTION_MSG_TYPES` classes.
        tasks: task name -> kind, in the pipeline's order.
        ros: the ``ros`` config section (``publish_*``, ``fused_encoding``).
        reference: ``thermal`` or ``visible``: whose header the outputs carry.
        prefix: topic prefix (``~`` for the node, e.g. ``/ivif`` for replay; a trailing ``/`` is ignored).
    """

    def __init__(self, classes: Mapping[str, Any], tasks: Mapping[str, str], ros: RosConfig, reference: str,
                 prefix: str) -> None:
        if reference not in ("thermal", "visible"):
            raise ValueError(f"reference must be 'thermal' or 'visible', got {reference!r}")
        self.classes = classes
        self.ros = ros
        self.reference = reference
        self.outputs = [o for task, kind in tasks.items() for o in task_outputs(task, kind, ros, prefix.rstrip("/"))]

    def header(self, pair: Pair) -> Any:
        """A new header with the reference frame's stamp and frame_id."""
        ref = pair.thermal if self.reference == "thermal" else pair.visible
        return make_header(self.classes[HEADER], self.classes[TIME], ref.stamp_ns, ref.frame_id)

    def messages(self, result: Result) -> list[tuple[Output, Any]]:
        """(output, message) for every planned output that ``result`` has (a missing image, detection
        list or mask is skipped), each message with its own copy of the reference header."""
        header = self.header(result.pair)
        out = []
        for o in self.outputs:
            to = result.outputs.get(o.task)
            msg = None if to is None else self._message(o.kind, to, header)
            if msg is not None:
                out.append((o, msg))
        return out

    def _message(self, kind: str, to: Any, header: Any) -> Any:
        if kind == "fused" and to.fused_rgb is not None:
            return array_to_image_msg(self.classes[IMAGE], header, to.fused_rgb, self.ros.fused_encoding)
        if kind == "detections" and to.detections is not None:
            return detections_to_msg(self.classes, header, to.detections)
        if kind == "mask" and to.mask is not None:
            return mask_to_msg(self.classes[IMAGE], header, to.mask)
        return None
