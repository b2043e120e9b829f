"""rclpy QoS profiles from the config's QosConfig sections (one per input, one for the outputs).

Defaults follow REP 2003: a consumer of raw sensor data subscribes best effort (matches both
reliable and best-effort camera drivers), keep last, volatile; the node's outputs are published
reliable, which best-effort and reliable subscribers both match. The depths are larger than
SensorDataQoS's 5 so that a busy executor (Python callbacks share the GIL with inference) does not
overwrite frames in the reader history before they are taken; docs/ros.md has the numbers.
"""

from __future__ import annotations

from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

from ..config import QosConfig

_RELIABILITY = {"reliable": ReliabilityPolicy.RELIABLE, "best_effort": ReliabilityPolicy.BEST_EFFORT}
_DURABILITY = {"volatile": DurabilityPolicy.VOLATILE, "transient_local": DurabilityPolicy.TRANSIENT_LOCAL}


def qos_profile(cfg: QosConfig) -> QoSProfile:
    """Keep-last QoS with the configured reliability, depth and durability."""
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=int(cfg.depth), reliability=_RELIABILITY[cfg.reliability],
                      durability=_DURABILITY[cfg.durability])


def describe_qos(cfg: QosConfig) -> str:
    """'best_effort, depth 10, volatile' for logs."""
    return f"{cfg.reliability}, depth {cfg.depth}, {cfg.durability}"
