"""`ivif replay`: a ROS 2 bag through pairing and the pipeline -> output bag + report."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

COMMAND = ("replay",)
HELP = "replay a ROS 2 bag (sqlite3 or MCAP) through pairing and fusion; write an output bag and a report"


def add_arguments(p: argparse.ArgumentParser) -> None:
    from ..paths import CONFIG_DIR

    p.add_argument("bag", help="input bag: folder with metadata.yaml, or a .db3 / .mcap file")
    p.add_argument("--config", default=str(CONFIG_DIR / "multitask.yaml"), help="runtime config YAML")
    p.add_argument("--out", required=True, help="output folder: bag/, report.md, report.html, figures/, summary.json")
    p.add_argument("--weights", help="backbone checkpoint (overrides pipeline.backbone_weights)")
    p.add_argument("--sidecar", help="make-bag sidecar JSON (default: <bag>/ivif_sidecar.json when present)")
    p.add_argument("--set", metavar="KEY=VALUE", action="append", default=[],
                   help="override a config key, e.g. --set replay.visible_topic=/cam/rgb --set pipeline.max_side=320")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from ..config import load_runtime
    from ..replay import replay
    from ..report import write_report
    from ._common import parse_sets

    overrides = parse_sets(args.set)
    if args.weights:
        overrides["pipeline.backbone_weights"] = str(Path(args.weights).resolve())
    cfg = load_runtime(args.config, overrides)
    summary = replay(args.bag, cfg, args.out, config_source=args.config, overrides=overrides,
                     sidecar=args.sidecar, progress=not args.no_progress)
    paths = write_report(summary)
    acc = summary.accounting
    dropped = sum(a["dropped_total"] for a in acc.values())
    received = sum(a["received"] for a in acc.values())
    print(f"replayed {received} frame(s): {summary.pairs_fused} pair(s) fused with backend '{summary.backend}', "
          f"{dropped} frame(s) dropped (by reason in the report), {summary.throughput_pairs_s:.2f} pairs/s")
    for task, seg in summary.segmentation.items():
        shares = ", ".join(f"{c} {v:.3f}" for c, v in seg["pixel_fraction"].items() if v > 0) or "no pixels"
        print(f"segmentation '{task}': {seg['masks']} mask(s); pixel fraction per class: {shares}")
    errors = sum(a["dropped"].get("pipeline_error", 0) for a in acc.values()) // 2
    if errors:
        first = next(d["detail"] for d in summary.drops if d["reason"] == "pipeline_error")
        print(f"WARNING: {errors} pair(s) failed in the pipeline (first: {first})", file=sys.stderr)
    if not summary.balanced:
        print("WARNING: the frame accounting does not balance; see the report", file=sys.stderr)
    if summary.matches_injected is False:
        print("WARNING: the accounting differs from the faults recorded in the sidecar; see the report",
              file=sys.stderr)
    print(f"output bag -> {summary.output_bag}")
    print(f"report -> {paths['html']} (and {paths['markdown'].name})")
    if summary.truncated:
        print(f"ERROR: {summary.truncated}; the report covers the part that could be read", file=sys.stderr)
        return 1
    return 0
