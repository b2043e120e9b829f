"""A simulated camera rig: real thermal/RGB pairs published as cameras would (thermal mono16 9 Hz, RGB 30 Hz).

Used by the live node tests (test/test_ros_node.py, test/ros_fixtures/pair_publisher.py) and by
benchmarks/node_latency.py. Stamps are ideal camera times plus a seeded jitter; messages go out
in stamp order, paced in real time. Images come from the shared data (``<data root>/MSRS/ir``
and ``/vi``), resized. No ROS import at module level: the caller sets the DDS environment first.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

THERMAL_FRAME = "thermal_optical"
RGB_FRAME = "rgb_optical"
T0_NS = 1_700_000_000 * 1_000_000_000


@dataclass(frozen=True)
class Send:
    """One message of the schedule: when to send it (s from start), which stream, its stamp, which image."""

    at_s: float
    stream: str
    stamp_ns: int
    index: int


def schedule(duration_s: float, thermal_hz: float = 9.0, rgb_hz: float = 30.0, jitter_s: float = 0.003,
             seed: int = 0, t0_ns: int = T0_NS) -> list[Send]:
    """Messages of both streams for ``duration_s``, in stamp order (stamps strictly increase per stream)."""
    rng = random.Random(seed)
    out = []
    for stream, hz in (("thermal", thermal_hz), ("visible", rgb_hz)):
        for k in range(int(duration_s * hz)):
            ideal = k / hz
            jit = rng.uniform(-jitter_s, jitter_s) if k else 0.0
            out.append(Send(ideal, stream, t0_ns + int(round((ideal + jit) * 1e9)), k))
    return sorted(out, key=lambda s: (s.stamp_ns, s.stream))


def load_pairs(root: Path, count: int = 3, size: tuple[int, int] = (160, 120), start: int = 0
               ) -> list[tuple[np.ndarray, np.ndarray]]:
    """``count`` MSRS pairs as (thermal uint8 (H, W), RGB uint8 (H, W, 3)), resized to ``size`` (w, h)."""
    import cv2

    names = sorted(p.name for p in (root / "MSRS" / "ir").glob("*.png"))[start:start + count]
    if len(names) < count:
        raise FileNotFoundError(f"need {count} MSRS pairs under {root}, found {len(names)}")
    pairs = []
    for n in names:
        thermal = cv2.imread(str(root / "MSRS" / "ir" / n), cv2.IMREAD_GRAYSCALE)
        visible = cv2.imread(str(root / "MSRS" / "vi" / n), cv2.IMREAD_COLOR)
        if thermal is None or visible is None:
            raise FileNotFoundError(f"cannot read MSRS pair {n}")
        pairs.append((cv2.resize(thermal, size, interpolation=cv2.INTER_AREA),
                      cv2.resize(visible, size, interpolation=cv2.INTER_AREA)[..., ::-1].copy()))
    return pairs


class MessageFactory:
    """Builds rclpy messages for a :class:`Send` (thermal mono16; RGB rgb8 Image or jpeg CompressedImage)."""

    def __init__(self, pairs: list[tuple[np.ndarray, np.ndarray]], visible_compressed: bool = False) -> None:
        from builtin_interfaces.msg import Time
        from sensor_msgs.msg import CompressedImage, Image
        from std_msgs.msg import Header

        from ivif_fusion.io.messages import array_to_compressed_msg, array_to_image_msg, make_header

        self.Image, self.CompressedImage, self.visible_compressed = Image, CompressedImage, visible_compressed
        self._header = lambda stamp, frame: make_header(Header, Time, stamp, frame)
        # Thermal cameras deliver 16-bit counts: spread the 8-bit data over a 14-bit-like range.
        self._thermal = [array_to_image_msg(Image, self._header(0, THERMAL_FRAME),
                                            (thermal.astype(np.uint16) * 64 + 1000), "mono16") for thermal, _ in pairs]
        if visible_compressed:
            self._rgb = [array_to_compressed_msg(CompressedImage, self._header(0, RGB_FRAME), rgb, "jpeg", 90)
                         for _, rgb in pairs]
        else:
            self._rgb = [array_to_image_msg(Image, self._header(0, RGB_FRAME), rgb, "rgb8") for _, rgb in pairs]

    @property
    def rgb_type(self) -> type:
        return self.CompressedImage if self.visible_compressed else self.Image

    def make(self, send: Send) -> object:
        """The message for ``send`` (a shared pre-built message with its header stamp replaced)."""
        pool = self._thermal if send.stream == "thermal" else self._rgb
        msg = pool[send.index % len(pool)]
        frame = THERMAL_FRAME if send.stream == "thermal" else RGB_FRAME
        msg.header = self._header(send.stamp_ns, frame)
        return msg


def publish(node: object, factory: MessageFactory, sends: list[Send], thermal_topic: str, visible_topic: str,
            qos: object, on_sent: object = None) -> dict[str, object]:
    """Send ``sends`` in real time on ``node``'s publishers; ``on_sent(send, wall_time)`` after each."""
    pubs = {"thermal": node.create_publisher(factory.Image, thermal_topic, qos),  # type: ignore[attr-defined]
            "visible": node.create_publisher(factory.rgb_type, visible_topic, qos)}  # type: ignore[attr-defined]
    run(pubs, factory, sends, on_sent)
    return pubs


def run(pubs: dict[str, object], factory: MessageFactory, sends: list[Send], on_sent: object = None) -> None:
    """Publish ``sends`` on existing publishers, paced by ``Send.at_s``."""
    start = time.perf_counter()
    for s in sends:
        delay = start + s.at_s - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        pubs[s.stream].publish(factory.make(s))  # type: ignore[attr-defined]
        if on_sent is not None:
            on_sent(s, time.perf_counter())  # type: ignore[operator]
