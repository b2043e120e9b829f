"""`ivif bench [fusion|pipeline|all]`: per-stage timings, written under benchmarks/."""

from __future__ import annotations

import argparse
import sys

from ..paths import DEFAULT_BACKBONE

COMMAND = ("bench",)
HELP = ("benchmark backbone torch vs ONNX Runtime (and vs a SeAFusion-architecture twin) and the 1/2/3-task "
        "pipeline (JSON + markdown in benchmarks/)")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("what", nargs="?", choices=("fusion", "pipeline", "all"), default="all",
                   help="fusion: backbone torch vs ORT, and vs the SeAFusion twin; pipeline: shared vs separate, "
                        "1-3 tasks; all: both")
    p.add_argument("--frames", type=int, default=30, help="timed frames per configuration (after warm-up)")
    p.add_argument("--warmup", type=int, default=3, help="untimed warm-up frames")
    p.add_argument("--size", default="640x480", help="input size WxH")
    p.add_argument("--threads", type=int, default=2, help="torch / ONNX Runtime threads")
    p.add_argument("--weights", default="", help=f"backbone checkpoint (default: {DEFAULT_BACKBONE} if present, else random)")
    p.add_argument("--arch", action="append", default=[], metavar="ARCH[:KEY=VALUE,...]",
                   help="fusion: also time this backbone variant at random init in ONNX Runtime, in the same run "
                        "(repeatable), e.g. --arch vfn2 --arch vfn2:stride=2,channels=32")
    p.add_argument("--designs", default="shared,separate",
                   help="pipeline designs: shared (backbone once + heads), separate (one network per task)")
    p.add_argument("--no-task-networks", action="store_true", help="skip timing the task networks")
    p.add_argument("--out", default="", help="output folder (default: <repo>/benchmarks)")
    p.add_argument("--name", default="", help="report file name without extension (default: bench_<what>)")


def run(args: argparse.Namespace) -> int:
    from ..bench import BenchOptions
    from ..bench import run as run_bench
    from ..errors import UserError
    from ..paths import SHARE_DIR

    try:
        w, h = (int(v) for v in args.size.lower().split("x"))
    except ValueError as e:
        raise UserError(f"--size expects WxH (e.g. 640x480), got '{args.size}'") from e
    if not set(args.designs.split(",")) <= {"shared", "separate"}:
        raise UserError(f"--designs takes shared and/or separate, got '{args.designs}'")
    if args.frames < 1 or args.warmup < 0 or args.threads < 1:
        raise UserError("--frames and --threads must be >= 1, --warmup >= 0")
    default = SHARE_DIR / DEFAULT_BACKBONE
    weights = args.weights or (str(default) if default.is_file() else "")
    opts = BenchOptions(width=w, height=h, threads=args.threads, frames=args.frames, warmup=args.warmup,
                        weights=weights, archs=tuple(args.arch), task_networks=not args.no_task_networks,
                        designs=tuple(d.strip() for d in args.designs.split(",") if d.strip()),
                        out_dir=args.out or str(SHARE_DIR / "benchmarks"))
    if args.frames < 30:
        opts.notes.append(f"quick run: {args.frames} frames (the committed results use >= 30)")
    sections = ("fusion", "pipeline") if args.what == "all" else (args.what,)

    def progress(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    jpath, mpath, result = run_bench(opts, sections, progress, args.name or f"bench_{args.what}")
    for k, v in result["summary"].items():
        print(f"{k}: {v:.3f}" if isinstance(v, float) else f"{k}: {v}")
    fusion = result.get("fusion")
    if fusion:
        ratio = fusion["ratio_backbone_over_seafusion_twin"]
        print(f"backbone ORT {fusion['ort_backbone_ms']['median']:.1f} ms, SeAFusion twin ORT "
              f"{fusion['ort_seafusion_twin_ms']['median']:.1f} ms (medians, {w}x{h}, {args.threads} threads): "
              f"backbone/twin {ratio['median_of_per_frame']:.3f} (median of per-frame ratios, same run)")
        for spec, v in fusion.get("variants", {}).items():
            print(f"{spec}: ORT {v['ort_ms']['median']:.1f} ms, /twin {v['ratio_over_seafusion_twin']['median_of_per_frame']:.3f}"
                  f" ({v['parameters']:,} parameters, {v['gflop_per_frame']:.2f} GFLOP)")
        print(f"load average (1/5/15 min): {fusion['loadavg']['start']} at start, {fusion['loadavg']['end']} at end")
    print(f"json: {jpath}\nmarkdown: {mpath}")
    return 0
