"""Bags with injected faults (``ivif make-bag``) and the accounting a replay of them must produce.

- :func:`make_bag` turns a paired folder into a bag with realistic, seeded stamp jitter and
  injected faults (dropped, duplicated, reordered and corrupted frames), and writes a JSON
  sidecar that records exactly what was injected and, optionally, ground-truth boxes per pair.
- :func:`expected_accounting` predicts the replay's per-stream accounting from that sidecar;
  :func:`matches_expected` compares a replay's accounting with it.

Fault model (all faults are *isolated*: each touches one pair index, and no two faults are
closer than two pair indices, so their effects on pairing never overlap; the first two and the
last two pairs are never touched):

- ``drop``: one frame (thermal or RGB) is not written. Its partner is left alone (NO_PARTNER).
- ``duplicate``: one frame is written twice (same stamp and data, logged 1 ms later): DUPLICATE.
- ``reorder``: frame k of one stream is logged just after frame k+1 of that stream (header stamps
  unchanged): frame k arrives late (OUT_OF_ORDER) and its partner is left alone (NO_PARTNER).
- ``corrupt``: one frame's image data is damaged (raw images: truncated data; compressed images:
  garbage bytes): DECODE_ERROR, and its partner is left alone (NO_PARTNER).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import UserError
from ..imageops import fit_max_side
from .bags import COMPRESSED, HEADER, IMAGE, RGB_TOPIC, THERMAL_TOPIC, TIME, BagError, BagWriter, msg_class
from .messages import array_to_compressed_msg, array_to_image_msg, make_header

SIDECAR_NAME = "ivif_sidecar.json"
SIDECAR_FORMAT = "ivif-bag-sidecar"
FAULT_KINDS = ("drop", "duplicate", "reorder", "corrupt")
STREAMS = ("thermal", "visible")
# Drop reasons that come from the pipeline, not from the bag: outside what the sidecar can predict.
PIPELINE_REASONS = ("size_mismatch", "pipeline_error")


def bag_header(stamp_ns: int, frame_id: str) -> Any:
    """A std_msgs/Header of the bag typestore's classes."""
    return make_header(msg_class(HEADER), msg_class(TIME), stamp_ns, frame_id)


@dataclass
class MakeBagOptions:
    """How :func:`make_bag` turns a paired folder into a bag (all randomness from ``seed``)."""

    storage: str = "sqlite3"
    rate_hz: float = 10.0
    jitter_ms: float = 3.0          # std of header-stamp jitter per stream (clipped at 2 std)
    drop: float = 0.0               # per-pair probability of dropping one frame
    duplicate: float = 0.0          # per-pair probability of duplicating one frame
    reorder: float = 0.0            # per-pair probability of logging one frame after its successor
    corrupt: float = 0.0            # per-pair probability of damaging one frame's image data
    seed: int = 0
    thermal_encoding: str = "mono8"  # mono8 | mono16
    compressed_visible: bool = False
    jpeg_quality: int = 90
    max_side: int = 0               # downscale images so the long side is at most this (0 = keep)
    thermal_topic: str = THERMAL_TOPIC
    visible_topic: str = RGB_TOPIC
    thermal_frame_id: str = "thermal_optical_frame"
    visible_frame_id: str = "rgb_optical_frame"
    start_ns: int = 1_700_000_000_000_000_000  # first nominal stamp (a plausible wall-clock time)


@dataclass
class Fault:
    kind: str        # drop | duplicate | reorder | corrupt
    stream: str      # thermal | rgb
    index: int       # pair index (position in the paired folder selection)
    stamp_ns: int    # header stamp of the affected frame


@dataclass
class MakeBagResult:
    bag: Path
    sidecar: Path
    pairs: int
    messages: dict[str, int]
    faults: list[Fault] = field(default_factory=list)


def _plan_faults(n: int, opts: MakeBagOptions, rng: np.random.Generator) -> list[tuple[str, str, int]]:
    """(kind, stream, index) of isolated faults, drawn per pair index."""
    probs = [opts.drop, opts.duplicate, opts.reorder, opts.corrupt]
    for name, p in zip(FAULT_KINDS, probs, strict=True):
        if not 0.0 <= p <= 1.0:
            raise UserError(f"--{name} must be a probability in 0..1, got {p}")
    if sum(probs) > 1.0:
        raise UserError(f"fault probabilities add up to {sum(probs):.3g} > 1 (one fault per pair at most)")
    faults = []
    k = 2
    while k <= n - 3:
        u = rng.random()
        stream = ("thermal", "visible")[int(rng.integers(2))]
        kind = None
        acc = 0.0
        for name, p in zip(FAULT_KINDS, probs, strict=True):
            acc += p
            if u < acc:
                kind = name
                break
        if kind == "reorder" and k + 1 > n - 3:
            kind = None  # frame k+1 must exist and be untouched by the end-of-stream rule
        if kind is None:
            k += 1
            continue
        faults.append((kind, stream, k))
        # isolation: the next fault starts two pair indices after this one ends
        k += 4 if kind == "reorder" else 3
    return faults


def _thermal_msg(thermal: np.ndarray, header: Any, encoding: str):  # noqa: ANN202
    if encoding == "mono8":
        arr = np.clip(np.rint(thermal * 255.0), 0, 255).astype(np.uint8)
    elif encoding == "mono16":
        # A 16-bit radiometric-style image: the 8-bit source spread over a plausible raw-count band.
        arr = np.clip(np.rint(20000.0 + thermal * 12000.0), 0, 65535).astype(np.uint16)
    else:
        raise UserError(f"thermal encoding must be mono8 or mono16, got '{encoding}'")
    return array_to_image_msg(msg_class(IMAGE), header, arr, encoding)


def _rgb_msg(visible: np.ndarray, header: Any, compressed: bool, quality: int):  # noqa: ANN202
    arr = np.clip(np.rint(visible * 255.0), 0, 255).astype(np.uint8)
    if compressed:
        return array_to_compressed_msg(msg_class(COMPRESSED), header, arr, "jpeg", quality)
    return array_to_image_msg(msg_class(IMAGE), header, arr, "rgb8")


def _corrupt(msg: Any, rng: np.random.Generator):  # noqa: ANN202
    """A copy of an image message with damaged data (the header is kept)."""
    cls = type(msg)
    if msg.__msgtype__ == COMPRESSED:
        junk = rng.integers(0, 256, size=max(16, len(msg.data) // 8), dtype=np.uint8)
        return cls(header=msg.header, format=msg.format, data=junk)
    return cls(header=msg.header, height=msg.height, width=msg.width, encoding=msg.encoding,
               is_bigendian=msg.is_bigendian, step=msg.step, data=np.ascontiguousarray(msg.data[: len(msg.data) // 2]))


def _read_gt(labels_dir: Path, name: str, width: int, height: int) -> list[list[float]]:
    from ..data.labels import read_yolo, yolo_to_xyxy

    rows = yolo_to_xyxy(read_yolo(labels_dir / (Path(name).stem + ".txt")), width, height)
    return [[int(r[0]), *(round(float(v), 2) for v in r[1:])] for r in rows]


def _classes_for(labels_dir: Path) -> list[str]:
    from ..data.labels import read_classes

    for cand in (labels_dir / "classes.txt", labels_dir.parent / "classes.txt"):
        if cand.is_file():
            return read_classes(cand)
    raise UserError(f"no classes.txt in {labels_dir} or its parent: needed to name the ground-truth classes")


def make_bag(pairs: str | Path, out: str | Path, opts: MakeBagOptions | None = None, *,
             names: Sequence[str] | None = None, labels_dir: str | Path | None = None,
             progress: bool = True) -> MakeBagResult:
    """Write a ROS 2 bag (thermal + RGB topics) from a paired folder, with seeded jitter and faults.

    Args:
        pairs: folder with ``ir/`` and ``vi/``.
        out: bag directory to create (must not exist); the sidecar is ``out/ivif_sidecar.json``.
        opts: rate, jitter, faults, encodings (see :class:`MakeBagOptions`).
        names: pair file names to use, in order (default: all pairs, sorted).
        labels_dir: optional YOLO labels folder (``<name>.txt``, classes.txt here or in the parent);
            boxes are stored in the sidecar in pixels of the written images.
        progress: show a tqdm bar.

    Stamps: pair k has nominal time ``start + k / rate``; each stream's header stamp adds its own
    Gaussian jitter (std ``jitter_ms``, clipped at 2 std), and its log (receive) time adds a
    transport delay of 1..3 ms. Messages are written in log-time order.
    """
    from tqdm import tqdm

    from ..data.paired import PairedFolder

    opts = opts or MakeBagOptions()
    if opts.rate_hz <= 0:
        raise UserError(f"--rate must be > 0, got {opts.rate_hz}")
    if opts.jitter_ms < 0:
        raise UserError(f"--jitter must be >= 0, got {opts.jitter_ms}")
    period_ns = 1e9 / opts.rate_hz
    if 4 * opts.jitter_ms * 1e6 >= period_ns / 2:
        raise UserError(f"--jitter {opts.jitter_ms} ms is too large for --rate {opts.rate_hz} Hz "
                        "(stamps of one stream could swap order); lower it below period/8")
    if opts.thermal_encoding not in ("mono8", "mono16"):
        raise UserError(f"--thermal-encoding must be mono8 or mono16, got '{opts.thermal_encoding}'")
    folder = PairedFolder(pairs, names=names)
    n = len(folder)
    if n == 0:
        raise UserError(f"no pairs in {pairs}")
    labels = Path(labels_dir) if labels_dir else None
    if labels is not None and not labels.is_dir():
        raise UserError(f"labels folder {labels} not found")
    classes = _classes_for(labels) if labels is not None else []

    rng = np.random.default_rng(opts.seed)
    jit = np.clip(rng.normal(0.0, opts.jitter_ms, size=(n, 2)), -2 * opts.jitter_ms, 2 * opts.jitter_ms)
    delay = rng.uniform(1.0, 3.0, size=(n, 2))
    plan = _plan_faults(n, opts, rng)
    by_index = {k: (kind, stream) for kind, stream, k in plan}
    streams = STREAMS
    topics = {"thermal": opts.thermal_topic, "visible": opts.visible_topic}
    frame_ids = {"thermal": opts.thermal_frame_id, "visible": opts.visible_frame_id}

    out = Path(out)
    frames_meta: list[dict] = []
    faults: list[Fault] = []
    # (log_time, order, topic, msg): written in log-time order once no later pair can log earlier,
    # so memory stays bounded (a reorder moves a frame by one pair only).
    pending: list[tuple[int, int, str, Any]] = []
    order = 0
    width = height = 0
    with BagWriter(out, opts.storage) as w:
        w.add_topic(opts.thermal_topic, IMAGE)
        w.add_topic(opts.visible_topic, COMPRESSED if opts.compressed_visible else IMAGE)
        it = tqdm(range(n), desc="make-bag", unit="pair", disable=not progress)
        for k in it:
            s = folder[k]
            (thermal, visible), scale = fit_max_side(opts.max_side, s.thermal, s.visible)
            height, width = thermal.shape[:2]
            nominal = opts.start_ns + round(k * period_ns)
            stamps = {st: nominal + round(jit[k, i] * 1e6) for i, st in enumerate(streams)}
            logs = {st: stamps[st] + round(delay[k, i] * 1e6) for i, st in enumerate(streams)}
            msgs = {"thermal": _thermal_msg(thermal, bag_header(stamps["thermal"], frame_ids["thermal"]),
                                            opts.thermal_encoding),
                    "visible": _rgb_msg(visible, bag_header(stamps["visible"], frame_ids["visible"]), opts.compressed_visible,
                                    opts.jpeg_quality)}
            meta: dict[str, Any] = {"index": k, "name": s.name, "thermal_stamp_ns": stamps["thermal"],
                                    "visible_stamp_ns": stamps["visible"], "written": {"thermal": 1, "visible": 1}}
            if labels is not None:
                meta["boxes"] = _read_gt(labels, s.name, width, height)
            fault = by_index.get(k)
            for st in streams:
                msg, log_t = msgs[st], logs[st]
                if fault and fault[1] == st:
                    kind = fault[0]
                    faults.append(Fault(kind, st, k, stamps[st]))
                    if kind == "drop":
                        meta["written"][st] = 0
                        continue
                    if kind == "duplicate":
                        pending.append((log_t + 1_000_000, order, topics[st], msg))
                        order += 1
                        meta["written"][st] = 2
                    elif kind == "reorder":
                        # logged 1 ms after the next frame of the same stream would be
                        log_t = opts.start_ns + round((k + 1) * period_ns) + round(jit[k + 1, streams.index(st)] * 1e6) \
                            + round(delay[k + 1, streams.index(st)] * 1e6) + 1_000_000
                    elif kind == "corrupt":
                        msg = _corrupt(msg, rng)
                pending.append((log_t, order, topics[st], msg))
                order += 1
            frames_meta.append(meta)
            # everything logged before the earliest possible stamp of pair k+1 can go out now
            horizon = opts.start_ns + round((k + 1) * period_ns) - round(2 * opts.jitter_ms * 1e6)
            pending.sort(key=lambda e: (e[0], e[1]))
            while pending and pending[0][0] < horizon:
                log_t, _, topic, msg = pending.pop(0)
                w.write(topic, log_t, msg)
        for log_t, _, topic, msg in sorted(pending, key=lambda e: (e[0], e[1])):
            w.write(topic, log_t, msg)
        counts = dict(w.counts)

    sidecar = {
        "format": SIDECAR_FORMAT,
        "version": 1,
        "source": {"pairs": str(Path(pairs).resolve()), "labels": str(labels.resolve()) if labels else None},
        "options": asdict(opts),
        "topics": {"thermal": opts.thermal_topic, "visible": opts.visible_topic},
        "frame_ids": frame_ids,
        "image_size": [width, height],
        "pairs": n,
        "messages": counts,
        "faults": [asdict(f) for f in faults],
        "classes": classes,
        "frames": frames_meta,
    }
    side = out / SIDECAR_NAME
    side.write_text(json.dumps(sidecar, indent=1))
    return MakeBagResult(out, side, n, counts, faults)


# --------------------------------------------------------------------------- sidecar


def find_sidecar(bag: str | Path) -> Path | None:
    """The make-bag sidecar of a bag, if there is one."""
    p = Path(bag)
    for cand in (p / SIDECAR_NAME, p.parent / SIDECAR_NAME if p.is_file() else p / SIDECAR_NAME,
                 p.with_suffix(".json")):
        if cand.is_file():
            return cand
    return None


def load_sidecar(path: str | Path) -> dict:
    """Read and check a make-bag sidecar."""
    p = Path(path)
    try:
        data = json.loads(p.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise BagError(f"sidecar {p} cannot be read: {e}") from e
    if not isinstance(data, dict) or data.get("format") != SIDECAR_FORMAT:
        raise BagError(f"{p} is not an ivif make-bag sidecar (no '{SIDECAR_FORMAT}' format field)")
    return data


def expected_accounting(sidecar: dict, mode: str = "approximate", slop_s: float = 0.05, *,
                        policy: str = "optimal", reject_late: bool = True) -> dict | None:
    """Per-stream accounting a replay of a make-bag bag must produce, from what was injected.

    Returns ``{"pairs": int, "received": {stream: n}, "dropped": {stream: {reason: n}}}``, or None
    when the bag's stamps do not satisfy the conditions under which the prediction is exact:
    every intended pair spans at most ``slop_s`` and frames of neighbouring pairs are more than
    ``slop_s`` apart (approximate mode), or stamps of a pair are equal (exact mode).

    Model: each isolated fault costs the pairs listed in the module docstring; in approximate
    mode the last pair is never proven optimal (no later frame arrives) and ends UNFLUSHED, as it
    would in the live node when the cameras stop. The model assumes repeated and late stamps are
    dropped on arrival (``sync.reject_late: true``) under the ``optimal`` policy: without that
    filter the message_filters policies queue them and may pair them, which the sidecar cannot
    predict, so None is returned then.
    """
    if policy != "optimal" or not reject_late:
        return None
    frames = sidecar["frames"]
    slop_ns = slop_s * 1e9
    th = np.array([f["thermal_stamp_ns"] for f in frames], dtype=np.int64)
    rgb = np.array([f["visible_stamp_ns"] for f in frames], dtype=np.int64)
    n = len(frames)
    if mode == "exact":
        if np.any(th != rgb):
            return None
    else:
        if np.any(np.abs(th - rgb) > slop_ns):
            return None
        if n > 1:
            gap = np.minimum(np.abs(th[1:] - rgb[:-1]), np.abs(rgb[1:] - th[:-1]))
            if np.any(gap <= slop_ns):
                return None
    streams = STREAMS
    received = {s: n for s in streams}
    dropped: dict[str, dict[str, int]] = {s: {} for s in streams}

    def add(stream: str, reason: str) -> None:
        dropped[stream][reason] = dropped[stream].get(reason, 0) + 1

    lost_pairs = 0
    for f in sidecar["faults"]:
        s, other = f["stream"], ("visible" if f["stream"] == "thermal" else "thermal")
        kind = f["kind"]
        if kind == "drop":
            received[s] -= 1
            add(other, "no_partner")
            lost_pairs += 1
        elif kind == "duplicate":
            received[s] += 1
            add(s, "duplicate")
        elif kind == "reorder":
            add(s, "out_of_order")
            add(other, "no_partner")
            lost_pairs += 1
        elif kind == "corrupt":
            add(s, "decode_error")
            add(other, "no_partner")
            lost_pairs += 1
    pairs = n - lost_pairs
    if mode != "exact" and n > 0:
        pairs -= 1
        for s in streams:
            add(s, "unflushed")
    return {"pairs": pairs, "received": received,
            "dropped": {s: dict(sorted(d.items())) for s, d in dropped.items()}}


def fault_summary(sidecar: dict) -> dict[str, dict[str, int]]:
    """kind -> stream -> count of injected faults."""
    out: dict[str, dict[str, int]] = {}
    for f in sidecar.get("faults", []):
        d = out.setdefault(f["kind"], {})
        d[f["stream"]] = d.get(f["stream"], 0) + 1
    return out


def matches_expected(expected: dict, pairs_emitted: int, accounting: Mapping[str, dict]) -> bool:
    """True when a replay's pairs and per-stream received/dropped counts equal :func:`expected_accounting`.

    Drops caused by the pipeline (:data:`PIPELINE_REASONS`) are left out: the sidecar cannot
    predict them.
    """
    return (expected["pairs"] == pairs_emitted
            and all(expected["received"][s] == accounting[s]["received"] for s in STREAMS)
            and all(expected["dropped"][s] == {r: n for r, n in accounting[s]["dropped"].items()
                                               if r not in PIPELINE_REASONS} for s in STREAMS))
