"""Replay throughput: a 640x480 bag of MSRS eval-20 pairs through `ivif replay`'s path on 2 CPU threads.

Usage (from the repository root, with scripts/env.sh sourced):

    python benchmarks/replay_throughput.py [--pairs 40] [--max-sides 0 320] [--out benchmarks/replay_throughput]

Backends are tried in the order [onnxruntime, torch] (the graph is exported to a temporary folder
first, so ONNX Runtime is used whenever it is installed). A detection task is added when
``models/yolo_det_msrs.pt`` exists. Fusion metrics and sample frames are off, so the number is the
replay loop itself: read + decode + pairing + pipeline + output-bag writing. Uses the default
backbone (``ivif_fusion.paths.DEFAULT_BACKBONE``, VFN2) when present, else a randomly initialised
VFN2 of the same shape (speed does not depend on the weight values); ``--weights`` picks another
checkpoint (e.g. models/vfn_msrs.pt). Writes ``<out>.json`` and ``<out>.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TARGET = 8.0  # pairs/s


def _weights(tmp: Path, requested: str) -> tuple[Path, str]:
    from ivif_fusion.paths import DEFAULT_BACKBONE

    shipped = ROOT / (requested or DEFAULT_BACKBONE)
    if shipped.is_file():
        return shipped, str(shipped.relative_to(ROOT))
    if requested:
        raise SystemExit(f"--weights {requested}: no such file")
    import torch

    from ivif_fusion.models import checkpoint
    from ivif_fusion.models.backbones import build_backbone

    torch.manual_seed(0)
    net = build_backbone("vfn2")
    p = checkpoint.save(tmp / "backbone_random.pt", "vfn", net.cfg.to_dict(), net.state_dict())
    return p, f"random init, same shape as VFN2 ({DEFAULT_BACKBONE} not present)"


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=40, help="pairs in the bag (eval-20 names repeated)")
    ap.add_argument("--max-sides", type=int, nargs="+", default=[0, 320, 240], help="pipeline.max_side values")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--weights", default="", help="backbone checkpoint relative to the repository root "
                                                  "(default: the default backbone)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "replay_throughput"))
    args = ap.parse_args()

    from ivif_fusion.config import load_runtime
    from ivif_fusion.data.paired import PairedFolder
    from ivif_fusion.data.splits import msrs_split
    from ivif_fusion.io.fault_bag import MakeBagOptions, make_bag
    from ivif_fusion.paths import require_data_root
    from ivif_fusion.metrics.latency import stage_summaries
    from ivif_fusion.replay import package_versions, replay

    msrs = require_data_root() / "MSRS"
    names = msrs_split(PairedFolder(msrs).names, "eval")
    names = (names * (args.pairs // len(names) + 1))[: args.pairs]
    det = ROOT / "models" / "yolo_det_msrs.pt"
    runs = []
    notes: list[str] = []
    with tempfile.TemporaryDirectory(prefix="ivif_bench_") as td:
        tmp = Path(td)
        weights, weights_note = _weights(tmp, args.weights)
        bag = make_bag(msrs, tmp / "bag", MakeBagOptions(storage="sqlite3", jitter_ms=3, seed=0), names=names,
                       progress=False).bag
        tasks = [{"name": "fusion", "kind": "fusion"}]
        if det.is_file():
            tasks.append({"name": "detection", "kind": "detection", "weights": str(det),
                          "classes": ["person", "bicycle", "car"]})
        for max_side in args.max_sides:
            over = {"pipeline.backbone_weights": str(weights), "pipeline.backends": ["onnxruntime", "torch"],
                    "pipeline.threads": args.threads, "pipeline.max_side": max_side, "pipeline.tasks": tasks,
                    "pipeline.onnx_dir": str(tmp / "onnx"), "replay.metrics_pairs": 0, "replay.sample_frames": 0}
            cfg = load_runtime(None, over)
            try:
                from ivif_fusion.runtime.onnx_export import export_onnx
                from ivif_fusion.runtime.pipeline import build_fusion_graph

                if not (tmp / "onnx" / "fusion.onnx").is_file():
                    fusion = build_fusion_graph(cfg.pipeline)
                    export_onnx(fusion.graph, tmp / "onnx", source_files=[str(fusion.weights_file)], verify=False)
            except Exception as e:  # noqa: BLE001 - no ORT export: the torch fallback is measured and said so
                print(f"ONNX export failed ({e}); torch will be used", file=sys.stderr)
            from ivif_fusion.runtime.pipeline import Pipeline

            try:
                pipe = Pipeline.from_config(cfg)
            except Exception as e:  # noqa: BLE001 - e.g. a detector the pipeline cannot load yet: say so, go on
                if len(tasks) == 1:
                    raise
                notes.append(f"detection task not run: {type(e).__name__}: {e}")
                tasks = tasks[:1]
                over["pipeline.tasks"] = tasks
                cfg = load_runtime(None, over)
                pipe = Pipeline.from_config(cfg)
            load0 = os.getloadavg()[0]
            cpu0 = time.process_time()
            s = replay(bag, cfg, tmp / f"out_{max_side}", progress=False, pipeline=pipe)
            cpu_s = time.process_time() - cpu0  # all threads of this process, setup included
            load1 = os.getloadavg()[0]
            lat = stage_summaries(s.timings_ms)
            run = {"max_side": max_side, "image_size": s.image_size, "backend": s.backend,
                   "backend_notes": s.backend_notes, "tasks": [t["name"] for t in s.tasks],
                   "pairs_fused": s.pairs_fused, "wall_s": round(s.wall_s, 3),
                   "throughput_pairs_s": round(s.throughput_pairs_s, 3),
                   "pipeline_total_median_ms": round(lat["total"]["median"], 2),
                   "stages_median_ms": {k: round(v["median"], 2) for k, v in lat.items()},
                   "stages_p90_ms": {k: round(v["p90"], 2) for k, v in lat.items()},
                   "loadavg_1min_before_after": [round(load0, 2), round(load1, 2)],
                   # On a shared machine the wall clock includes waiting for other jobs; CPU seconds
                   # spread over the threads estimate what an otherwise idle machine would give
                   # (an upper bound: it assumes perfect use of both threads).
                   "cpu_s": round(cpu_s, 2),
                   "idle_estimate_pairs_s": round(s.pairs_fused / (cpu_s / args.threads), 3) if cpu_s > 0 else None,
                   "meets_target": s.throughput_pairs_s >= TARGET}
            runs.append(run)
            print(json.dumps(run))
    result = {"benchmark": "replay_throughput", "date": time.strftime("%Y-%m-%d %H:%M"), "target_pairs_s": TARGET,
              "bag": {"pairs": len(names), "source": "MSRS eval-20 pairs (640x480), repeated", "storage": "sqlite3",
                      "rate_hz": 10},
              "weights": weights_note, "detection_model": str(det.relative_to(ROOT)) if det.is_file() else None,
              "threads": args.threads, "machine": {"cpu": _cpu_name(), "cores": os.cpu_count(),
                                                   "python": platform.python_version()},
              "versions": package_versions(), "notes": notes, "runs": runs}
    out = Path(args.out)
    out.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")
    lines = ["# Replay throughput", "",
             f"{result['date']}: `python benchmarks/replay_throughput.py` on {result['machine']['cpu']} "
             f"({result['machine']['cores']} cores), {args.threads} threads; bag of {len(names)} MSRS eval-20 pairs "
             f"(640x480, sqlite3); weights: {weights_note}; detection: "
             f"{result['detection_model'] or 'not run (models/yolo_det_msrs.pt absent)'}. Target: >= {TARGET} pairs/s.",
             "", "*pairs/s* is fused pairs over the wall time of the replay loop (read, decode, pair, pipeline, "
                 "write the output bag). Other jobs may share the machine: the 1-min load average is shown, and *idle est.* "
                 "divides the pairs by the process CPU seconds per thread (setup included), an optimistic "
                 "estimate for an otherwise idle machine.",
             "", "| max_side | processed size | backend | tasks | pairs | pairs/s | idle est. pairs/s | "
                 "pipeline median ms | stage medians (ms) | 1-min load before/after | target met |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in runs:
        stages = ", ".join(f"{k} {v}" for k, v in r["stages_median_ms"].items() if k != "total")
        lines.append(f"| {r['max_side'] or 'full'} | {'x'.join(map(str, r['image_size'] or []))} | {r['backend']} | "
                     f"{', '.join(r['tasks'])} | {r['pairs_fused']} | {r['throughput_pairs_s']:.2f} | "
                     f"{r['idle_estimate_pairs_s']} | "
                     f"{r['pipeline_total_median_ms']:.1f} | {stages} | "
                     f"{r['loadavg_1min_before_after'][0]} / {r['loadavg_1min_before_after'][1]} | "
                     f"{'yes' if r['meets_target'] else 'no'} |")
    lines += [f"\nNote: {n}" for n in dict.fromkeys(notes)]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print(f"results -> {out.with_suffix('.json')} and {out.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
