"""Input topic names as the node subscribes them (image_transport conventions, no rclpy here).

``ros.<stream>.topic`` is the base topic. As in image_transport, the base topic is resolved
first (namespace and remapping: ``-r rgb/image_raw:=/camera/color/image_raw``), then the
transport's suffix is added (``compressed`` -> ``<resolved base>/compressed``) and the camera's
``camera_info`` is the sibling of the resolved base (``/flir/image_raw`` -> ``/flir/camera_info``).
``resolve`` is the node's ``resolve_topic_name``; without it the names stay relative.
"""

from __future__ import annotations

from typing import Callable

from ..config import InputConfig


def _same(topic: str) -> str:
    return topic


def input_topic(cfg: InputConfig, resolve: Callable[[str], str] = _same) -> str:
    """The topic to subscribe for one camera input."""
    base = resolve(cfg.topic)
    return f"{base}/compressed" if cfg.transport == "compressed" else base


def camera_info_topic(cfg: InputConfig, resolve: Callable[[str], str] = _same) -> str:
    """``thermal/image_raw`` -> ``thermal/camera_info`` (image_transport's camera_info convention)."""
    head, sep, _ = resolve(cfg.topic).rpartition("/")
    return f"{head}{sep}camera_info"
