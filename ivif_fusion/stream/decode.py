"""Decode-or-drop: one received image message becomes a :class:`Frame` or a :class:`Drop` with a reason.

The node's subscription callbacks and ``ivif replay`` both call :func:`decode_or_drop`, so a bad
message is counted under the same reason by both. Nothing here raises for bad input: a message
that could not be read (``msg`` None, e.g. undeserializable bag data), decoded or normalized is a
Drop, stamped with its header stamp when that can be read and with ``fallback_stamp_ns``
otherwise. The caller counts the Drop (:meth:`PairAccounting.reject_drop`).
"""

from __future__ import annotations

from typing import Any

from ..io.messages import ConversionError, msg_to_frame, stamp_ns
from ..types import Drop, DropReason, Frame


def decode_or_drop(msg: Any, stream: str, *, fallback_stamp_ns: int = 0, received_s: float | None = None,
                   error: str = "") -> Frame | Drop:
    """``msg`` (sensor_msgs Image/CompressedImage, any generator's classes) -> Frame of ``stream``, or a Drop.

    Args:
        msg: the message; None when it could not be read at all (``error`` says why).
        stream: ``thermal`` or ``visible``.
        fallback_stamp_ns: the Drop's stamp when the header cannot be read (node: 0; replay: log time).
        received_s: arrival time (``time.perf_counter()``) stored in ``Frame.received_s``.
        error: why ``msg`` is None (becomes the Drop's detail).

    Returns:
        The Frame; or a Drop whose reason is the :class:`ConversionError`'s (UNSUPPORTED_ENCODING,
        DECODE_ERROR, NON_FINITE) and DECODE_ERROR for a missing message or any other failure.
    """
    if msg is None:
        return Drop(stream, fallback_stamp_ns, DropReason.DECODE_ERROR, error or "message could not be read")
    try:
        frame = msg_to_frame(msg, stream)
    except Exception as e:  # noqa: BLE001 - any bad message is a counted drop, never a crash
        reason = e.reason if isinstance(e, ConversionError) else DropReason.DECODE_ERROR
        return Drop(stream, header_stamp_or(msg, fallback_stamp_ns), reason, str(e))
    frame.received_s = received_s
    return frame


def header_stamp_or(msg: Any, fallback_ns: int) -> int:
    """The stamp of ``msg.header`` in ns, or ``fallback_ns`` when the header is missing or malformed."""
    try:
        return stamp_ns(msg.header)
    except Exception:  # noqa: BLE001 - any unreadable header falls back
        return fallback_ns
