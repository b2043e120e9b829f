"""sensor_msgs Image / CompressedImage <-> numpy, and builders of output messages.

Duck-typed, no ROS import: reading works on any object with the message fields (rclpy
messages, rosbags message classes, test stand-ins), and the builders take the message CLASS
to instantiate, so the ROS node passes rclpy classes and the bag writer passes rosbags
classes (``typestore.types``) to the same code.

Channel order: arrays are RGB(A) inside the core; ``bgr8``/``bgra8`` data is reordered at this
boundary in both directions. Decoding problems raise :class:`ConversionError` whose ``reason``
is the :class:`DropReason` the frame is counted under.
"""

from __future__ import annotations

import array as _array
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping

import numpy as np

from ..errors import UserError
from ..imageops import ImageError, normalize_thermal, normalize_visible
from ..types import Detection, DropReason, Frame


class ConversionError(UserError, ValueError):
    """A message could not be turned into an image; ``reason`` says how it is counted."""

    def __init__(self, message: str, reason: DropReason = DropReason.DECODE_ERROR) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class _Enc:
    name: str          # canonical spelling
    dtype: str         # numpy base type
    channels: int
    bgr: bool = False  # channel order on the wire is BGR(A)


_ENCODINGS = {e.name.lower(): e for e in (
    _Enc("mono8", "u1", 1), _Enc("8UC1", "u1", 1),
    _Enc("mono16", "u2", 1), _Enc("16UC1", "u2", 1),
    _Enc("32FC1", "f4", 1),
    _Enc("rgb8", "u1", 3), _Enc("bgr8", "u1", 3, bgr=True),
    _Enc("rgba8", "u1", 4), _Enc("bgra8", "u1", 4, bgr=True),
)}

SUPPORTED_ENCODINGS = tuple(e.name for e in _ENCODINGS.values())

DETECTION_MSG_TYPES = (
    "vision_msgs/msg/Detection2DArray", "vision_msgs/msg/Detection2D", "vision_msgs/msg/BoundingBox2D",
    "vision_msgs/msg/Pose2D", "vision_msgs/msg/Point2D", "vision_msgs/msg/ObjectHypothesisWithPose",
    "vision_msgs/msg/ObjectHypothesis", "geometry_msgs/msg/PoseWithCovariance", "geometry_msgs/msg/Pose",
    "geometry_msgs/msg/Point", "geometry_msgs/msg/Quaternion",
)
"""Message types :func:`detections_to_msg` needs in its ``classes`` mapping."""

_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_JPEG_MAGIC = b"\xff\xd8\xff"


def _encoding(name: Any) -> _Enc:
    enc = _ENCODINGS.get(str(name).strip().lower())
    if enc is None:
        raise ConversionError(f"unsupported image encoding {name!r} (supported: {', '.join(SUPPORTED_ENCODINGS)})",
                              DropReason.UNSUPPORTED_ENCODING)
    return enc


def _as_bytes(data: Any) -> np.ndarray:
    """Message byte payload (bytes, array.array('B'), numpy uint8, list of ints) as a 1-D uint8 view."""
    if isinstance(data, np.ndarray):
        if data.dtype != np.uint8:
            raise ConversionError(f"image data has dtype {data.dtype}, expected uint8")
        return data.reshape(-1)
    try:
        return np.frombuffer(data, dtype=np.uint8)
    except TypeError:
        pass
    try:
        return np.asarray(list(data), dtype=np.uint8)
    except (TypeError, ValueError, OverflowError) as e:
        raise ConversionError(f"image data is not a byte sequence ({type(data).__name__})") from e


def _rgb_order(img: np.ndarray, enc: _Enc) -> np.ndarray:
    if enc.bgr:
        img = img[..., [2, 1, 0, 3]] if enc.channels == 4 else img[..., ::-1]
    return img


def stamp_ns(header: Any) -> int:
    """Nanoseconds of a header (or of a stamp: anything with ``sec`` and ``nanosec``)."""
    stamp = getattr(header, "stamp", header)
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def make_header(header_cls: type, time_cls: type, stamp: int, frame_id: str) -> Any:
    """A new header of the given classes (std_msgs/Header, builtin_interfaces/Time) from ns."""
    sec, nanosec = divmod(int(stamp), 1_000_000_000)
    return header_cls(stamp=time_cls(sec=sec, nanosec=nanosec), frame_id=str(frame_id))


def copy_header(header: Any) -> Any:
    """An independent copy of ``header`` (same classes): outputs carry the input's stamp and frame_id."""
    stamp = header.stamp
    return type(header)(stamp=type(stamp)(sec=int(stamp.sec), nanosec=int(stamp.nanosec)),
                        frame_id=str(header.frame_id))


# ----------------------------------------------------------------------------- decoding


def image_msg_to_array(msg: Any) -> tuple[np.ndarray, str]:
    """sensor_msgs/Image -> (array, canonical encoding).

    Returns (H, W) for one-channel encodings, (H, W, 3) RGB or (H, W, 4) RGBA for colour ones
    (bgr8/bgra8 are reordered), with the encoding's dtype (uint8, uint16, float32) in native byte
    order. Row padding (``step`` > width * pixel size) and ``is_bigendian`` are honoured. The
    result owns its memory.

    Raises:
        ConversionError: UNSUPPORTED_ENCODING for an unknown encoding, DECODE_ERROR for
            inconsistent sizes or data.
    """
    enc = _encoding(getattr(msg, "encoding", None))
    try:
        h, w, step = int(msg.height), int(msg.width), int(msg.step)
        big = bool(msg.is_bigendian)
    except (TypeError, ValueError, AttributeError) as e:
        raise ConversionError(f"image message has invalid size fields: {e}") from e
    itemsize = np.dtype(enc.dtype).itemsize
    row = w * enc.channels * itemsize
    if h <= 0 or w <= 0:
        raise ConversionError(f"image has no pixels ({w}x{h})")
    if step < row:
        raise ConversionError(f"step {step} is smaller than a row of {w} {enc.name} pixels ({row} bytes)")
    data = _as_bytes(msg.data)
    if data.size != step * h:
        raise ConversionError(f"image data has {data.size} bytes, expected step*height = {step}*{h} = {step * h}")
    rows = data.reshape(h, step)[:, :row]
    dt = np.dtype(enc.dtype).newbyteorder(">" if big else "<") if itemsize > 1 else np.dtype(enc.dtype)
    img = np.ascontiguousarray(rows).view(dt).reshape((h, w, enc.channels) if enc.channels > 1 else (h, w))
    img = _rgb_order(img, enc)
    # astype with copy=True gives native byte order and an owned, contiguous array.
    return np.ascontiguousarray(img.astype(np.dtype(enc.dtype).newbyteorder("="), copy=True)), enc.name


def compressed_to_array(msg: Any) -> tuple[np.ndarray, str]:
    """sensor_msgs/CompressedImage (jpeg or png) -> (array, encoding).

    Colour images come back RGB (H, W, 3) ``rgb8`` (alpha dropped); grey ones (H, W) as ``mono8``
    or, for 16-bit PNG, ``mono16``. ``format`` may be ``"jpeg"``, ``"png"`` or the
    image_transport form ``"rgb8; jpeg compressed bgr8"``; empty means "detect from the data".

    Raises:
        ConversionError: UNSUPPORTED_ENCODING for other codecs (compressedDepth, tiff, ...),
            DECODE_ERROR for data that is not a complete png/jpeg.
    """
    import cv2

    fmt = str(getattr(msg, "format", "") or "").lower()
    data = _as_bytes(msg.data)
    head = data[:8].tobytes()
    kind = "png" if head.startswith(_PNG_MAGIC) else "jpeg" if head.startswith(_JPEG_MAGIC) else None
    if "compresseddepth" in fmt:
        raise ConversionError(f"compressed format {fmt!r} is not supported (only jpeg and png)",
                              DropReason.UNSUPPORTED_ENCODING)
    declared = "png" if "png" in fmt else "jpeg" if ("jpeg" in fmt or "jpg" in fmt) else None
    if fmt and declared is None:
        raise ConversionError(f"compressed format {fmt!r} is not supported (only jpeg and png)",
                              DropReason.UNSUPPORTED_ENCODING)
    if kind is None:
        raise ConversionError(f"compressed data ({data.size} bytes) is neither png nor jpeg")
    if declared is not None and declared != kind:
        raise ConversionError(f"format says {declared} but the data is {kind}")
    # libjpeg fills a truncated stream with grey and only warns: require the end markers.
    if kind == "jpeg" and data[-2:].tobytes() != b"\xff\xd9":
        raise ConversionError("jpeg data is truncated (no end-of-image marker)")
    if kind == "png" and b"IEND" not in data[-12:].tobytes():
        raise ConversionError("png data is truncated (no IEND chunk)")
    if kind == "png" and data[12:16].tobytes() != b"IHDR":
        raise ConversionError("png data is malformed (IHDR is not the first chunk)")
    img = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    if img is None or img.size == 0:
        raise ConversionError(f"could not decode {kind} data ({data.size} bytes)")
    if img.ndim == 2:  # OpenCV returns grey images as (H, W), colour ones as (H, W, 3|4)
        return img, "mono16" if img.dtype == np.uint16 else "mono8"
    rgb = np.ascontiguousarray(img[..., 2::-1])  # BGR(A) -> RGB, alpha dropped
    return rgb, "rgb16" if rgb.dtype == np.uint16 else "rgb8"


def is_compressed(msg: Any) -> bool:
    """CompressedImage has ``format`` and no ``encoding``."""
    return hasattr(msg, "format") and not hasattr(msg, "encoding")


def msg_to_frame(msg: Any, stream: str, *, thermal_mode16: str = "percentile") -> Frame:
    """Decode an Image/CompressedImage and normalize it into a :class:`Frame` of ``stream``.

    Thermal: (H, W) float32 0..1 (8-bit / 255; 16-bit and float: per-image 0.5..99.5 percentile
    stretch, or ``thermal_mode16="scale"``; colour thermal: BT.601 luminance). RGB: (H, W, 3)
    float32 0..1 in RGB order (bgr/bgra reordered, alpha dropped, grey replicated).

    Raises:
        ConversionError: reason UNSUPPORTED_ENCODING, DECODE_ERROR or NON_FINITE.
    """
    if stream not in ("thermal", "visible"):
        raise ValueError(f"stream must be 'thermal' or 'visible', got {stream!r}")
    try:
        header = msg.header
        t = stamp_ns(header)
        frame_id = str(header.frame_id)
    except (AttributeError, TypeError, ValueError) as e:
        raise ConversionError(f"{stream} message has an invalid header: {e}") from e
    img, enc = compressed_to_array(msg) if is_compressed(msg) else image_msg_to_array(msg)
    if np.issubdtype(img.dtype, np.floating) and not np.isfinite(img).all():
        bad = int(np.size(img) - np.isfinite(img).sum())
        raise ConversionError(f"{stream} image ({enc}) has {bad} NaN/inf pixels", DropReason.NON_FINITE)
    try:
        out = normalize_thermal(img, thermal_mode16) if stream == "thermal" else normalize_visible(img)
    except ImageError as e:
        reason = DropReason.NON_FINITE if e.reason == "non_finite" else DropReason.DECODE_ERROR
        raise ConversionError(f"{stream} image ({enc}): {e}", reason) from e
    return Frame(stamp_ns=t, frame_id=frame_id, image=out, encoding=enc, stream=stream)


# ----------------------------------------------------------------------------- building


def _byte_field(cls: type, raw: bytes) -> Any:
    # rclpy sequences take array.array('B') without a per-element check; rosbags wants numpy uint8.
    if hasattr(cls, "get_fields_and_field_types"):
        return _array.array("B", raw)
    return np.frombuffer(raw, dtype=np.uint8).copy()


def array_to_image_msg(cls: type, header: Any, array: np.ndarray, encoding: str, *, big_endian: bool = False) -> Any:
    """numpy image -> ``cls`` (a sensor_msgs/Image class) with a copy of ``header``.

    ``array`` is in core order (RGB/RGBA for colour) with the encoding's dtype: uint8 for
    mono8/8UC1/rgb8/bgr8/rgba8/bgra8, uint16 for mono16/16UC1, float32 for 32FC1. No row padding.
    """
    enc = _encoding(encoding)
    a = np.asarray(array)
    if a.ndim == 3 and enc.channels == 1 and a.shape[2] == 1:
        a = a[..., 0]
    want_ndim = 2 if enc.channels == 1 else 3
    if a.ndim != want_ndim or (enc.channels > 1 and a.shape[2] != enc.channels):
        raise ValueError(f"{enc.name} needs a {'(H, W)' if enc.channels == 1 else f'(H, W, {enc.channels})'} "
                         f"array, got shape {a.shape}")
    if a.dtype != np.dtype(enc.dtype):
        raise ValueError(f"{enc.name} needs dtype {np.dtype(enc.dtype)}, got {a.dtype}")
    h, w = a.shape[:2]
    a = _rgb_order(a, enc)
    itemsize = a.dtype.itemsize
    if itemsize > 1:
        a = a.astype(a.dtype.newbyteorder(">" if big_endian else "<"))
    raw = np.ascontiguousarray(a).tobytes()
    return cls(header=copy_header(header), height=h, width=w, encoding=enc.name,
               is_bigendian=int(big_endian and itemsize > 1), step=w * enc.channels * itemsize,
               data=_byte_field(cls, raw))


def array_to_compressed_msg(cls: type, header: Any, array: np.ndarray, fmt: str = "jpeg", quality: int = 90) -> Any:
    """numpy image (uint8 grey or RGB, or uint16 grey for png) -> ``cls`` (sensor_msgs/CompressedImage).

    ``format`` follows image_transport's compressed plugin, e.g. ``"rgb8; jpeg compressed bgr8"``.
    """
    import cv2

    if fmt not in ("jpeg", "png"):
        raise ValueError(f"fmt must be 'jpeg' or 'png', got {fmt!r}")
    a = np.asarray(array)
    if a.ndim == 3 and a.shape[2] == 3 and a.dtype == np.uint8:
        src, wire, bgr = "rgb8", "bgr8", np.ascontiguousarray(a[..., ::-1])
    elif a.ndim == 2 and a.dtype == np.uint8:
        src, wire, bgr = "mono8", "mono8", a
    elif a.ndim == 2 and a.dtype == np.uint16 and fmt == "png":
        src, wire, bgr = "mono16", "mono16", a
    else:
        raise ValueError(f"cannot compress a {a.dtype} array of shape {a.shape} as {fmt}")
    params = [cv2.IMWRITE_JPEG_QUALITY, int(quality)] if fmt == "jpeg" else []
    ok, buf = cv2.imencode(".jpg" if fmt == "jpeg" else ".png", bgr, params)
    if not ok:
        raise ValueError(f"OpenCV could not encode the image as {fmt}")
    return cls(header=copy_header(header), format=f"{src}; {fmt} compressed {wire}",
               data=_byte_field(cls, buf.tobytes()))


def mask_to_msg(cls: type, header: Any, mask: np.ndarray) -> Any:
    """(H, W) class-id mask (integers 0..255 or bool) -> mono8 ``cls`` image with a copy of ``header``."""
    m = np.asarray(mask)
    if m.ndim != 2:
        raise ValueError(f"mask must be (H, W), got shape {m.shape}")
    if m.dtype != np.bool_:
        if not np.issubdtype(m.dtype, np.integer):
            raise ValueError(f"mask must hold integer class ids, got dtype {m.dtype}")
        if m.size and (m.min() < 0 or m.max() > 255):
            raise ValueError(f"mask values must lie in 0..255 for mono8, got {m.min()}..{m.max()}")
    return array_to_image_msg(cls, header, m.astype(np.uint8), "mono8")


def detection_classes(lookup: Callable[[str], type]) -> dict[str, type]:
    """The ``classes`` mapping for :func:`detections_to_msg` from a type lookup.

    rosbags: ``detection_classes(typestore.types.__getitem__)`` (or pass ``typestore.types``
    directly); rclpy: ``detection_classes(rosidl_runtime_py.utilities.get_message)``.
    """
    return {name: lookup(name) for name in DETECTION_MSG_TYPES}


def _cls(classes: Mapping[str, type], name: str) -> type:
    try:
        return classes[name]
    except KeyError:
        short = name.split("/")[-1]
        if short in classes:
            return classes[short]
        raise KeyError(f"message class {name} missing from `classes` (needs {', '.join(DETECTION_MSG_TYPES)})") \
            from None


def detections_to_msg(classes: Mapping[str, type], header: Any, detections: Iterable[Detection], *,
                      class_id: str = "label") -> Any:
    """Detections -> vision_msgs 4.x Detection2DArray (each Detection2D carries a copy of ``header``).

    ``classes`` maps ROS type names (see :data:`DETECTION_MSG_TYPES`; short names such as
    ``"Detection2D"`` also work) to message classes: ``typestore.types`` for rosbags, or
    :func:`detection_classes` with rclpy's lookup. Box: centre and size in pixels, theta 0. One
    hypothesis per detection: ``class_id`` is the label (``class_id="label"``, falling back to
    the index when the label is empty) or the numeric index as text (``"index"``); the
    hypothesis pose is the box centre with identity orientation and zero covariance. ``id`` is
    empty (no tracking).
    """
    if class_id not in ("label", "index"):
        raise ValueError(f"class_id must be 'label' or 'index', got {class_id!r}")
    c = {n.split("/")[-1]: _cls(classes, n) for n in DETECTION_MSG_TYPES}
    out = []
    for d in detections:
        cx, cy = (d.x1 + d.x2) / 2.0, (d.y1 + d.y2) / 2.0
        cid = d.label if (class_id == "label" and d.label) else str(int(d.class_id))
        bbox = c["BoundingBox2D"](center=c["Pose2D"](position=c["Point2D"](x=float(cx), y=float(cy)), theta=0.0),
                                  size_x=float(d.x2 - d.x1), size_y=float(d.y2 - d.y1))
        pose = c["PoseWithCovariance"](
            pose=c["Pose"](position=c["Point"](x=float(cx), y=float(cy), z=0.0),
                           orientation=c["Quaternion"](x=0.0, y=0.0, z=0.0, w=1.0)),
            covariance=np.zeros(36, dtype=np.float64))
        hyp = c["ObjectHypothesisWithPose"](hypothesis=c["ObjectHypothesis"](class_id=cid, score=float(d.score)),
                                            pose=pose)
        out.append(c["Detection2D"](header=copy_header(header), results=[hyp], bbox=bbox, id=""))
    return c["Detection2DArray"](header=copy_header(header), detections=out)


def msg_to_detections(msg: Any, labels: list[str] | None = None) -> list[Detection]:
    """Detection2DArray -> detections (first hypothesis of each); inverse of :func:`detections_to_msg`.

    ``class_id`` becomes the label's index in ``labels`` when given, else its integer value when
    the text is a number, else -1.
    """
    dets = []
    for d in msg.detections:
        b = d.bbox
        cx, cy, sx, sy = b.center.position.x, b.center.position.y, b.size_x, b.size_y
        hyp = d.results[0].hypothesis if len(d.results) else None
        text = str(hyp.class_id) if hyp is not None else ""
        if labels is not None and text in labels:
            cid = labels.index(text)
        else:
            cid = int(text) if text.lstrip("-").isdigit() else -1
        dets.append(Detection(class_id=cid, label=text, score=float(hyp.score) if hyp is not None else 0.0,
                              x1=cx - sx / 2, y1=cy - sy / 2, x2=cx + sx / 2, y2=cy + sy / 2))
    return dets
