"""`ivif eval fusion`: the twelve fusion metrics of a folder of fused images against its paired sources."""

from __future__ import annotations

import argparse
import csv
import math
from pathlib import Path
from typing import Any

COMMAND = ("eval", "fusion")
HELP = "fusion metrics (EN, SD, SF, AG, MI, SCD, VIF, Qabf, SSIM, CC, PSNR, Nabf) of fused images"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--pairs", required=True, type=Path, help="paired folder with ir/ and vi/ (the sources)")
    p.add_argument("--fused", required=True, type=Path,
                   help="folder of fused images named like the pairs (same name, or same stem with .png)")
    p.add_argument("--out", type=Path, default=None,
                   help="per-image CSV; the summary goes next to it as <stem>_summary.csv/.md "
                        "(default: <fused>/fusion_metrics.csv)")
    p.add_argument("--only-fused", action="store_true",
                   help="evaluate only the pairs that have a fused image (default: a missing one is an error)")
    p.add_argument("--resize", action="store_true",
                   help="resize visible images whose size differs from their thermal partner")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return f"{v:.6f}"
    return str(v)


def summary_markdown(summary: list[dict[str, Any]], n_images: int, pairs: Path, fused: Path) -> str:
    """The summary as a markdown table (mean, std, images used, direction)."""
    lines = [f"# Fusion metrics: {fused}", "", f"Sources: `{pairs}`, {n_images} image(s). "
             "Conventions: docs/metrics.md.", "",
             "| Metric | Mean | Std | n | Better |", "|---|---:|---:|---:|:---:|"]
    for r in summary:
        lines.append(f"| {r['metric']} | {r['mean']:.4f} | {r['std']:.4f} | {r['n']} | "
                     f"{'higher' if r['higher_is_better'] else 'lower'} |")
    return "\n".join(lines) + "\n"


def run(args: argparse.Namespace) -> int:
    from ..metrics.fusion import METRIC_NAMES, evaluate_folder, summarize

    rows = evaluate_folder(args.pairs, args.fused, only_fused=args.only_fused, resize_mismatched=args.resize,
                           progress=not args.no_progress)
    out = args.out if args.out is not None else args.fused / "fusion_metrics.csv"
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["name", *METRIC_NAMES])
        for r in rows:
            w.writerow([r["name"], *(_fmt(r[k]) for k in METRIC_NAMES)])
    summary = summarize(rows)
    sum_csv = out.with_name(f"{out.stem}_summary.csv")
    with sum_csv.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["metric", "mean", "std", "n", "higher_is_better"])
        for r in summary:
            w.writerow([r["metric"], _fmt(r["mean"]), _fmt(r["std"]), r["n"], int(r["higher_is_better"])])
    md = summary_markdown(summary, len(rows), args.pairs, args.fused)
    sum_md = out.with_name(f"{out.stem}_summary.md")
    sum_md.write_text(md)
    print(md)
    print(f"per-image: {out}\nsummary: {sum_csv}\nsummary (markdown): {sum_md}")
    return 0
