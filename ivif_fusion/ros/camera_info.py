"""camera_info for the fused images: the reference camera's calibration at the fused image's size.

The node optionally subscribes to the reference camera's ``camera_info`` (the sibling of its
image topic, ``thermal/camera_info`` by default, remappable) and publishes, with every fused
image, a CameraInfo with the same header on ``~/fused/<task>/camera_info``, so rviz and
image_proc can pair them. When the pipeline downscales (``pipeline.max_side``) the intrinsics
are scaled to the fused size; before any camera_info arrived (or without a calibrated camera)
the message carries the size and an all-zero K, which REP 104 defines as uncalibrated.
"""

from __future__ import annotations

import threading
from typing import Any


def scaled_intrinsics(k: list[float], p: list[float], src_wh: tuple[int, int], dst_wh: tuple[int, int]
                      ) -> tuple[list[float], list[float]]:
    """K (3x3) and P (3x4), row-major, of a camera whose image is resized from ``src_wh`` to ``dst_wh``."""
    sx, sy = dst_wh[0] / src_wh[0], dst_wh[1] / src_wh[1]
    k2 = [float(v) for v in k]
    p2 = [float(v) for v in p]
    for i, s in ((0, sx), (1, sx), (2, sx), (3, sy), (4, sy), (5, sy)):   # rows 0 and 1 of K
        k2[i] *= s
    for i, s in ((0, sx), (1, sx), (2, sx), (3, sx), (4, sy), (5, sy), (6, sy), (7, sy)):  # rows 0, 1 of P
        p2[i] *= s
    return k2, p2


class CameraInfoRelay:
    """Holds the newest reference CameraInfo; builds the one published with a fused image."""

    def __init__(self, info_cls: type) -> None:
        self._cls = info_cls
        self._lock = threading.Lock()
        self._latest: Any = None
        self.received = 0

    def on_info(self, msg: Any) -> None:
        with self._lock:
            self._latest = msg
            self.received += 1

    def for_image(self, header: Any, width: int, height: int) -> Any:
        """CameraInfo with ``header`` for a fused image of ``width`` x ``height``."""
        with self._lock:
            src = self._latest
        out = self._cls(header=header, width=int(width), height=int(height))
        if src is None or not src.width or not src.height:
            return out
        k, p = scaled_intrinsics(list(src.k), list(src.p), (int(src.width), int(src.height)), (width, height))
        out.k, out.p, out.r = k, p, [float(v) for v in src.r]
        out.distortion_model, out.d = src.distortion_model, [float(v) for v in src.d]
        return out
