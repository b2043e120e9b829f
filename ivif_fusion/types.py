"""Small shared types of the frame path (plain dataclasses, no ROS); the ground floor every layer may import.

Frame -> Synchronizer -> Pair -> Pipeline -> Result. Every frame that is not part of an
emitted Pair ends as exactly one Drop with a reason, so received = paired + dropped.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

import numpy as np


class DropReason(str, enum.Enum):
    """Why a frame never became (part of) a processed pair. Values appear in reports and diagnostics."""

    NO_PARTNER = "no_partner"          # no frame of the other stream within slop / never matched
    QUEUE_OVERFLOW = "queue_overflow"  # pushed out of a full per-stream queue
    SUPERSEDED = "superseded"          # a better-matching frame won (approximate-time rules), or latest-pair-wins
    REPLACED = "replaced"              # a later frame of the stream with the same stamp took its place in the queue
    OUT_OF_ORDER = "out_of_order"      # opt-in (sync.reject_late): stamp older than the stream's last accepted stamp
    DUPLICATE = "duplicate"            # opt-in (sync.reject_late): same stamp as an already received frame
    DECODE_ERROR = "decode_error"      # message could not be turned into an image
    UNSUPPORTED_ENCODING = "unsupported_encoding"
    NON_FINITE = "non_finite"          # NaN / inf pixels
    SIZE_MISMATCH = "size_mismatch"    # thermal and RGB of a pair differ in size (resize disabled)
    PIPELINE_ERROR = "pipeline_error"  # inference failed on this pair
    UNFLUSHED = "unflushed"            # still queued when the stream ended
    TIME_JUMP = "time_jump"            # held or in flight when stamps jumped back, or a stale stamp after a jump


@dataclass
class Frame:
    """One decoded camera image. ``image``: thermal (H, W) float32 0..1 or RGB (H, W, 3) float32 0..1."""

    stamp_ns: int
    frame_id: str
    image: np.ndarray
    encoding: str = ""
    stream: str = ""     # "thermal" or "visible"
    seq: int = -1        # arrival index within its stream (for accounting)
    received_s: float | None = None  # arrival time (time.perf_counter()) at the node, for end-to-end latency


@dataclass
class Pair:
    thermal: Frame
    visible: Frame

    @property
    def stamp_ns(self) -> int:
        return self.thermal.stamp_ns


@dataclass
class Drop:
    stream: str
    stamp_ns: int
    reason: DropReason
    detail: str = ""


@dataclass
class Detection:
    class_id: int
    label: str
    score: float
    x1: float
    y1: float
    x2: float
    y2: float


@dataclass
class TaskOutput:
    fused_rgb: np.ndarray                      # (H, W, 3) uint8 RGB; shared by tasks using the same head: read-only
    detections: list[Detection] | None = None
    mask: np.ndarray | None = None             # (H, W) uint8 class ids


@dataclass
class Result:
    pair: Pair
    outputs: dict[str, TaskOutput] = field(default_factory=dict)
    timings_ms: dict[str, float] = field(default_factory=dict)
