"""The node's /diagnostics message: pairing counters, latency and the health of each input.

Statuses, all named ``<node>: ...`` with the node as ``hardware_id``:

- ``pairing``: the counters of :func:`~ivif_fusion.ros.convert.diagnostics_msg`, with the overall
  level and message of :class:`~ivif_fusion.runtime.stream_health.StreamHealth` (the worst finding);
- ``latency``: per-stage latency, WARN above ``diagnostics.latency_warn_ms``;
- ``thermal input`` / ``visible input``: frequency, stamp and drop checks of each stream with
  the values behind them (``rate_hz``, ``expected_hz``, ``drop_ratio.<reason>``, ...).
"""

from __future__ import annotations

from typing import Any, Mapping

from ..runtime.stream_health import Finding, HealthReport
from .convert import diagnostics_msg


def _level(status_cls: type, level: int) -> Any:
    return bytes([level]) if isinstance(status_cls.OK, bytes) else level


def node_diagnostics(classes: Mapping[str, Any], header: Any, name: str, snapshot: dict, report: HealthReport,
                     backend: str = "") -> Any:
    """DiagnosticArray for one report (see module docstring)."""
    msg = diagnostics_msg(classes, header, name, snapshot, backend=backend, level=report.level,
                          message=report.message)
    status_cls = classes["diagnostic_msgs/msg/DiagnosticStatus"]
    kv = classes["diagnostic_msgs/msg/KeyValue"]
    latency = msg.status[1]
    latency.level = _level(status_cls, report.latency.level)
    latency.message = report.latency.message
    for stream, r in report.streams.items():
        msg.status.append(status_cls(level=_level(status_cls, r.level), name=f"{name}: {stream} input",
                                     message=r.message, hardware_id=name,
                                     values=[kv(key=k, value=v) for k, v in r.values.items()]))
    return msg


def pipeline_errors_finding(errors: int, last_error: str) -> list[Finding]:
    """A WARN while the pipeline fails on pairs (message: the last error)."""
    return [Finding(1, f"{errors} pipeline errors since last report (last: {last_error})")] if errors else []
