"""Seeded fuzz: 12,000 malformed or random messages through conversion, pairing, the latest-pair slot
and (for a few pairs) the real pipeline. No exception may escape except ConversionError, and every
message must be accounted for: received = paired + dropped per stream, pairs = processed + superseded.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np
import pytest

from ivif_fusion.io.messages import SUPPORTED_ENCODINGS, ConversionError, msg_to_frame
from ivif_fusion.runtime.sync import STREAMS, LatestPairSlot, Synchronizer, pair_drops
from ivif_fusion.types import DropReason

N_MESSAGES = 12_000
H, W = 4, 6


@dataclass
class Time:
    sec: Any = 0
    nanosec: Any = 0


@dataclass
class Header:
    stamp: Any = field(default_factory=Time)
    frame_id: Any = ""


@dataclass
class Image:
    header: Any
    height: Any
    width: Any
    encoding: Any
    is_bigendian: Any
    step: Any
    data: Any


@dataclass
class CompressedImage:
    header: Any
    format: Any
    data: Any


_SPEC = {"mono8": ("u1", 1), "8UC1": ("u1", 1), "mono16": ("u2", 1), "16UC1": ("u2", 1), "32FC1": ("f4", 1),
         "rgb8": ("u1", 3), "bgr8": ("u1", 3), "rgba8": ("u1", 4), "bgra8": ("u1", 4)}
_UNSUPPORTED = ["yuv422", "", "bayer_rggb8", "16SC1", "8UC3", "rgb16", "jpeg", "mono 8"]


def _pixels(rng, enc, h=H, w=W, nonfinite=False):
    dt, ch = _SPEC[enc]
    shape = (h, w, ch) if ch > 1 else (h, w)
    if dt == "u1":
        return rng.integers(0, 256, size=shape, dtype=np.uint8)
    if dt == "u2":
        return rng.integers(0, 65536, size=shape, dtype=np.uint16)
    a = rng.normal(20.0, 5.0, size=shape).astype(np.float32)
    if nonfinite:
        a.flat[rng.integers(0, a.size)] = rng.choice([np.nan, np.inf, -np.inf])
    return a


def _raw(rng, header, enc, a, pad=0, big=False):
    dt = a.dtype.newbyteorder(">" if big else "<") if a.dtype.itemsize > 1 else a.dtype
    rows = np.ascontiguousarray(a.astype(dt)).reshape(a.shape[0], -1).view(np.uint8)
    if pad:
        rows = np.concatenate([rows, rng.integers(0, 256, (a.shape[0], pad), dtype=np.uint8)], axis=1)
    return Image(header, a.shape[0], a.shape[1], enc, int(big), rows.shape[1], rows.tobytes())


def _blobs(rng):
    out = []
    for i in range(12):
        ext = ".png" if i % 2 else ".jpg"
        kind = i % 3
        if kind == 0:
            img = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
        elif kind == 1:
            img = rng.integers(0, 256, (H, W), dtype=np.uint8)
        else:
            img = rng.integers(0, 65536, (H, W), dtype=np.uint16) if ext == ".png" else \
                rng.integers(0, 256, (H, W), dtype=np.uint8)
        out.append(("png" if ext == ".png" else "jpeg", cv2.imencode(ext, img)[1].tobytes()))
    return out


def make_message(rng, header, blobs):
    """One message and the outcome it must have: 'ok', a DropReason, or None (anything but a crash)."""
    u = rng.random()
    enc = SUPPORTED_ENCODINGS[rng.integers(len(SUPPORTED_ENCODINGS))]
    if u < 0.33:
        return _raw(rng, header, enc, _pixels(rng, enc), pad=int(rng.integers(0, 4)), big=bool(rng.random() < .5)), "ok"
    if u < 0.43:
        fmt, blob = blobs[rng.integers(len(blobs))]
        return CompressedImage(header, rng.choice([fmt, "", f"rgb8; {fmt} compressed bgr8"]), blob), "ok"
    if u < 0.48:
        m = _raw(rng, header, "mono8", _pixels(rng, "mono8"))
        m.encoding = _UNSUPPORTED[rng.integers(len(_UNSUPPORTED))]
        return m, DropReason.UNSUPPORTED_ENCODING
    if u < 0.55:
        return _raw(rng, header, "32FC1", _pixels(rng, "32FC1", nonfinite=True), big=bool(rng.random() < .5)), \
            DropReason.NON_FINITE
    if u < 0.60:  # step smaller than a row, data consistent with that step
        m = _raw(rng, header, enc, _pixels(rng, enc))
        m.step -= int(rng.integers(1, m.step))
        m.data = m.data[:m.step * m.height]
        return m, DropReason.DECODE_ERROR
    if u < 0.65:  # truncated or overlong data
        m = _raw(rng, header, enc, _pixels(rng, enc), pad=int(rng.integers(0, 3)))
        cut = int(rng.integers(1, len(m.data)))
        m.data = m.data[:-cut] if rng.random() < 0.7 else m.data + bytes(cut)
        return m, DropReason.DECODE_ERROR
    if u < 0.69:  # impossible sizes
        m = _raw(rng, header, enc, _pixels(rng, enc))
        field_, value = [("height", 0), ("width", 0), ("height", -3), ("width", -1), ("height", 10**9),
                         ("width", 2**31), ("step", -5), ("height", None), ("step", "x")][rng.integers(9)]
        setattr(m, field_, value)
        return m, DropReason.DECODE_ERROR
    if u < 0.72:  # data that is not a byte buffer
        m = _raw(rng, header, "mono8", _pixels(rng, "mono8"))
        m.data = [None, "abc" * 8, list(range(250, 274)), np.zeros(H * W, np.float64), 12345][rng.integers(5)]
        return m, DropReason.DECODE_ERROR
    if u < 0.79:  # broken compressed data
        fmt, blob = blobs[rng.integers(len(blobs))]
        k = rng.integers(5)
        if k == 0:
            return CompressedImage(header, fmt, blob[:int(rng.integers(0, len(blob) - 1))]), DropReason.DECODE_ERROR
        if k == 1:
            return CompressedImage(header, fmt, rng.integers(0, 256, int(rng.integers(0, 300)), dtype=np.uint8)), \
                DropReason.DECODE_ERROR
        if k == 2:
            return CompressedImage(header, "png" if fmt == "jpeg" else "jpeg", blob), DropReason.DECODE_ERROR
        if k == 3:
            return CompressedImage(header, rng.choice(["tiff", "webp", "16UC1; compressedDepth png"]), blob), \
                DropReason.UNSUPPORTED_ENCODING
        head = blob[:3] if fmt == "jpeg" else blob[:8]
        tail = b"\xff\xd9" if fmt == "jpeg" else blob[-12:]
        return CompressedImage(header, fmt, head + rng.bytes(int(rng.integers(0, 64))) + tail), DropReason.DECODE_ERROR
    if u < 0.81:  # broken header
        m = _raw(rng, header, "mono8", _pixels(rng, "mono8"))
        m.header = [None, Header(stamp=None), Header(stamp=Time(sec="soon", nanosec=0))][rng.integers(3)]
        return m, DropReason.DECODE_ERROR
    # anything goes: random fields and bytes (tiny, so some happen to be valid)
    enc = rng.choice(list(SUPPORTED_ENCODINGS) + _UNSUPPORTED)
    h, w, step = (int(x) for x in rng.integers(-1, 7, size=3))
    data = rng.bytes(int(rng.integers(0, 40)))
    return Image(header, h, w, enc, int(rng.integers(0, 2)), step, data), None


@pytest.mark.timeout(120)
def test_fuzz_conversion_pairing_pipeline(random_vfn_ckpt):
    from ivif_fusion.config import runtime_defaults
    from ivif_fusion.runtime.pipeline import PairSizeMismatch, Pipeline

    pipe = Pipeline.from_config(runtime_defaults({
        "pipeline.backbone_weights": str(random_vfn_ckpt), "pipeline.threads": 1,
        "pipeline.tasks": [{"name": "fusion", "kind": "fusion"}]}))
    rng = np.random.default_rng(20240611)
    blobs = _blobs(rng)
    sync = Synchronizer("approximate", queue_size=5, slop_s=0.02, reject_late=True)  # counts repeats/late stamps
    slot = LatestPairSlot()
    sent = Counter()
    outcomes: Counter = Counter()
    clock = {"thermal": 1_000_000_000, "visible": 1_000_000_000}
    period = {"thermal": 33_333_333, "visible": 40_000_000}
    pairs_out = processed = run_ok = size_mismatch = superseded = 0
    late_drops = []

    for i in range(N_MESSAGES):
        # the stream whose next frame is due first (both cameras follow one wall clock)
        stream = min(STREAMS, key=lambda st: clock[st] + period[st] + int(rng.integers(0, 5_000_000)))
        # stamps: jittery clock with duplicates, reorderings and gaps
        r = rng.random()
        if r < 0.03:
            t = clock[stream]                                          # duplicate
        elif r < 0.06:
            t = clock[stream] - int(rng.integers(1, 3 * period[stream]))  # late / reordered
        else:
            step = period[stream] * (int(rng.integers(2, 6)) if r < 0.09 else 1)  # gap
            t = clock[stream] = clock[stream] + step + int(rng.integers(-3_000_000, 3_000_000))
        header = Header(Time(*divmod(t, 1_000_000_000)), f"{stream}_cam")
        msg, expect = make_message(rng, header, blobs)
        sent[stream] += 1
        try:
            frame = msg_to_frame(msg, stream)
        except ConversionError as e:
            assert expect != "ok", f"message {i}: valid message rejected: {e}"
            if isinstance(expect, DropReason):
                assert e.reason == expect, f"message {i}: {e.reason} != {expect}: {e}"
            outcomes[e.reason] += 1
            stamp = t if msg.header is header else 0
            d = sync.reject(stream, stamp, e.reason, str(e))
            assert d.reason == e.reason
            continue
        assert expect in ("ok", None), f"message {i}: expected {expect}, got a frame"
        outcomes["ok"] += 1
        assert frame.stamp_ns == t and frame.image.dtype == np.float32
        assert np.isfinite(frame.image).all() and frame.image.min() >= 0 and frame.image.max() <= 1
        assert frame.image.shape[-1] == 3 if stream == "visible" else frame.image.ndim == 2
        pairs, _ = sync.push(frame)
        assert sync.balanced()
        for p in pairs:
            pairs_out += 1
            assert abs(p.thermal.stamp_ns - p.visible.stamp_ns) <= 20_000_000
            old = slot.put(p)
            if old is not None:
                superseded += 1
                late_drops += pair_drops(old, DropReason.SUPERSEDED)
        if i % 3 == 0:  # a consumer slower than the cameras
            p = slot.get(timeout=0)
            if p is not None:
                processed += 1
                if processed <= 12:  # the real pipeline on a few pairs
                    same = p.thermal.image.shape == p.visible.image.shape[:2]
                    try:
                        res = pipe.run(p)
                    except PairSizeMismatch:
                        assert not same
                        size_mismatch += 1
                    else:
                        assert same
                        run_ok += 1
                        assert res.outputs["fusion"].fused_rgb.shape == (*p.thermal.image.shape, 3)
    sync.flush()
    left = 1 if slot.close() is not None else 0

    c = sync.counters
    print(f"fuzz: {N_MESSAGES} messages, conversions {dict(outcomes)}, sync {c.as_dict()}, pairs {pairs_out}, "
          f"processed {processed} (pipeline ok {run_ok}, size mismatch {size_mismatch}), superseded {superseded}")
    for s in STREAMS:
        assert c.received[s] == sent[s]
        assert c.received[s] == c.paired[s] + c.total_dropped(s), (s, c.as_dict())
    assert sum(sent.values()) == N_MESSAGES
    assert pairs_out == c.pairs == processed + superseded + left
    assert len(late_drops) == 2 * superseded
    # the fuzz reached every path it is meant to
    for reason in (DropReason.DECODE_ERROR, DropReason.UNSUPPORTED_ENCODING, DropReason.NON_FINITE):
        assert outcomes[reason] > 100, outcomes
    dropped = Counter()
    for s in STREAMS:
        dropped.update(c.dropped[s])
    for reason in (DropReason.DUPLICATE, DropReason.OUT_OF_ORDER, DropReason.NO_PARTNER):
        assert dropped[reason] > 10, dropped
    assert outcomes["ok"] > 4000 and pairs_out > 500 and run_ok >= 3 and superseded > 50
