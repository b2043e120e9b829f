"""Offline replay: bag -> decode -> Synchronizer -> Pipeline -> output bag + accounting + report data.

The same pairing (:class:`~ivif_fusion.runtime.sync.Synchronizer`) and per-pair processing
(:class:`~ivif_fusion.runtime.pipeline.Pipeline`) as the ROS node, fed with the bag's messages in
log-time order. Every input frame ends exactly once as part of a fused pair or as one drop with a
reason, so per stream ``received == fused + dropped`` (``paired`` counts pairs emitted by the
synchronizer; a pair that fails in the pipeline is counted as two drops, SIZE_MISMATCH or
PIPELINE_ERROR, one per stream).

Output bag (``<out>/bag``): ``<prefix>/fused/<task>`` (sensor_msgs/Image, ``ros.fused_encoding``),
``<prefix>/detections/<task>`` (vision_msgs/Detection2DArray, detection tasks) and
``<prefix>/mask/<task>`` (mono8 class ids, segmentation tasks), following ``ros.publish_*``. Each
output header is a copy of the reference frame's header (``sync.reference``: stamp and frame_id);
the log time is that of the message that completed the pair, so replays are reproducible.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .config import RuntimeConfig
from .errors import UserError
from .io import bags
from .types import Detection, Drop, DropReason, Pair, Result

log = logging.getLogger("ivif_fusion.replay")

STREAMS = ("thermal", "visible")


class ReplayError(UserError):
    """The replay cannot run (configuration does not fit the bag)."""


@dataclass
class Sample:
    """One pair kept for the report grid (uint8 images at the processed size)."""

    stamp_ns: int
    thermal: np.ndarray
    visible: np.ndarray
    fused: dict[str, np.ndarray]
    detections: dict[str, list[Detection] | None]
    gt: list[list[float]] | None = None


@dataclass
class ReplaySummary:
    """Everything the report shows; plain data except the sample images."""

    bag: str
    out_dir: str
    output_bag: str
    storage: str
    config: RuntimeConfig
    config_source: str
    overrides: dict
    backend: str
    backend_notes: list[str]
    tasks: list[dict]
    topics: dict[str, str]
    input_types: dict[str, str]
    accounting: dict[str, dict]
    pairs_emitted: int = 0
    pairs_fused: int = 0
    drops: list[dict] = field(default_factory=list)     # every drop: stream, stamp, reason, detail
    timings_ms: dict[str, list[float]] = field(default_factory=dict)
    wall_s: float = 0.0
    output_counts: dict[str, int] = field(default_factory=dict)
    image_size: list[int] | None = None                 # processed (W, H)
    fusion_metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    metrics_pairs: int = 0
    detection_map: dict[str, dict] = field(default_factory=dict)
    sidecar: str | None = None
    injected: dict | None = None
    expected: dict | None = None
    matches_injected: bool | None = None
    truncated: str | None = None
    samples: list[Sample] = field(default_factory=list)
    versions: dict[str, str] = field(default_factory=dict)
    weights: dict[str, str] = field(default_factory=dict)  # weight file -> sha256

    @property
    def balanced(self) -> bool:
        return all(a["balanced"] for a in self.accounting.values())

    @property
    def throughput_pairs_s(self) -> float:
        return self.pairs_fused / self.wall_s if self.wall_s > 0 else 0.0

    def plain(self) -> dict:
        """JSON-ready dict (no images, config as a mapping)."""
        from .config import to_dict

        skip = {"samples", "config"}
        out = {k: v for k, v in self.__dict__.items() if k not in skip}
        out["config"] = to_dict(self.config)
        out["balanced"] = self.balanced
        out["throughput_pairs_s"] = self.throughput_pairs_s
        out["latency_ms"] = latency_stats(self.timings_ms)
        return out


def latency_stats(timings: dict[str, list[float]]) -> dict[str, dict[str, float]]:
    """Per stage: n, median, p90, mean, max (ms)."""
    out = {}
    for stage, vals in timings.items():
        if not vals:
            continue
        a = np.asarray(vals, dtype=np.float64)
        out[stage] = {"n": int(a.size), "median": float(np.median(a)), "p90": float(np.percentile(a, 90)),
                      "mean": float(a.mean()), "max": float(a.max())}
    return out


def package_versions() -> dict[str, str]:
    """Versions of the packages that shape the results."""
    import platform
    from importlib import metadata

    from . import __version__

    out = {"ivif_fusion": __version__, "python": platform.python_version()}
    for pkg in ("numpy", "torch", "onnxruntime", "opencv-python", "opencv-python-headless", "rosbags",
                "ultralytics", "pycocotools", "scikit-image", "matplotlib"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            continue
    return out


def _spread(n_expected: int, k: int) -> set[int]:
    """k indices spread evenly over 0..n_expected-1."""
    if k <= 0 or n_expected <= 0:
        return set()
    return {int(round(x)) for x in np.linspace(0, n_expected - 1, min(k, n_expected))}


class _Outputs:
    """Writes the node's output topics for each processed pair."""

    def __init__(self, writer: bags.BagWriter, cfg: RuntimeConfig, plans: list[Any]) -> None:
        from .io import messages

        self.w = writer
        self.m = messages
        self.ros = cfg.ros
        self.prefix = cfg.replay.output_prefix.rstrip("/")
        self.types = bags.typestore().types
        self.kinds = {p.cfg.name: p.cfg.kind for p in plans}
        for name, kind in self.kinds.items():
            if self.ros.publish_fused:
                writer.add_topic(self.topic("fused", name), bags.IMAGE)
            if kind == "detection" and self.ros.publish_detections:
                writer.add_topic(self.topic("detections", name), bags.DETECTIONS)
            if kind == "segmentation" and self.ros.publish_masks:
                writer.add_topic(self.topic("mask", name), bags.IMAGE)

    def topic(self, what: str, task: str) -> str:
        return f"{self.prefix}/{what}/{task}"

    def write(self, result: Result, header: Any, log_time_ns: int) -> None:
        enc = self.ros.fused_encoding
        for name, out in result.outputs.items():
            if self.ros.publish_fused:
                self.w.write(self.topic("fused", name), log_time_ns,
                             self.m.array_to_image_msg(self.types[bags.IMAGE], header, out.fused_rgb, enc))
            if self.kinds.get(name) == "detection" and self.ros.publish_detections:
                msg = self.m.detections_to_msg(self.types, header, out.detections or [])
                self.w.write(self.topic("detections", name), log_time_ns, msg)
            if self.kinds.get(name) == "segmentation" and self.ros.publish_masks and out.mask is not None:
                self.w.write(self.topic("mask", name), log_time_ns,
                             self.m.mask_to_msg(self.types[bags.IMAGE], header, out.mask))


def _weight_files(cfg: RuntimeConfig) -> dict[str, str]:
    """sha256 of every weight file the configuration names (provenance for the report)."""
    from .models.checkpoint import file_sha256
    from .paths import resolve

    pc = cfg.pipeline
    names = [pc.backbone_weights, pc.vifa_weights, pc.rsc_weights, *[t.weights for t in pc.task_configs()]]
    out = {}
    for n in names:
        if n and resolve(n).is_file():
            out[n] = file_sha256(resolve(n))
    return out


def _sample(stamp: int, ir8: np.ndarray, rgb8: np.ndarray, result: Result, gt: list | None) -> Sample:
    return Sample(stamp, ir8, rgb8, {k: o.fused_rgb for k, o in result.outputs.items()},
                  {k: o.detections for k, o in result.outputs.items()}, gt)


def _gt_lookup(sidecar: dict | None) -> tuple[dict[int, list], list[str], list[int] | None]:
    """stamp (thermal and rgb) -> boxes, class names, source image size."""
    if not sidecar or not sidecar.get("classes"):
        return {}, [], None
    table: dict[int, list] = {}
    for f in sidecar.get("frames", []):
        if "boxes" in f:
            table[int(f["thermal_stamp_ns"])] = f["boxes"]
            table.setdefault(int(f["visible_stamp_ns"]), f["boxes"])
    return table, list(sidecar["classes"]), sidecar.get("image_size")


def replay(bag: str | Path, cfg: RuntimeConfig, out_dir: str | Path, *, config_source: str = "",
           overrides: dict | None = None, sidecar: str | Path | None = None, progress: bool = True,
           pipeline: Any = None, on_pair: Callable[[Result], None] | None = None) -> ReplaySummary:
    """Replay ``bag`` through pairing and the pipeline; write ``<out_dir>/bag`` and return the summary.

    Args:
        bag: ROS 2 bag (folder, ``.db3`` or ``.mcap``).
        cfg: runtime config (``replay``, ``sync``, ``pipeline``, ``ros`` sections are used).
        out_dir: output folder; ``out_dir/bag`` must not exist yet.
        config_source: where ``cfg`` came from (shown in the report).
        overrides: ``--set`` overrides applied on top (shown in the report).
        sidecar: make-bag sidecar (default: the bag's own ``ivif_sidecar.json`` when present) for
            the injected faults and ground-truth boxes.
        progress: show a tqdm bar.
        pipeline: an already built :class:`~ivif_fusion.runtime.pipeline.Pipeline` (tests, benchmarks).
        on_pair: called with every successful :class:`Result`.

    Raises:
        BagError subclasses for unusable bags (missing topics, wrong types, unreadable files);
        a bag that breaks part-way is *not* raised: the summary's ``truncated`` says where.
    """
    from tqdm import tqdm

    from .io.messages import ConversionError, msg_to_frame, stamp_ns
    from .runtime.pipeline import PairSizeMismatch, Pipeline
    from .runtime.sync import Synchronizer, pair_drops
    from .runtime.time_jump import TimeJumpGuard, admit

    bag = Path(bag)
    out_dir = Path(out_dir)
    rc = cfg.replay
    topics = {"thermal": rc.thermal_topic, "visible": rc.visible_topic}
    if topics["thermal"] == topics["visible"]:
        raise ReplayError(f"replay.thermal_topic and replay.visible_topic are both '{topics['thermal']}'")
    side_path = Path(sidecar) if sidecar else bags.find_sidecar(bag)
    side = bags.load_sidecar(side_path) if side_path else None
    out_bag = out_dir / "bag"
    if out_bag.exists():
        raise bags.BagWriteError(f"{out_bag} exists already; choose another --out or remove it")

    with bags.BagReader(bag) as reader:
        infos = {s: reader.require(topics[s], bags.IMAGE_TYPES, s) for s in STREAMS}
        pipe = pipeline if pipeline is not None else Pipeline.from_config(cfg)
        sync = Synchronizer.from_config(cfg.sync)
        jumps = TimeJumpGuard(cfg.time_jump_s)
        out_dir.mkdir(parents=True, exist_ok=True)
        summary = ReplaySummary(
            bag=str(bag), out_dir=str(out_dir), output_bag=str(out_bag), storage=rc.storage, config=cfg,
            config_source=config_source, overrides=dict(overrides or {}), backend=pipe.backend.name,
            backend_notes=list(getattr(pipe, "backend_notes", [])),
            tasks=[{"name": p.cfg.name, "kind": p.cfg.kind, "customization": p.cfg.customization,
                    "weights": p.cfg.weights} for p in pipe.plans],
            topics=dict(topics), input_types={s: infos[s].msgtype for s in STREAMS}, accounting={},
            sidecar=str(side_path) if side_path else None, versions=package_versions(),
            weights=_weight_files(cfg))
        if side is not None:
            summary.injected = bags.fault_summary(side)
            summary.expected = bags.expected_accounting(side, cfg.sync.mode, cfg.sync.slop_s)
        gt_table, gt_classes, gt_size = _gt_lookup(side)
        est_pairs = min(infos["thermal"].count, infos["visible"].count)
        if summary.expected is not None:
            est_pairs = summary.expected["pairs"]
        sample_at = _spread(est_pairs, rc.sample_frames)
        metric_at = _spread(est_pairs, rc.metrics_pairs)
        metric_data: list[tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]] = []
        preds: dict[str, dict[int, list[Detection]]] = {p.cfg.name: {} for p in pipe.plans
                                                          if p.cfg.kind == "detection"}
        gts: dict[int, list] = {}
        timings: dict[str, list[float]] = {}
        drops: list[Drop] = []
        pair_failures = {s: {} for s in STREAMS}
        fused_count = {s: 0 for s in STREAMS}
        ref = cfg.sync.reference
        last_pair: list[Any] = [None]  # the last fused pair: a sample when fewer pairs came than expected

        def record_pair_drops(pair: Pair, reason: DropReason, detail: str) -> None:
            for d in pair_drops(pair, reason, detail):
                drops.append(d)
                pair_failures[d.stream][reason] = pair_failures[d.stream].get(reason, 0) + 1

        with bags.BagWriter(out_bag, rc.storage) as writer:
            outputs = _Outputs(writer, cfg, pipe.plans)

            def process(pair: Pair, log_time_ns: int) -> None:
                index = summary.pairs_emitted
                summary.pairs_emitted += 1
                try:
                    result = pipe.run(pair)
                except PairSizeMismatch as e:
                    record_pair_drops(pair, DropReason.SIZE_MISMATCH, str(e))
                    return
                except Exception as e:  # noqa: BLE001 - one failing pair is an accounted drop, not the end
                    log.warning("pair %d: pipeline error: %s", pair.stamp_ns, e)
                    record_pair_drops(pair, DropReason.PIPELINE_ERROR, f"{type(e).__name__}: {e}")
                    return
                t = time.perf_counter()
                frame = pair.thermal if ref == "thermal" else pair.visible
                header = bags.make_header(frame.stamp_ns, frame.frame_id)
                outputs.write(result, header, log_time_ns)
                result.timings_ms["write"] = (time.perf_counter() - t) * 1e3
                for stage, ms in result.timings_ms.items():
                    timings.setdefault(stage, []).append(ms)
                for s in STREAMS:
                    fused_count[s] += 1
                summary.pairs_fused += 1
                any_out = next(iter(result.outputs.values()))
                h, w = any_out.fused_rgb.shape[:2]
                summary.image_size = [w, h]
                gt = None
                if gt_table:
                    boxes = gt_table.get(pair.thermal.stamp_ns, gt_table.get(pair.visible.stamp_ns))
                    if boxes is not None and gt_size:
                        sx, sy = w / gt_size[0], h / gt_size[1]
                        gt = [[b[0], b[1] * sx, b[2] * sy, b[3] * sx, b[4] * sy] for b in boxes]
                        gts[index] = gt
                        for name in preds:
                            preds[name][index] = result.outputs[name].detections or []
                last_pair[0] = (index, pair, result, frame.stamp_ns, gt)
                if index in sample_at or index in metric_at:
                    ir_p, rgb_p = pipe.preprocess(pair.thermal.image, pair.visible.image)
                    from .imageops import to_uint8

                    ir8, rgb8 = to_uint8(ir_p), to_uint8(rgb_p)
                    fused = {k: o.fused_rgb for k, o in result.outputs.items()}
                    if index in metric_at:
                        metric_data.append((ir8, rgb8, fused))
                    if index in sample_at:
                        summary.samples.append(_sample(frame.stamp_ns, ir8, rgb8, result, gt))
                if on_pair is not None:
                    on_pair(result)

            total = infos["thermal"].count + infos["visible"].count
            bar = tqdm(total=total, desc="replay", unit="msg", disable=not progress)
            t_start = time.perf_counter()
            n_read = 0
            try:
                for bm in reader.messages([topics["thermal"], topics["visible"]]):
                    n_read += 1
                    bar.update(1)
                    stream = "thermal" if bm.topic == topics["thermal"] else "visible"
                    if bm.msg is None:
                        drops.append(sync.reject(stream, bm.log_time_ns, DropReason.DECODE_ERROR, bm.error))
                        continue
                    t = time.perf_counter()
                    try:
                        frame = msg_to_frame(bm.msg, stream)
                    except ConversionError as e:
                        try:
                            stamp = stamp_ns(bm.msg.header)
                        except Exception:  # noqa: BLE001 - a header that cannot be read: use the log time
                            stamp = bm.log_time_ns
                        drops.append(sync.reject(stream, stamp, e.reason, str(e)))
                        continue
                    timings.setdefault(f"decode:{stream}", []).append((time.perf_counter() - t) * 1e3)
                    n_jumps = len(jumps.jumps)
                    sync, jdrops, accepted = admit(jumps, sync, stream, frame.stamp_ns,
                                                   lambda: Synchronizer.from_config(cfg.sync))
                    drops.extend(jdrops)
                    if len(jumps.jumps) > n_jumps:
                        log.warning("time jump: %s; pairing reset, %d frames dropped as time_jump",
                                    jumps.jumps[-1].describe(), len(jdrops))
                    if not accepted:
                        continue
                    pairs, sdrops = sync.push(frame)
                    drops.extend(sdrops)
                    for pair in pairs:
                        process(pair, bm.log_time_ns)
                    bar.set_postfix(fused=summary.pairs_fused, dropped=len(drops), refresh=False)
            except bags.BagReadError as e:
                # the part read so far is still accounted and reported; the CLI exits 1
                summary.truncated = f"{e}; {total - n_read} of the {total} messages in the bag's index were not read"
            finally:
                bar.close()
            drops.extend(sync.flush())
            if last_pair[0] is not None and 0 < len(summary.samples) < rc.sample_frames \
                    and summary.samples[-1].stamp_ns != last_pair[0][3]:
                _, pair, result, stamp, gt = last_pair[0]
                from .imageops import to_uint8

                ir_p, rgb_p = pipe.preprocess(pair.thermal.image, pair.visible.image)
                summary.samples.append(_sample(stamp, to_uint8(ir_p), to_uint8(rgb_p), result, gt))
            summary.wall_s = time.perf_counter() - t_start
            summary.output_counts = dict(writer.counts)

    # ---------------------------------------------------------------- accounting
    c = sync.counters
    for s in STREAMS:
        dropped = {r.value: n for r, n in c.dropped[s].items()}
        for r, n in pair_failures[s].items():
            dropped[r.value] = dropped.get(r.value, 0) + n
        dropped = dict(sorted(dropped.items()))
        total_dropped = sum(dropped.values())
        summary.accounting[s] = {
            "topic": topics[s], "received": c.received[s], "paired": c.paired[s], "fused": fused_count[s],
            "dropped": dropped, "dropped_total": total_dropped,
            "balanced": c.received[s] == fused_count[s] + total_dropped and sync.queued(s) == 0,
        }
    summary.drops = [{"stream": d.stream, "stamp_ns": d.stamp_ns, "reason": d.reason.value, "detail": d.detail}
                     for d in drops]
    summary.timings_ms = timings
    if summary.expected is not None and not summary.truncated:
        summary.matches_injected = (
            summary.expected["pairs"] == summary.pairs_emitted
            and all(summary.expected["received"][s] == summary.accounting[s]["received"] for s in STREAMS)
            and all(summary.expected["dropped"][s] == {r: n for r, n in summary.accounting[s]["dropped"].items()
                                                       if r not in ("size_mismatch", "pipeline_error")}
                    for s in STREAMS))

    # ---------------------------------------------------------------- metrics (after timing)
    if metric_data:
        from .metrics.fusion import METRIC_NAMES, fusion_metrics

        per_task: dict[str, list[dict[str, float]]] = {}
        for ir8, rgb8, fused in metric_data:
            for name, f in fused.items():
                try:
                    per_task.setdefault(name, []).append(fusion_metrics(ir8, rgb8, f))
                except ValueError as e:  # e.g. images smaller than the metrics need
                    log.warning("fusion metrics skipped: %s", e)
                    break
        for name, rows in per_task.items():
            summary.fusion_metrics[name] = {m: float(np.nanmean([r[m] for r in rows])) for m in METRIC_NAMES}
        summary.metrics_pairs = len(metric_data)
    if gts and preds:
        from .metrics.detection import coco_map

        for name, pred in preds.items():
            task_classes = list(pipe.task_config(name).classes) or gt_classes
            gt_mapped, note = _map_classes(gts, gt_classes, task_classes)
            res = coco_map(gt_mapped, {i: pred.get(i, []) for i in gt_mapped}, task_classes)
            res["note"] = note
            summary.detection_map[name] = res
    return summary


def _map_classes(gts: dict[int, list], gt_classes: list[str], task_classes: list[str]) -> tuple[dict, str]:
    """Ground-truth class ids -> the task's class ids (by name); boxes of other classes are left out."""
    if gt_classes == task_classes:
        return {i: np.asarray(b, dtype=np.float64).reshape(-1, 5) for i, b in gts.items()}, ""
    idx = {n: k for k, n in enumerate(task_classes)}
    missing = sorted({gt_classes[int(b[0])] for bs in gts.values() for b in bs} - set(idx))
    out = {}
    for i, bs in gts.items():
        rows = [[idx[gt_classes[int(b[0])]], *b[1:]] for b in bs if gt_classes[int(b[0])] in idx]
        out[i] = np.asarray(rows, dtype=np.float64).reshape(-1, 5)
    note = f"ground-truth classes not predicted by the task and left out: {missing}" if missing else ""
    return out, note
