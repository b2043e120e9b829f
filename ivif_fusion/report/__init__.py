"""Replay report: ``report.md`` and ``report.html`` (same content) with PNG figures, plus ``summary.json``.

:func:`write_report` takes a :class:`~ivif_fusion.replay.ReplaySummary` and writes into its
``out_dir``. The document is built once as a list of blocks (headings, paragraphs, tables,
figures, code) and rendered to both formats, so they never disagree.
"""

from __future__ import annotations

import datetime as _dt
import html
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ..config import to_dict
from .figures import accounting_figure, latency_figure, samples_figure, segmentation_figure

REASON_ORDER = ("no_partner", "queue_overflow", "superseded", "out_of_order", "duplicate", "decode_error",
                "unsupported_encoding", "non_finite", "size_mismatch", "pipeline_error", "unflushed")
FAULT_EFFECT = {"drop": "frame missing; its partner: no_partner",
                "duplicate": "second copy: duplicate",
                "reorder": "late frame: out_of_order; its partner: no_partner",
                "corrupt": "frame: decode_error; its partner: no_partner"}


@dataclass
class Block:
    kind: str          # h1 h2 p table img code
    data: Any


def _fmt(v: Any, digits: int = 3) -> str:
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        if math.isnan(v):
            return "n/a"
        return f"{v:.{digits}f}" if abs(v) < 1e4 else f"{v:.4g}"
    return str(v)


def _stamp(ns: int) -> str:
    return f"{ns // 1_000_000_000}.{ns % 1_000_000_000:09d}"


def build_blocks(s: Any, figs: dict[str, str]) -> list[Block]:  # noqa: C901 - one linear document
    """The report as blocks; ``figs`` maps figure keys to paths relative to the report."""
    b: list[Block] = [Block("h1", "ivif replay report")]
    status = "every frame accounted for" if s.balanced else "ACCOUNTING DOES NOT BALANCE"
    b.append(Block("p", f"Bag `{s.bag}` replayed on {_dt.datetime.now().strftime('%Y-%m-%d %H:%M')}: "
                        f"**{s.pairs_fused} pair(s) fused** out of {s.pairs_emitted} paired, {status}. "
                        f"Output bag: `{s.output_bag}` ({s.storage})."))
    if s.truncated:
        b.append(Block("p", f"**WARNING: the input bag broke part-way and was read only up to that point:** "
                            f"{s.truncated}. Frames after it are not counted."))
    if s.matches_injected is not None:
        b.append(Block("p", "Accounting matches the faults recorded in the make-bag sidecar: "
                            f"**{'yes' if s.matches_injected else 'NO'}**."))
    lat = s.plain()["latency_ms"]
    total = lat.get("total", {})
    rows = [["backend", s.backend + (f" (skipped: {'; '.join(s.backend_notes)})" if s.backend_notes else "")],
            ["tasks", ", ".join(f"{t['name']} ({t['kind']}, {t['customization']})" for t in s.tasks)],
            ["processed image size", "x".join(map(str, s.image_size)) if s.image_size else "n/a"],
            ["replay wall time", f"{s.wall_s:.2f} s"],
            ["throughput (fused pairs / wall time)", f"{s.throughput_pairs_s:.2f} pairs/s"],
            ["pipeline latency per pair (median / p90)",
             f"{_fmt(total.get('median', float('nan')), 1)} / {_fmt(total.get('p90', float('nan')), 1)} ms"],
            ["threads", str(s.config.pipeline.threads)],
            *[[f"weights `{k}`", f"sha256 {v[:16]}..."] for k, v in s.weights.items()]]
    b.append(Block("table", (["item", "value"], rows)))

    # ------------------------------------------------------------ accounting
    b.append(Block("h2", "Frames: received, paired, fused, dropped"))
    b.append(Block("p", "Per input topic. *paired*: frames the synchronizer put into a pair; *fused*: frames of "
                        "pairs the pipeline processed; every other frame is one drop with its reason, so "
                        "received = fused + dropped."))
    reasons = [r for r in REASON_ORDER if any(r in a["dropped"] for a in s.accounting.values())]
    reasons += sorted({r for a in s.accounting.values() for r in a["dropped"]} - set(reasons))
    head = ["stream", "topic", "type", "received", "paired", "fused", *[f"drop: {r}" for r in reasons],
            "dropped", "balanced"]
    rows = []
    for st, a in s.accounting.items():
        rows.append([st, f"`{a['topic']}`", s.input_types.get(st, ""), a["received"], a["paired"], a["fused"],
                     *[a["dropped"].get(r, 0) for r in reasons], a["dropped_total"], _fmt(a["balanced"])])
    b.append(Block("table", (head, rows)))
    if "accounting" in figs:
        b.append(Block("img", (figs["accounting"], "frames per stream: fused and dropped by reason")))
    if s.injected is not None:
        b.append(Block("h2", "Injected faults (make-bag sidecar)"))
        rows = [[k, st, n, FAULT_EFFECT.get(k, "")] for k, d in sorted(s.injected.items()) for st, n in sorted(d.items())]
        if rows:
            b.append(Block("table", (["fault", "stream", "count", "expected effect"], rows)))
        else:
            b.append(Block("p", "No faults were injected."))
        if s.expected is not None:
            rows = [["pairs", s.expected["pairs"], s.pairs_emitted]]
            for st in s.accounting:
                rows.append([f"{st} received", s.expected["received"][st], s.accounting[st]["received"]])
                for r in sorted(set(s.expected["dropped"][st]) | set(s.accounting[st]["dropped"])):
                    rows.append([f"{st} {r}", s.expected["dropped"][st].get(r, 0), s.accounting[st]["dropped"].get(r, 0)])
            b.append(Block("table", (["count", "expected from sidecar", "observed"], rows)))
        else:
            b.append(Block("p", "No exact prediction for this sync configuration, so no expected counts are shown: "
                                "the sidecar's model needs sync.policy optimal with sync.reject_late true (without "
                                "it the message_filters policies queue repeated and late frames), and stamps whose "
                                "jitter and gaps keep pairs apart by more than sync.slop_s."))
    if s.drops:
        b.append(Block("h2", "Dropped frames"))
        shown = s.drops[:30]
        rows = [[d["stream"], _stamp(d["stamp_ns"]), d["reason"], d["detail"][:140]] for d in shown]
        b.append(Block("table", (["stream", "stamp", "reason", "detail"], rows)))
        if len(s.drops) > len(shown):
            b.append(Block("p", f"... and {len(s.drops) - len(shown)} more (all in summary.json)."))

    # ------------------------------------------------------------ latency
    b.append(Block("h2", "Latency per stage and throughput"))
    b.append(Block("p", "Milliseconds per call, measured on this machine during the replay; *decode* is per "
                        "message, the other stages per pair; *total* is the pipeline (preprocess to task "
                        "networks), *write* the output-bag serialization."))
    rows = [[st, v["n"], _fmt(v["median"], 2), _fmt(v["p90"], 2), _fmt(v["mean"], 2), _fmt(v["max"], 2)]
            for st, v in lat.items()]
    b.append(Block("table", (["stage", "n", "median", "p90", "mean", "max"], rows)))
    if "latency" in figs:
        b.append(Block("img", (figs["latency"], "latency histograms per stage")))

    # ------------------------------------------------------------ quality
    b.append(Block("h2", "Fusion metrics per task"))
    if s.fusion_metrics:
        names = list(next(iter(s.fusion_metrics.values())))
        rows = [[t, *[_fmt(m[n], 3) for n in names]] for t, m in s.fusion_metrics.items()]
        b.append(Block("p", f"Means over {s.metrics_pairs} fused pair(s) spread over the bag, computed against the "
                            "thermal and RGB inputs at the processed size (ivif_fusion.metrics.fusion; Nabf: lower "
                            "is better, others higher)."))
        b.append(Block("table", (["task", *names], rows)))
    else:
        b.append(Block("p", "Not computed (replay.metrics_pairs is 0, or no pair was fused)."))
    det_tasks = [t["name"] for t in s.tasks if t["kind"] == "detection"]
    if det_tasks:
        b.append(Block("h2", "Detection"))
        if s.detection_map:
            rows = []
            for t, r in s.detection_map.items():
                per = ", ".join(f"{c} {_fmt(v, 3)}" for c, v in r["AP50"].items())
                rows.append([t, r["images"], r["gt_boxes"], r["pred_boxes"], _fmt(r["mAP50"]), _fmt(r["mAP50-95"]), per])
            b.append(Block("p", "COCO mAP (pycocotools) of each detection task against the sidecar's ground-truth "
                                "boxes, over the fused pairs that have ground truth."))
            b.append(Block("table", (["task", "images", "gt boxes", "detections", "mAP50", "mAP50-95",
                                      "AP50 per class"], rows)))
            for t, r in s.detection_map.items():
                if r.get("note"):
                    b.append(Block("p", f"{t}: {r['note']}."))
        else:
            b.append(Block("p", "No ground-truth boxes for this bag (make it with `ivif make-bag --labels DIR`), "
                                "so no mAP."))
    if any(t["kind"] == "segmentation" for t in s.tasks):
        b += segmentation_blocks(s, figs)

    # ------------------------------------------------------------ samples
    if "samples" in figs:
        b.append(Block("h2", "Sample frames"))
        b.append(Block("p", "Thermal, RGB and the fused image of every task for pairs spread over the bag; "
                            "detections drawn with class and score; ground-truth boxes (when present) dashed white."))
        b.append(Block("img", (figs["samples"], "sample frames")))

    # ------------------------------------------------------------ outputs, config, versions
    b.append(Block("h2", "Output bag"))
    rows = [[f"`{t}`", n] for t, n in s.output_counts.items()]
    b.append(Block("table", (["topic", "messages"], rows)))
    b.append(Block("p", f"Headers are copies of the {s.config.sync.reference} frame's header (stamp and frame_id)."))
    b.append(Block("h2", "Configuration"))
    src = s.config_source or "defaults"
    b.append(Block("p", f"Loaded from `{src}`" + (f" with overrides `{s.overrides}`" if s.overrides else "") +
                        "; the effective configuration:"))
    b.append(Block("code", yaml.safe_dump(to_dict(s.config), sort_keys=False)))
    b.append(Block("h2", "Versions"))
    b.append(Block("table", (["package", "version"], [[k, v] for k, v in s.versions.items()])))
    return b


def segmentation_blocks(s: Any, figs: dict[str, str]) -> list[Block]:
    """Masks per segmentation task, the fraction of mask pixels per class, the overlay figure."""
    b = [Block("h2", "Segmentation")]
    if s.segmentation:
        b.append(Block("p", "Class-id masks of every fused pair (the `mask` topics of the output bag); the pixel "
                            "fraction of a class is its share of all mask pixels of the task."))
        rows = []
        for t, r in s.segmentation.items():
            fractions = ", ".join(f"{c} {_fmt(v, 3) if v >= 0.001 else '<0.001'}"
                                  for c, v in r["pixel_fraction"].items() if v > 0)
            rows.append([t, r["masks"], r["pixels"], fractions or "n/a"])
        b.append(Block("table", (["task", "masks", "pixels", "pixel fraction per class (classes present)"], rows)))
    if "segmentation" in figs:
        b.append(Block("p", "Masks of the sample pairs over each task's fused image; background is left uncoloured."))
        b.append(Block("img", (figs["segmentation"], "segmentation masks over the fused images")))
    b.append(Block("p", "No segmentation ground truth is carried by replay bags, so no mIoU here "
                        "(use `ivif eval` on a labelled folder)."))
    return b


def render_markdown(blocks: list[Block]) -> str:
    out = []
    for bl in blocks:
        if bl.kind == "h1":
            out.append(f"# {bl.data}\n")
        elif bl.kind == "h2":
            out.append(f"## {bl.data}\n")
        elif bl.kind == "p":
            out.append(f"{bl.data}\n")
        elif bl.kind == "table":
            head, rows = bl.data
            out.append("| " + " | ".join(map(str, head)) + " |")
            out.append("|" + "|".join("---" for _ in head) + "|")
            out += ["| " + " | ".join(str(c).replace("|", "\\|") for c in r) + " |" for r in rows]
            out.append("")
        elif bl.kind == "img":
            path, alt = bl.data
            out.append(f"![{alt}]({path})\n")
        elif bl.kind == "code":
            out.append("```yaml\n" + bl.data.rstrip() + "\n```\n")
    return "\n".join(out)


def _inline_html(text: str) -> str:
    """Escape, then the two markdown inline forms used in paragraphs: **bold** and `code`."""
    import re

    t = html.escape(str(text))
    t = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", t)
    t = re.sub(r"`(.+?)`", r"<code>\1</code>", t)
    return re.sub(r"\*(.+?)\*", r"<i>\1</i>", t)


def render_html(blocks: list[Block]) -> str:
    css = ("body{font-family:sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}"
           "table{border-collapse:collapse;margin:.5em 0 1em}td,th{border:1px solid #bbb;padding:3px 8px;"
           "font-size:90%;text-align:left}th{background:#eee}img{max-width:100%;border:1px solid #ddd}"
           "pre{background:#f6f6f6;padding:1em;overflow:auto;font-size:85%}")
    out = ["<!DOCTYPE html>", "<html><head><meta charset='utf-8'><title>ivif replay report</title>",
           f"<style>{css}</style></head><body>"]
    for bl in blocks:
        if bl.kind in ("h1", "h2"):
            out.append(f"<{bl.kind}>{html.escape(bl.data)}</{bl.kind}>")
        elif bl.kind == "p":
            out.append(f"<p>{_inline_html(bl.data)}</p>")
        elif bl.kind == "table":
            head, rows = bl.data
            out.append("<table><tr>" + "".join(f"<th>{_inline_html(h)}</th>" for h in head) + "</tr>")
            out += ["<tr>" + "".join(f"<td>{_inline_html(c)}</td>" for c in r) + "</tr>" for r in rows]
            out.append("</table>")
        elif bl.kind == "img":
            path, alt = bl.data
            out.append(f"<p><img src='{html.escape(path)}' alt='{html.escape(alt)}'></p>")
        elif bl.kind == "code":
            out.append(f"<pre>{html.escape(bl.data)}</pre>")
    out.append("</body></html>")
    return "\n".join(out)


def _json_default(o: Any) -> Any:
    if hasattr(o, "item"):
        return o.item()
    if hasattr(o, "tolist"):
        return o.tolist()
    return str(o)


def write_report(summary: Any, out_dir: str | Path | None = None) -> dict[str, Path]:
    """Write report.md, report.html, figures/*.png and summary.json; return their paths."""
    out = Path(out_dir or summary.out_dir)
    figdir = out / "figures"
    figdir.mkdir(parents=True, exist_ok=True)
    figs: dict[str, str] = {}
    if accounting_figure(summary.accounting, figdir / "accounting.png"):
        figs["accounting"] = "figures/accounting.png"
    if latency_figure(summary.timings_ms, figdir / "latency.png"):
        figs["latency"] = "figures/latency.png"
    if summary.samples and samples_figure(summary.samples, [t["name"] for t in summary.tasks], figdir / "samples.png"):
        figs["samples"] = "figures/samples.png"
    seg_classes = {t: r["classes"] for t, r in summary.segmentation.items()}
    if summary.samples and segmentation_figure(summary.samples, seg_classes, figdir / "segmentation.png"):
        figs["segmentation"] = "figures/segmentation.png"
    blocks = build_blocks(summary, figs)
    paths = {"markdown": out / "report.md", "html": out / "report.html", "json": out / "summary.json"}
    paths["markdown"].write_text(render_markdown(blocks))
    paths["html"].write_text(render_html(blocks))
    plain = summary.plain()
    plain.pop("timings_ms", None)  # raw per-call lists are long; the stats are kept
    paths["json"].write_text(json.dumps(plain, indent=1, default=_json_default))
    paths.update({k: figdir / Path(v).name for k, v in figs.items()})
    return paths
