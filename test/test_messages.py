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


# ----------------------------------------------------------------------------- exact error texts


def _error(fn, *args, **kw) -> tuple[str, DropReason | None]:
    with pytest.raises(ValueError) as ei:
        fn(*args, **kw)
    return str(ei.value), getattr(ei.value, "reason", None)


def test_decoding_error_texts():
    """Each decoding failure says what is wrong, with the numbers, and is counted under its reason."""
    dec = DropReason.DECODE_ERROR
    assert _error(image_msg_to_array, raw_image("yuv422", 1, 2, 4, bytes(4))) == (
        "unsupported image encoding 'yuv422' (supported: mono8, 8UC1, mono16, 16UC1, 32FC1, rgb8, bgr8, "
        "rgba8, bgra8)", DropReason.UNSUPPORTED_ENCODING)
    assert _error(image_msg_to_array, raw_image("mono8", 1, 2, 2, np.array([5, 6], np.int32))) == (
        "image data has dtype int32, expected uint8", dec)
    assert _error(image_msg_to_array, raw_image("mono8", 1, 2, 2, [5, 600])) == (
        "image data is not a byte sequence (list)", dec)
    assert _error(image_msg_to_array, raw_image("mono8", 1, 2, 2, 7)) == (
        "image data is not a byte sequence (int)", dec)
    text, reason = _error(image_msg_to_array, Image(HDR, None, 2, "mono8", 0, 2, bytes(2)))
    assert text.startswith("image message has invalid size fields: ") and reason == dec
    assert _error(image_msg_to_array, raw_image("rgb8", 0, 2, 6, b"")) == ("image has no pixels (2x0)", dec)
    assert _error(image_msg_to_array, raw_image("rgb8", 2, 0, 6, b"")) == ("image has no pixels (0x2)", dec)
    assert _error(image_msg_to_array, raw_image("mono16", 2, 2, 3, bytes(6))) == (
        "step 3 is smaller than a row of 2 mono16 pixels (4 bytes)", dec)
    assert _error(image_msg_to_array, raw_image("rgb8", 2, 2, 5, bytes(10))) == (
        "step 5 is smaller than a row of 2 rgb8 pixels (6 bytes)", dec)
    assert _error(image_msg_to_array, raw_image("mono8", 2, 2, 3, bytes(5))) == (
        "image data has 5 bytes, expected step*height = 3*2 = 6", dec)
    # step == row exactly is fine; one byte of padding per row too
    assert image_msg_to_array(raw_image("mono16", 1, 2, 4, bytes(4)))[0].shape == (1, 2)
    assert image_msg_to_array(raw_image("mono8", 2, 2, 3, bytes([1, 2, 0, 3, 4, 0])))[0].tolist() == [[1, 2], [3, 4]]


def test_compressed_error_texts():
    a = np.full((8, 8, 3), 128, np.uint8)
    jpg = bytes(array_to_compressed_msg(CompressedImage, HDR, a, "jpeg").data)
    png = bytes(array_to_compressed_msg(CompressedImage, HDR, a, "png").data)
    dec, uns = DropReason.DECODE_ERROR, DropReason.UNSUPPORTED_ENCODING
    cases = [
        (CompressedImage(HDR, "tiff", png), "compressed format 'tiff' is not supported (only jpeg and png)", uns),
        (CompressedImage(HDR, "16UC1; compressedDepth png", png),
         "compressed format '16uc1; compresseddepth png' is not supported (only jpeg and png)", uns),
        (CompressedImage(HDR, "jpeg", b"not an image at all"),
         "compressed data (19 bytes) is neither png nor jpeg", dec),
        (CompressedImage(HDR, "png", jpg), "format says png but the data is jpeg", dec),
        (CompressedImage(HDR, "jpg", png), "format says jpeg but the data is png", dec),
        (CompressedImage(HDR, "jpeg", jpg[:-1]), "jpeg data is truncated (no end-of-image marker)", dec),
        (CompressedImage(HDR, "png", png[:-13]), "png data is truncated (no IEND chunk)", dec),
        (CompressedImage(HDR, "png", png[:12] + b"IDAT" + png[16:]),
         "png data is malformed (IHDR is not the first chunk)", dec),
        (CompressedImage(HDR, "jpeg", b"\xff\xd8\xff" + bytes(50) + b"\xff\xd9"),
         "could not decode jpeg data (55 bytes)", dec),
    ]
    for msg, text, reason in cases:
        assert _error(compressed_to_array, msg) == (text, reason), msg.format
    # the end markers may sit anywhere in the last bytes: exactly at the end is fine
    assert compressed_to_array(CompressedImage(HDR, "", jpg))[1] == "rgb8"
    assert compressed_to_array(CompressedImage(HDR, "PNG", png))[1] == "rgb8"
    assert compressed_to_array(CompressedImage(HDR, "rgb8; jpeg compressed bgr8", jpg))[1] == "rgb8"
    assert compressed_to_array(CompressedImage(HDR, None, png))[1] == "rgb8"


def test_msg_to_frame_error_texts():
    msg = array_to_image_msg(Image, HDR, np.zeros((2, 2), np.uint8), "mono8")
    msg.header = None
    text, reason = _error(msg_to_frame, msg, "visible")
    assert text.startswith("visible message has an invalid header: ") and reason == DropReason.DECODE_ERROR
    with pytest.raises(ValueError, match=r"^stream must be 'thermal' or 'visible', got 'depth'$"):
        msg_to_frame(array_to_image_msg(Image, HDR, np.zeros((2, 2), np.uint8), "mono8"), "depth")
    a = np.ones((3, 4), np.float32)
    a[0, 0] = np.nan
    a[2, 3] = np.inf
    assert _error(msg_to_frame, array_to_image_msg(Image, HDR, a, "32FC1"), "thermal") == (
        "thermal image (32FC1) has 2 NaN/inf pixels", DropReason.NON_FINITE)


def test_builder_error_texts():
    assert _error(array_to_image_msg, Image, HDR, np.zeros((2, 2, 3), np.float32), "rgb8")[0] == \
        "rgb8 needs dtype uint8, got float32"
    assert _error(array_to_image_msg, Image, HDR, np.zeros((2, 2), np.uint8), "rgba8")[0] == \
        "rgba8 needs a (H, W, 4) array, got shape (2, 2)"
    assert _error(array_to_image_msg, Image, HDR, np.zeros((2, 2, 3), np.uint8), "mono8")[0] == \
        "mono8 needs a (H, W) array, got shape (2, 2, 3)"
    assert _error(array_to_image_msg, Image, HDR, np.zeros((2, 2, 3), np.uint8), "rgba8")[0] == \
        "rgba8 needs a (H, W, 4) array, got shape (2, 2, 3)"
    # a single-channel third axis is squeezed for one-channel encodings
    m = array_to_image_msg(Image, HDR, np.array([[[1], [2]]], np.uint8), "mono8")
    assert (m.height, m.width, m.step, bytes(m.data)) == (1, 2, 2, bytes([1, 2]))
    assert _error(array_to_compressed_msg, CompressedImage, HDR, np.zeros((2, 2), np.uint8), "bmp")[0] == \
        "fmt must be 'jpeg' or 'png', got 'bmp'"
    assert _error(array_to_compressed_msg, CompressedImage, HDR, np.zeros((2, 2), np.uint16), "jpeg")[0] == \
        "cannot compress a uint16 array of shape (2, 2) as jpeg"
    assert _error(array_to_compressed_msg, CompressedImage, HDR, np.zeros((2, 2, 4), np.uint8), "png")[0] == \
        "cannot compress a uint8 array of shape (2, 2, 4) as png"
    assert _error(mask_to_msg, Image, HDR, np.zeros((2, 2, 1), np.uint8))[0] == "mask must be (H, W), got shape (2, 2, 1)"
    assert _error(mask_to_msg, Image, HDR, np.zeros((2, 2), np.float32))[0] == \
        "mask must hold integer class ids, got dtype float32"
    assert _error(mask_to_msg, Image, HDR, np.array([[-1, 3]]))[0] == "mask values must lie in 0..255 for mono8, got -1..3"
    assert _error(mask_to_msg, Image, HDR, np.array([[0, 256]]))[0] == "mask values must lie in 0..255 for mono8, got 0..256"
    assert _error(detections_to_msg, STANDIN_DETECTION, HDR, DETS, class_id="name")[0] == \
        "class_id must be 'label' or 'index', got 'name'"
    with pytest.raises(KeyError) as ei:
        detections_to_msg({k: v for k, v in STANDIN_DETECTION.items() if k != "Point2D"}, HDR, DETS)
    assert ei.value.args[0] == ("message class vision_msgs/msg/Point2D missing from `classes` (needs "
                                + ", ".join(DETECTION_MSG_TYPES) + ")")


# ----------------------------------------------------------------------------- edge behaviour, pinned


def test_decoding_edges():
    @dataclass
    class NoEncoding:
        header: Header = field(default_factory=lambda: HDR)
        height: int = 1
        width: int = 1
        step: int = 1
        is_bigendian: int = 0
        data: bytes = b"\x00"

    text, reason = _error(image_msg_to_array, NoEncoding())
    assert text.startswith("unsupported image encoding None (supported: ") and reason == DropReason.UNSUPPORTED_ENCODING
    from ivif_fusion.io.messages import is_compressed

    assert is_compressed(CompressedImage()) and not is_compressed(Image())
    assert not is_compressed(NoEncoding())                       # neither format nor encoding
    both = CompressedImage()
    both.encoding = "mono8"
    assert not is_compressed(both)                               # an encoding means a raw Image


def test_compressed_edges():
    import cv2

    a = np.random.default_rng(4).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    png = bytes(array_to_compressed_msg(CompressedImage, HDR, a, "png").data)

    @dataclass
    class DataOnly:  # no format field: detected from the data
        data: Any

    assert np.array_equal(compressed_to_array(DataOnly(png))[0], a)
    # data as a 2-D uint8 array (some generators): flattened first
    two_d = np.frombuffer(png, np.uint8).reshape(1, -1)
    assert np.array_equal(compressed_to_array(CompressedImage(HDR, "png", two_d))[0], a)
    # IEND must be in the last 12 bytes: trailing bytes after it mean the stream is not a plain png
    assert _error(compressed_to_array, CompressedImage(HDR, "png", png + bytes(5))) == (
        "png data is truncated (no IEND chunk)", DropReason.DECODE_ERROR)
    # 1x1 grey and 16-bit colour images
    one = bytes(array_to_compressed_msg(CompressedImage, HDR, np.array([[77]], np.uint8), "png").data)
    back, enc = compressed_to_array(CompressedImage(HDR, "png", one))
    assert enc == "mono8" and back.tolist() == [[77]]
    rgb16 = np.random.default_rng(5).integers(0, 65536, (3, 4, 3), dtype=np.uint16)
    data16 = cv2.imencode(".png", np.ascontiguousarray(rgb16[..., ::-1]))[1].tobytes()
    back, enc = compressed_to_array(CompressedImage(HDR, "png", data16))
    assert enc == "rgb16" and back.dtype == np.uint16 and np.array_equal(back, rgb16)


def test_rclpy_style_classes_get_array_bytes():
    """Classes with rclpy's ``get_fields_and_field_types`` receive array('B') data, others numpy uint8."""
    import array

    @dataclass
    class RclpyImage(Image):
        @classmethod
        def get_fields_and_field_types(cls) -> dict:
            return {}

    @dataclass
    class RclpyCompressed(CompressedImage):
        @classmethod
        def get_fields_and_field_types(cls) -> dict:
            return {}

    m = array_to_image_msg(RclpyImage, HDR, np.array([[1, 2]], np.uint8), "mono8")
    assert isinstance(m.data, array.array) and m.data.typecode == "B" and m.data.tolist() == [1, 2]
    m = array_to_image_msg(Image, HDR, np.array([[1, 2]], np.uint8), "mono8")
    assert isinstance(m.data, np.ndarray) and m.data.dtype == np.uint8 and m.data.tolist() == [1, 2]
    c = array_to_compressed_msg(RclpyCompressed, HDR, np.zeros((2, 2), np.uint8), "png")
    assert isinstance(c.data, array.array) and bytes(c.data[:8]) == b"\x89PNG\r\n\x1a\n"


def test_builder_byte_layout():
    a = np.array([[0x0102, 0xA0B0]], np.uint16)
    le = array_to_image_msg(Image, HDR, a, "mono16")
    assert (le.is_bigendian, le.step, bytes(le.data)) == (0, 4, bytes([0x02, 0x01, 0xB0, 0xA0]))
    be = array_to_image_msg(Image, HDR, a, "mono16", big_endian=True)
    assert (be.is_bigendian, bytes(be.data)) == (1, bytes([0x01, 0x02, 0xA0, 0xB0]))
    f = array_to_image_msg(Image, HDR, np.array([[1.0]], np.float32), "32FC1")
    assert (f.step, bytes(f.data)) == (4, np.array([1.0], "<f4").tobytes())
    m8 = array_to_image_msg(Image, HDR, np.array([[1, 2]], np.uint8), "mono8", big_endian=True)
    assert m8.is_bigendian == 0   # one-byte pixels have no byte order


def test_compressed_builder_formats_and_quality():
    rng = np.random.default_rng(6)
    a = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    default = array_to_compressed_msg(CompressedImage, HDR, a)
    assert default.format == "rgb8; jpeg compressed bgr8"
    assert default.header == HDR and default.header is not HDR
    assert bytes(default.data) == bytes(array_to_compressed_msg(CompressedImage, HDR, a, "jpeg", 90).data)
    low = len(array_to_compressed_msg(CompressedImage, HDR, a, "jpeg", 20).data)
    high = len(array_to_compressed_msg(CompressedImage, HDR, a, "jpeg", 95).data)
    assert low < len(default.data) < high
    grey = rng.integers(0, 256, (8, 8), dtype=np.uint8)
    assert array_to_compressed_msg(CompressedImage, HDR, grey, "jpeg").format == "mono8; jpeg compressed mono8"
    assert array_to_compressed_msg(CompressedImage, HDR, grey, "png").format == "mono8; png compressed mono8"
    g16 = rng.integers(0, 65536, (8, 8), dtype=np.uint16)
    m = array_to_compressed_msg(CompressedImage, HDR, g16, "png")
    assert m.format == "mono16; png compressed mono16" and np.array_equal(compressed_to_array(m)[0], g16)


def test_normalization_errors_become_conversion_errors(monkeypatch):
    """An ImageError from the normalization step keeps its non_finite reason; any other is a decode error."""
    import ivif_fusion.io.messages as messages
    from ivif_fusion.imageops import ImageError

    msg = array_to_image_msg(Image, HDR, np.zeros((2, 2), np.uint8), "mono8")
    for reason, want in (("non_finite", DropReason.NON_FINITE), ("bad_shape", DropReason.DECODE_ERROR)):
        def fail(img, *args, _reason=reason):  # noqa: ANN001, ANN202
            raise ImageError("broken", reason=_reason)

        monkeypatch.setattr(messages, "normalize_thermal", fail)
        monkeypatch.setattr(messages, "normalize_visible", fail)
        for stream in ("thermal", "visible"):
            assert _error(msg_to_frame, msg, stream) == (f"{stream} image (mono8): broken", want)


def test_detection_pose_and_reading_back_edge_cases():
    msg = detections_to_msg(STANDIN_DETECTION, HDR, DETS[:1])
    pose = msg.detections[0].results[0].pose
    p, q = pose.pose.position, pose.pose.orientation
    assert (p.x, p.y, p.z) == (20.0, 40.0, 0.0) and (q.x, q.y, q.z, q.w) == (0.0, 0.0, 0.0, 1.0)
    assert pose.covariance.shape == (36,) and pose.covariance.dtype == np.float64 and not pose.covariance.any()
    assert msg.detections[0].bbox.size_x == 20.0

    def det(results: list) -> object:
        bbox = STANDIN_DETECTION["BoundingBox2D"](
            center=STANDIN_DETECTION["Pose2D"](position=STANDIN_DETECTION["Point2D"](x=5.0, y=6.0), theta=0.0),
            size_x=2.0, size_y=4.0)
        return STANDIN_DETECTION["Detection2D"](header=HDR, results=results, bbox=bbox, id="")

    def hyp(class_id: str, score: float) -> object:
        return STANDIN_DETECTION["ObjectHypothesisWithPose"](
            hypothesis=STANDIN_DETECTION["ObjectHypothesis"](class_id=class_id, score=score), pose=None)

    arr = STANDIN_DETECTION["Detection2DArray"](header=HDR, detections=[
        det([]), det([hyp("-3", 0.5)]), det([hyp("abc", 0.25)]), det([hyp("7", 0.75)]), det([hyp("car", 1.0)]),
        det([hyp("X5", 0.125)])])
    back = msg_to_detections(arr, labels=["person", "car"])
    assert [(d.class_id, d.label, d.score) for d in back] == [
        (-1, "", 0.0), (-3, "-3", 0.5), (-1, "abc", 0.25), (7, "7", 0.75), (1, "car", 1.0), (-1, "X5", 0.125)]
    assert (back[0].x1, back[0].y1, back[0].x2, back[0].y2) == (4.0, 4.0, 6.0, 8.0)
