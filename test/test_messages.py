"""Message conversion: Image/CompressedImage decoding, builders, header propagation.

Runs on simple stand-in dataclasses, on rosbags' message classes (Jazzy typestore plus the
vision_msgs definitions in msg/), and on rclpy's sensor_msgs classes when importable.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ivif_fusion.io.messages import (DETECTION_MSG_TYPES, SUPPORTED_ENCODINGS, ConversionError,
                                     array_to_compressed_msg, array_to_image_msg, compressed_to_array,
                                     copy_header, detection_classes, detections_to_msg, image_msg_to_array,
                                     make_header, mask_to_msg, msg_to_detections, msg_to_frame, stamp_ns)
from ivif_fusion.types import Detection, DropReason

MSG_DIR = Path(__file__).resolve().parents[1] / "msg"


# ----------------------------------------------------------------------------- stand-ins


@dataclass
class Time:
    sec: int = 0
    nanosec: int = 0


@dataclass
class Header:
    stamp: Time = field(default_factory=Time)
    frame_id: str = ""


@dataclass
class Image:
    header: Header = field(default_factory=Header)
    height: int = 0
    width: int = 0
    encoding: str = ""
    is_bigendian: int = 0
    step: int = 0
    data: Any = b""


@dataclass
class CompressedImage:
    header: Header = field(default_factory=Header)
    format: str = ""
    data: Any = b""


def _standin(name: str, *fields: str):
    return dataclass(type(name, (), {"__annotations__": dict.fromkeys(fields, Any)}))


STANDIN_DETECTION = {
    "Detection2DArray": _standin("Detection2DArray", "header", "detections"),
    "Detection2D": _standin("Detection2D", "header", "results", "bbox", "id"),
    "BoundingBox2D": _standin("BoundingBox2D", "center", "size_x", "size_y"),
    "Pose2D": _standin("Pose2D", "position", "theta"),
    "Point2D": _standin("Point2D", "x", "y"),
    "ObjectHypothesisWithPose": _standin("ObjectHypothesisWithPose", "hypothesis", "pose"),
    "ObjectHypothesis": _standin("ObjectHypothesis", "class_id", "score"),
    "PoseWithCovariance": _standin("PoseWithCovariance", "pose", "covariance"),
    "Pose": _standin("Pose", "position", "orientation"),
    "Point": _standin("Point", "x", "y", "z"),
    "Quaternion": _standin("Quaternion", "x", "y", "z", "w"),
}

HDR = Header(Time(1_700_000_000, 123_456_789), "cam_thermal")


def raw_image(encoding: str, h: int, w: int, step: int, data: bytes, big: int = 0) -> Image:
    return Image(HDR, h, w, encoding, big, step, data)


def reason_of(fn, *args) -> DropReason:
    with pytest.raises(ConversionError) as ei:
        fn(*args)
    return ei.value.reason


@pytest.fixture(scope="module")
def typestore():
    rosbags = pytest.importorskip("rosbags.typesys")
    ts = rosbags.get_typestore(rosbags.Stores.ROS2_JAZZY)
    add = {}
    for p in sorted(MSG_DIR.glob("*.msg")):
        add.update(rosbags.get_types_from_msg(p.read_text(), f"vision_msgs/msg/{p.stem}"))
    ts.register(add)
    return ts


def _rosbags_header(ts, frame_id="cam_rgb", t=(12, 345)):
    return ts.types["std_msgs/msg/Header"](stamp=ts.types["builtin_interfaces/msg/Time"](sec=t[0], nanosec=t[1]),
                                           frame_id=frame_id)


# ----------------------------------------------------------------------------- decoding by hand-made bytes


def test_stamp_and_headers():
    assert stamp_ns(HDR) == 1_700_000_000_123_456_789
    assert stamp_ns(HDR.stamp) == 1_700_000_000_123_456_789
    h = make_header(Header, Time, 5_000_000_007, "x")
    assert (h.stamp.sec, h.stamp.nanosec, h.frame_id) == (5, 7, "x")
    c = copy_header(HDR)
    assert c == HDR and c is not HDR and c.stamp is not HDR.stamp


def test_bgr8_and_rgb8_channel_order():
    # one pixel: bytes 10, 20, 30
    rgb, enc = image_msg_to_array(raw_image("rgb8", 1, 1, 3, bytes([10, 20, 30])))
    assert enc == "rgb8" and rgb[0, 0].tolist() == [10, 20, 30]
    bgr, enc = image_msg_to_array(raw_image("bgr8", 1, 1, 3, bytes([10, 20, 30])))
    assert enc == "bgr8" and bgr[0, 0].tolist() == [30, 20, 10]   # returned RGB
    bgra, _ = image_msg_to_array(raw_image("bgra8", 1, 1, 4, bytes([10, 20, 30, 40])))
    assert bgra[0, 0].tolist() == [30, 20, 10, 40]
    rgba, _ = image_msg_to_array(raw_image("rgba8", 1, 1, 4, bytes([10, 20, 30, 40])))
    assert rgba[0, 0].tolist() == [10, 20, 30, 40]


def test_mono16_endianness_and_padding():
    # 2x2 mono16, step 7 (3 padding bytes of garbage per row)
    le = bytes([0x02, 0x01, 0xFF, 0x00]) + b"\xee\xee\xee" + bytes([0x00, 0x00, 0x34, 0x12]) + b"\xee\xee\xee"
    img, enc = image_msg_to_array(raw_image("mono16", 2, 2, 7, le, big=0))
    assert enc == "mono16" and img.dtype == np.uint16 and img.dtype.isnative
    assert img.tolist() == [[0x0102, 0x00FF], [0, 0x1234]]
    be = bytes([0x01, 0x02, 0x00, 0xFF]) + b"\xee\xee\xee" + bytes([0x00, 0x00, 0x12, 0x34]) + b"\xee\xee\xee"
    img, _ = image_msg_to_array(raw_image("16UC1", 2, 2, 7, be, big=1))
    assert img.tolist() == [[0x0102, 0x00FF], [0, 0x1234]]


def test_padded_rgb8_and_32fc1():
    row0 = bytes([1, 2, 3, 4, 5, 6]) + b"\x00\x00"
    row1 = bytes([7, 8, 9, 10, 11, 12]) + b"\x00\x00"
    img, _ = image_msg_to_array(raw_image("rgb8", 2, 2, 8, row0 + row1))
    assert img.shape == (2, 2, 3) and img[1, 1].tolist() == [10, 11, 12]
    f = np.array([[1.5, -2.0]], dtype=">f4").tobytes() + b"\x00" * 4
    img, enc = image_msg_to_array(raw_image("32FC1", 1, 2, 12, f, big=1))
    assert enc == "32FC1" and img.dtype == np.float32 and img.tolist() == [[1.5, -2.0]]


def test_data_types_accepted():
    import array
    for data in (bytes([5, 6]), bytearray([5, 6]), array.array("B", [5, 6]), np.array([5, 6], np.uint8), [5, 6]):
        img, _ = image_msg_to_array(raw_image("mono8", 1, 2, 2, data))
        assert img.tolist() == [[5, 6]]
    assert reason_of(image_msg_to_array, raw_image("mono8", 1, 2, 2, np.array([5, 6], np.int32))) \
        == DropReason.DECODE_ERROR
    assert reason_of(image_msg_to_array, raw_image("mono8", 1, 2, 2, [5, 600])) == DropReason.DECODE_ERROR


def test_result_owns_memory():
    buf = bytearray([1, 2, 3, 4])
    img, _ = image_msg_to_array(raw_image("mono8", 2, 2, 2, buf))
    buf[0] = 99
    assert img[0, 0] == 1 and img.flags.owndata and img.flags.c_contiguous


@pytest.mark.parametrize("msg,reason", [
    (raw_image("yuv422", 1, 2, 4, bytes(4)), DropReason.UNSUPPORTED_ENCODING),
    (raw_image("", 1, 2, 4, bytes(4)), DropReason.UNSUPPORTED_ENCODING),
    (raw_image("mono16", 2, 2, 3, bytes(6)), DropReason.DECODE_ERROR),     # step < row
    (raw_image("mono8", 2, 2, 2, bytes(3)), DropReason.DECODE_ERROR),      # truncated
    (raw_image("mono8", 2, 2, 2, bytes(5)), DropReason.DECODE_ERROR),      # too long
    (raw_image("rgb8", 0, 2, 6, b""), DropReason.DECODE_ERROR),            # no pixels
    (raw_image("rgb8", -1, 2, 6, b""), DropReason.DECODE_ERROR),
    (Image(HDR, None, 2, "mono8", 0, 2, bytes(2)), DropReason.DECODE_ERROR),
])
def test_bad_images(msg, reason):
    assert reason_of(image_msg_to_array, msg) == reason
    assert reason_of(msg_to_frame, msg, "thermal") == reason


def test_unsupported_message_text():
    with pytest.raises(ConversionError, match="unsupported image encoding 'yuv422'.*mono16"):
        image_msg_to_array(raw_image("yuv422", 1, 2, 4, bytes(4)))


# ----------------------------------------------------------------------------- builders: round trips


def _random(enc: str, rng, h=3, w=5):
    chans = {"rgb8": 3, "bgr8": 3, "rgba8": 4, "bgra8": 4}.get(enc, 1)
    shape = (h, w, chans) if chans > 1 else (h, w)
    if enc in ("mono16", "16UC1"):
        return rng.integers(0, 65536, size=shape, dtype=np.uint16)
    if enc == "32FC1":
        return rng.normal(size=shape).astype(np.float32)
    return rng.integers(0, 256, size=shape, dtype=np.uint8)


@pytest.mark.parametrize("enc", SUPPORTED_ENCODINGS)
@pytest.mark.parametrize("big", [False, True])
def test_round_trip_standin(enc, big):
    rng = np.random.default_rng(0)
    a = _random(enc, rng)
    msg = array_to_image_msg(Image, HDR, a, enc, big_endian=big)
    assert (msg.height, msg.width, msg.encoding) == (3, 5, enc)
    assert msg.step == 5 * a.dtype.itemsize * (a.shape[2] if a.ndim == 3 else 1)
    assert msg.is_bigendian == int(big and a.dtype.itemsize > 1)
    back, e2 = image_msg_to_array(msg)
    assert e2 == enc and back.dtype == a.dtype and np.array_equal(back, a)
    assert msg.header == HDR and msg.header is not HDR


def test_builder_writes_bgr_on_the_wire():
    a = np.array([[[200, 100, 50]]], np.uint8)  # RGB
    m = array_to_image_msg(Image, HDR, a, "bgr8")
    assert list(np.asarray(m.data)) == [50, 100, 200]
    m = array_to_image_msg(Image, HDR, np.concatenate([a, [[[7]]]], axis=2).astype(np.uint8), "bgra8")
    assert list(np.asarray(m.data)) == [50, 100, 200, 7]


def test_builder_rejects_wrong_input():
    with pytest.raises(ValueError, match="dtype uint8"):
        array_to_image_msg(Image, HDR, np.zeros((2, 2, 3), np.float32), "rgb8")
    with pytest.raises(ValueError, match=r"\(H, W, 3\)"):
        array_to_image_msg(Image, HDR, np.zeros((2, 2), np.uint8), "rgb8")
    with pytest.raises(ConversionError):
        array_to_image_msg(Image, HDR, np.zeros((2, 2), np.uint8), "yuv422")


@pytest.mark.parametrize("enc", SUPPORTED_ENCODINGS)
def test_round_trip_rosbags_cdr(typestore, enc):
    """Build with rosbags classes, serialize to CDR and back, decode."""
    cls = typestore.types["sensor_msgs/msg/Image"]
    a = _random(enc, np.random.default_rng(1), h=4, w=6)
    hdr = _rosbags_header(typestore)
    msg = array_to_image_msg(cls, hdr, a, enc)
    raw = typestore.serialize_cdr(msg, cls.__msgtype__)
    back_msg = typestore.deserialize_cdr(raw, cls.__msgtype__)
    back, e2 = image_msg_to_array(back_msg)
    assert e2 == enc and np.array_equal(back, a)
    assert stamp_ns(back_msg.header) == 12_000_000_345 and back_msg.header.frame_id == "cam_rgb"


def test_round_trip_rclpy_classes():
    sensor_msgs = pytest.importorskip("sensor_msgs.msg")
    std_msgs = pytest.importorskip("std_msgs.msg")
    builtin = pytest.importorskip("builtin_interfaces.msg")
    hdr = make_header(std_msgs.Header, builtin.Time, 3_000_000_004, "cam")
    a = _random("rgb8", np.random.default_rng(2), h=4, w=6)
    msg = array_to_image_msg(sensor_msgs.Image, hdr, a, "bgr8")
    assert isinstance(msg, sensor_msgs.Image) and msg.header.frame_id == "cam" and msg.header.stamp.nanosec == 4
    back, enc = image_msg_to_array(msg)
    assert enc == "bgr8" and np.array_equal(back, a)
    frame = msg_to_frame(msg, "visible")
    assert frame.stamp_ns == 3_000_000_004 and np.allclose(frame.image, a / 255.0)
    cm = array_to_compressed_msg(sensor_msgs.CompressedImage, hdr, a, "png")
    back, enc = compressed_to_array(cm)
    assert enc == "rgb8" and np.array_equal(back, a)


# ----------------------------------------------------------------------------- compressed


def test_compressed_png_exact_and_formats():
    rng = np.random.default_rng(3)
    for a, enc in ((rng.integers(0, 256, (5, 7, 3), dtype=np.uint8), "rgb8"),
                   (rng.integers(0, 256, (5, 7), dtype=np.uint8), "mono8"),
                   (rng.integers(0, 65536, (5, 7), dtype=np.uint16), "mono16")):
        m = array_to_compressed_msg(CompressedImage, HDR, a, "png")
        assert "png" in m.format
        back, e2 = compressed_to_array(m)
        assert e2 == enc and back.dtype == a.dtype and np.array_equal(back, a)
        m.format = ""  # detect from magic bytes
        assert np.array_equal(compressed_to_array(m)[0], a)


def test_compressed_jpeg_colour_order():
    red = np.zeros((16, 16, 3), np.uint8)
    red[..., 0] = 250
    m = array_to_compressed_msg(CompressedImage, HDR, red, "jpeg")
    assert m.format == "rgb8; jpeg compressed bgr8"
    back, enc = compressed_to_array(m)
    assert enc == "rgb8" and back.shape == (16, 16, 3)
    assert back[..., 0].mean() > 230 and back[..., 2].mean() < 25
    f = msg_to_frame(m, "visible")
    assert f.image.shape == (16, 16, 3) and f.image[..., 0].mean() > 0.9 and f.encoding == "rgb8"
    # BGRA png: alpha dropped, RGB returned
    import cv2
    bgra = np.zeros((2, 2, 4), np.uint8)
    bgra[...] = (10, 20, 30, 255)
    m = CompressedImage(HDR, "png", cv2.imencode(".png", bgra)[1].tobytes())
    assert compressed_to_array(m)[0][0, 0].tolist() == [30, 20, 10]


def test_compressed_errors():
    a = np.full((8, 8, 3), 128, np.uint8)
    jpg = array_to_compressed_msg(CompressedImage, HDR, a, "jpeg")
    png = array_to_compressed_msg(CompressedImage, HDR, a, "png")
    cases = [
        (CompressedImage(HDR, "jpeg", bytes(jpg.data)[:len(jpg.data) // 2]), DropReason.DECODE_ERROR),
        (CompressedImage(HDR, "png", bytes(png.data)[:len(png.data) - 20]), DropReason.DECODE_ERROR),
        (CompressedImage(HDR, "png", bytes(jpg.data)), DropReason.DECODE_ERROR),      # mislabelled
        (CompressedImage(HDR, "jpeg", b"not an image at all"), DropReason.DECODE_ERROR),
        (CompressedImage(HDR, "jpeg", b""), DropReason.DECODE_ERROR),
        (CompressedImage(HDR, "tiff", bytes(png.data)), DropReason.UNSUPPORTED_ENCODING),
        (CompressedImage(HDR, "16UC1; compressedDepth png", bytes(png.data)), DropReason.UNSUPPORTED_ENCODING),
        # valid magic and end marker, garbage inside
        (CompressedImage(HDR, "jpeg", b"\xff\xd8\xff" + bytes(50) + b"\xff\xd9"), DropReason.DECODE_ERROR),
    ]
    for msg, reason in cases:
        assert reason_of(compressed_to_array, msg) == reason, msg.format
        assert reason_of(msg_to_frame, msg, "visible") == reason


# ----------------------------------------------------------------------------- msg_to_frame


def test_msg_to_frame_thermal_mono16_percentile():
    a = np.arange(100, dtype=np.uint16).reshape(10, 10) * 10 + 20000
    f = msg_to_frame(array_to_image_msg(Image, HDR, a, "mono16", big_endian=True), "thermal")
    assert f.stream == "thermal" and f.encoding == "mono16" and f.frame_id == "cam_thermal"
    assert f.stamp_ns == 1_700_000_000_123_456_789
    assert f.image.shape == (10, 10) and f.image.dtype == np.float32
    assert f.image[0, 0] == 0.0 and f.image[-1, -1] == 1.0
    assert np.all(np.diff(f.image.ravel()) >= 0)
    # scale mode keeps absolute levels
    f = msg_to_frame(array_to_image_msg(Image, HDR, a, "mono16"), "thermal", thermal_mode16="scale")
    assert f.image[0, 0] == pytest.approx(20000 / 65535)


def test_msg_to_frame_thermal_8bit_and_colour():
    a = np.array([[0, 51, 255]], np.uint8)
    f = msg_to_frame(array_to_image_msg(Image, HDR, a, "8UC1"), "thermal")
    assert f.image[0].tolist() == pytest.approx([0.0, 0.2, 1.0])
    # colour thermal (LLVIP style) -> BT.601 luminance, computed from RGB whatever the wire order
    px = np.array([[[255, 0, 0]]], np.uint8)
    for enc in ("rgb8", "bgr8"):
        f = msg_to_frame(array_to_image_msg(Image, HDR, px, enc), "thermal")
        assert f.image[0, 0] == pytest.approx(0.299, abs=1e-3)


def test_msg_to_frame_rgb_orders():
    px = np.array([[[200, 100, 50]]], np.uint8)
    for enc in ("rgb8", "bgr8"):
        f = msg_to_frame(array_to_image_msg(Image, HDR, px, enc), "visible")
        assert f.image[0, 0].tolist() == pytest.approx([200 / 255, 100 / 255, 50 / 255])
    pxa = np.array([[[200, 100, 50, 9]]], np.uint8)
    for enc in ("rgba8", "bgra8"):
        f = msg_to_frame(array_to_image_msg(Image, HDR, pxa, enc), "visible")
        assert f.image.shape == (1, 1, 3) and f.image[0, 0].tolist() == pytest.approx([200 / 255, 100 / 255, 50 / 255])
    f = msg_to_frame(array_to_image_msg(Image, HDR, np.array([[51]], np.uint8), "mono8"), "visible")
    assert f.image.shape == (1, 1, 3) and f.image[0, 0].tolist() == pytest.approx([0.2] * 3)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("stream", ["thermal", "visible"])
def test_non_finite_32fc1(bad, stream):
    a = np.ones((3, 4), np.float32)
    a[1, 2] = bad
    with pytest.raises(ConversionError, match="1 NaN/inf") as ei:
        msg_to_frame(array_to_image_msg(Image, HDR, a, "32FC1"), stream)
    assert ei.value.reason == DropReason.NON_FINITE


def test_32fc1_thermal_stretch():
    a = np.linspace(-40.0, 60.0, 200, dtype=np.float32).reshape(10, 20)
    f = msg_to_frame(array_to_image_msg(Image, HDR, a, "32FC1"), "thermal")
    assert f.image.min() == 0.0 and f.image.max() == 1.0 and f.encoding == "32FC1"


def test_bad_header_and_stream():
    msg = array_to_image_msg(Image, HDR, np.zeros((2, 2), np.uint8), "mono8")
    msg.header = None
    assert reason_of(msg_to_frame, msg, "thermal") == DropReason.DECODE_ERROR
    with pytest.raises(ValueError, match="stream"):
        msg_to_frame(array_to_image_msg(Image, HDR, np.zeros((2, 2), np.uint8), "mono8"), "depth")


# ----------------------------------------------------------------------------- masks and detections


def test_mask_to_msg():
    m = np.array([[0, 1], [2, 255]], np.int64)
    msg = mask_to_msg(Image, HDR, m)
    assert msg.encoding == "mono8" and msg.step == 2 and msg.header == HDR
    assert image_msg_to_array(msg)[0].tolist() == [[0, 1], [2, 255]]
    assert image_msg_to_array(mask_to_msg(Image, HDR, np.array([[True, False]])))[0].tolist() == [[1, 0]]
    with pytest.raises(ValueError, match="0..255"):
        mask_to_msg(Image, HDR, np.array([[256]]))
    with pytest.raises(ValueError, match="integer"):
        mask_to_msg(Image, HDR, np.zeros((2, 2), np.float32))
    with pytest.raises(ValueError, match=r"\(H, W\)"):
        mask_to_msg(Image, HDR, np.zeros((2, 2, 1), np.uint8))


DETS = [Detection(0, "person", 0.9, 10.0, 20.0, 30.0, 60.0), Detection(2, "", 0.25, 0.5, 1.5, 4.5, 2.5)]


def _check_detections(msg, header_stamp_ns, frame_id):
    assert stamp_ns(msg.header) == header_stamp_ns and msg.header.frame_id == frame_id
    assert len(msg.detections) == 2
    d0 = msg.detections[0]
    assert stamp_ns(d0.header) == header_stamp_ns and d0.header.frame_id == frame_id and d0.id == ""
    assert (d0.bbox.center.position.x, d0.bbox.center.position.y, d0.bbox.center.theta) == (20.0, 40.0, 0.0)
    assert (d0.bbox.size_x, d0.bbox.size_y) == (20.0, 40.0)
    assert d0.results[0].hypothesis.class_id == "person" and d0.results[0].hypothesis.score == pytest.approx(0.9)
    assert d0.results[0].pose.pose.position.x == 20.0 and d0.results[0].pose.pose.orientation.w == 1.0
    assert msg.detections[1].results[0].hypothesis.class_id == "2"  # empty label -> index


def test_detections_standin_short_names():
    msg = detections_to_msg(STANDIN_DETECTION, HDR, DETS)
    _check_detections(msg, 1_700_000_000_123_456_789, "cam_thermal")
    assert msg.header is not HDR
    back = msg_to_detections(msg, labels=["person", "bicycle", "car"])
    assert [(d.class_id, d.label) for d in back] == [(0, "person"), (2, "2")]
    assert [(d.x1, d.y1, d.x2, d.y2) for d in back] == [(10, 20, 30, 60), (0.5, 1.5, 4.5, 2.5)]
    idx = detections_to_msg(STANDIN_DETECTION, HDR, DETS, class_id="index")
    assert [d.results[0].hypothesis.class_id for d in idx.detections] == ["0", "2"]
    assert detections_to_msg(STANDIN_DETECTION, HDR, []).detections == []
    with pytest.raises(KeyError, match="Quaternion"):
        detections_to_msg({k: v for k, v in STANDIN_DETECTION.items() if k != "Quaternion"}, HDR, DETS)


def test_detections_rosbags_cdr(typestore):
    """vision_msgs definitions in msg/ build, serialize and read back with rosbags."""
    hdr = _rosbags_header(typestore, "cam_thermal", (7, 8))
    msg = detections_to_msg(typestore.types, hdr, DETS)
    assert type(msg).__msgtype__ == "vision_msgs/msg/Detection2DArray"
    raw = typestore.serialize_cdr(msg, "vision_msgs/msg/Detection2DArray")
    back = typestore.deserialize_cdr(raw, "vision_msgs/msg/Detection2DArray")
    _check_detections(back, 7_000_000_008, "cam_thermal")
    assert back.detections[0].results[0].pose.covariance.shape == (36,)
    assert detection_classes(typestore.types.__getitem__).keys() == set(DETECTION_MSG_TYPES)


def test_msg_definitions_match_vision_msgs_4(typestore):
    """Field names and types, field for field, of the vision_msgs 4.x messages we publish."""
    import dataclasses
    expected = {
        "Point2D": [("x", "float"), ("y", "float")],
        "Pose2D": [("position", "vision_msgs__msg__Point2D"), ("theta", "float")],
        "BoundingBox2D": [("center", "vision_msgs__msg__Pose2D"), ("size_x", "float"), ("size_y", "float")],
        "ObjectHypothesis": [("class_id", "str"), ("score", "float")],
        "ObjectHypothesisWithPose": [("hypothesis", "vision_msgs__msg__ObjectHypothesis"),
                                     ("pose", "geometry_msgs__msg__PoseWithCovariance")],
        "Detection2D": [("header", "std_msgs__msg__Header"),
                        ("results", "list[vision_msgs__msg__ObjectHypothesisWithPose]"),
                        ("bbox", "vision_msgs__msg__BoundingBox2D"), ("id", "str")],
        "Detection2DArray": [("header", "std_msgs__msg__Header"),
                             ("detections", "list[vision_msgs__msg__Detection2D]")],
    }
    for name, fields in expected.items():
        cls = typestore.types[f"vision_msgs/msg/{name}"]
        got = [(f.name, f.type) for f in dataclasses.fields(cls) if f.name != "__msgtype__"]
        assert got == fields, name
