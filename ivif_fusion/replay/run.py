"""Offline replay: bag -> decode-or-drop -> Synchronizer -> Pipeline -> output bag + accounting + report data.

The same steps as the ROS node (:mod:`ivif_fusion.stream`: decode-or-drop, pairing and
accounting, output plan) around the same pipeline, fed with the bag's messages in log-time order.
Every input frame ends exactly once as part of a fused pair or as one drop with a reason, so per
stream ``received == fused + dropped`` (``paired`` counts frames the synchronizer emitted in
pairs; a pair that fails in the pipeline is two drops, SIZE_MISMATCH or PIPELINE_ERROR, one per
stream). Unlike the node, every emitted pair is processed (no latest-pair-wins).

Output bag (``<out>/bag``): the node's output topics (:mod:`ivif_fusion.stream.outputs`) under
``replay.output_prefix``. The log time of an output is that of the message that completed the
pair, so replays are reproducible.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..config import ReplayConfig, RuntimeConfig
from ..errors import UserError
from ..io import bags, fault_bag
from ..runtime.sync import STREAMS, Synchronizer
from ..stream.accounting import PairAccounting
from ..stream.decode import decode_or_drop
from ..stream.outputs import OutputPlan
from ..types import Drop, DropReason, Pair, Result
from .evidence import Evidence
from .summary import ReplaySummary, package_versions, weight_files

log = logging.getLogger("ivif_fusion.replay")


class ReplayError(UserError):
    """The replay cannot run (configuration does not fit the bag)."""


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
    bag, out_dir = Path(bag), Path(out_dir)
    topics = input_topics(cfg.replay)
    side_path = Path(sidecar) if sidecar else fault_bag.find_sidecar(bag)
    side = fault_bag.load_sidecar(side_path) if side_path else None
    out_bag = output_bag_path(out_dir)
    with bags.BagReader(bag) as reader:
        infos = {s: reader.require(topics[s], bags.IMAGE_TYPES, s) for s in STREAMS}
        pipe = pipeline if pipeline is not None else _build_pipeline(cfg)
        out_dir.mkdir(parents=True, exist_ok=True)
        summary = new_summary(bag, out_bag, cfg, pipe, topics, {s: i.msgtype for s, i in infos.items()},
                              config_source, overrides, side_path, side)
        expected_pairs = summary.expected["pairs"] if summary.expected is not None \
            else min(infos["thermal"].count, infos["visible"].count)
        evidence = Evidence(pipe, side, expected_pairs, cfg.replay.sample_frames, cfg.replay.metrics_pairs)
        # A bag recorded across a restart: stamps going back reset pairing, as in the node.
        accounting = PairAccounting(Synchronizer.from_config(cfg.sync), time_jump_s=cfg.time_jump_s,
                                    make_sync=lambda: Synchronizer.from_config(cfg.sync), on_jump=_log_jump)
        with bags.BagWriter(out_bag, cfg.replay.storage) as writer:
            run = ReplayRun(pipe, accounting, output_plan(cfg, pipe, writer), writer, evidence, summary, on_pair)
            run.read(reader, topics, infos["thermal"].count + infos["visible"].count, progress)
    account(summary, accounting, run)
    evidence.fill(summary)
    return summary


# ---------------------------------------------------------------------- set-up steps


def _log_jump(event: Any, drops: list[Drop]) -> None:
    log.warning("time jump: %s; pairing reset, %d frames dropped as time_jump", event.describe(), len(drops))



def input_topics(rc: ReplayConfig) -> dict[str, str]:
    """stream -> input topic; the two must differ."""
    topics = {"thermal": rc.thermal_topic, "visible": rc.visible_topic}
    if topics["thermal"] == topics["visible"]:
        raise ReplayError(f"replay.thermal_topic and replay.visible_topic are both '{topics['thermal']}'")
    return topics


def output_bag_path(out_dir: Path) -> Path:
    """``out_dir/bag``, which must not exist yet."""
    out_bag = out_dir / "bag"
    if out_bag.exists():
        raise bags.BagWriteError(f"{out_bag} exists already; choose another --out or remove it")
    return out_bag


def _build_pipeline(cfg: RuntimeConfig) -> Any:
    from ..runtime.pipeline import Pipeline

    return Pipeline.from_config(cfg)


def new_summary(bag: Path, out_bag: Path, cfg: RuntimeConfig, pipe: Any, topics: dict[str, str],
                input_types: dict[str, str], config_source: str, overrides: dict | None, side_path: Path | None,
                side: dict | None) -> ReplaySummary:
    """The summary before any message is read: configuration, provenance and what the sidecar predicts."""
    summary = ReplaySummary(
        bag=str(bag), out_dir=str(out_bag.parent), output_bag=str(out_bag), storage=cfg.replay.storage, config=cfg,
        config_source=config_source, overrides=dict(overrides or {}), backend=pipe.backend.name,
        backend_notes=list(getattr(pipe, "backend_notes", [])),
        tasks=[{"name": p.cfg.name, "kind": p.cfg.kind, "customization": p.cfg.customization,
                "weights": p.cfg.weights} for p in pipe.plans],
        topics=dict(topics), input_types=input_types, accounting={},
        sidecar=str(side_path) if side_path else None, versions=package_versions(), weights=weight_files(cfg))
    if side is not None:
        summary.injected = fault_bag.fault_summary(side)
        summary.expected = fault_bag.expected_accounting(side, cfg.sync.mode, cfg.sync.slop_s,
                                                       policy=cfg.sync.policy, reject_late=cfg.sync.reject_late)
    return summary


def output_plan(cfg: RuntimeConfig, pipe: Any, writer: bags.BagWriter) -> OutputPlan:
    """The node's output plan under ``replay.output_prefix``, with rosbags classes; topics declared in ``writer``."""
    plan = OutputPlan(bags.typestore().types, {p.cfg.name: p.cfg.kind for p in pipe.plans}, cfg.ros,
                      cfg.sync.reference, cfg.replay.output_prefix)
    for o in plan.outputs:
        writer.add_topic(o.topic, o.msgtype)
    return plan


# ---------------------------------------------------------------------- the message loop


class ReplayRun:
    """Feeds the bag's messages through decode-or-drop, pairing, the pipeline and the output plan."""

    def __init__(self, pipe: Any, accounting: PairAccounting, plan: OutputPlan, writer: bags.BagWriter,
                 evidence: Evidence, summary: ReplaySummary, on_pair: Callable[[Result], None] | None) -> None:
        self.pipe, self.accounting, self.plan, self.writer = pipe, accounting, plan, writer
        self.evidence, self.summary, self.on_pair = evidence, summary, on_pair
        self.drops: list[Drop] = []
        self.timings: dict[str, list[float]] = {}

    def read(self, reader: bags.BagReader, topics: dict[str, str], total: int, progress: bool) -> None:
        """Every message of ``topics`` in log-time order, then the end-of-stream flush (timed: ``wall_s``)."""
        from tqdm import tqdm

        stream_of = {topic: s for s, topic in topics.items()}
        bar = tqdm(total=total, desc="replay", unit="msg", disable=not progress)
        t_start = time.perf_counter()
        n_read = 0
        try:
            for bm in reader.messages([topics["thermal"], topics["visible"]]):
                n_read += 1
                bar.update(1)
                self.message(bm, stream_of[bm.topic])
                bar.set_postfix(fused=self.summary.pairs_fused, dropped=len(self.drops), refresh=False)
        except bags.BagReadError as e:
            # the part read so far is still accounted and reported; the CLI exits 1
            self.summary.truncated = f"{e}; {total - n_read} of the {total} messages in the bag's index were not read"
        finally:
            bar.close()
        self.drops += self.accounting.flush()
        self.evidence.finish_samples()
        self.summary.wall_s = time.perf_counter() - t_start
        self.summary.output_counts = dict(self.writer.counts)

    def message(self, bm: bags.BagMessage, stream: str) -> None:
        """Decode-or-drop one message, pair it and process the pairs it completes."""
        t = time.perf_counter()
        frame = decode_or_drop(bm.msg, stream, fallback_stamp_ns=bm.log_time_ns, received_s=t, error=bm.error)
        if isinstance(frame, Drop):
            self.drops.append(self.accounting.reject_drop(frame))
            return
        self.timings.setdefault(f"decode:{stream}", []).append((time.perf_counter() - t) * 1e3)
        pairs, drops = self.accounting.push(frame)
        self.drops += drops
        for pair in pairs:
            self.pair(pair, bm.log_time_ns)

    def pair(self, pair: Pair, log_time_ns: int) -> None:
        """Run the pipeline on one pair; write its outputs or count it as two drops."""
        from ..runtime.pipeline import PairSizeMismatch

        index = self.summary.pairs_emitted
        self.summary.pairs_emitted += 1
        try:
            result = self.pipe.run(pair)
        except PairSizeMismatch as e:
            self.drops += self.accounting.done(pair, DropReason.SIZE_MISMATCH, str(e))
            return
        except Exception as e:  # noqa: BLE001 - one failing pair is an accounted drop, not the end
            log.warning("pair %d: pipeline error: %s", pair.stamp_ns, e)
            self.drops += self.accounting.done(pair, DropReason.PIPELINE_ERROR, f"{type(e).__name__}: {e}")
            return
        t = time.perf_counter()
        for output, msg in self.plan.messages(result):
            self.writer.write(output.topic, log_time_ns, msg)
        result.timings_ms["write"] = (time.perf_counter() - t) * 1e3
        for stage, ms in result.timings_ms.items():
            self.timings.setdefault(stage, []).append(ms)
        self.accounting.done(pair)
        self.summary.pairs_fused += 1
        h, w = next(iter(result.outputs.values())).fused_rgb.shape[:2]
        self.summary.image_size = [w, h]
        ref = pair.thermal if self.plan.reference == "thermal" else pair.visible
        self.evidence.add(index, result, ref.stamp_ns)
        if self.on_pair is not None:
            self.on_pair(result)


# ---------------------------------------------------------------------- after the loop


def account(summary: ReplaySummary, accounting: PairAccounting, run: ReplayRun) -> None:
    """Per-stream accounting, every drop, stage timings and whether they match the injected faults."""
    summary.accounting = accounting.per_stream(summary.topics)
    summary.drops = [{"stream": d.stream, "stamp_ns": d.stamp_ns, "reason": d.reason.value, "detail": d.detail}
                     for d in run.drops]
    summary.timings_ms = run.timings
    if summary.expected is not None and not summary.truncated:
        summary.matches_injected = fault_bag.matches_expected(summary.expected, summary.pairs_emitted,
                                                              summary.accounting)
