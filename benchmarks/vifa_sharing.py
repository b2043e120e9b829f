"""VIFA sharing benchmark: the real per-pair Pipeline with a 'vifa' checkpoint, 640x480, 2 threads.

Configurations, all run round-robin frame by frame (so machine load hits them alike):

- ``shared/N`` (N = 1, 2, 3): one Pipeline whose N tasks use ``customization: vifa``: preprocess,
  the backbone once, N one-layer heads, N colour recombinations.
- ``separate/N`` (N = 2, 3): N one-task Pipelines, each with its own copy of the network
  (backbone + that task's head): what deploying one full fusion network per task costs. The
  reference models of this project (VFN fine-tunes, RSC on the VFN) are at least this large, so
  this is a lower bound on the separate-networks cost.

Reported: the median per-pair ``total`` (ms) of each configuration, shared/3 / shared/1 (issue
target <= 1.15) and separate/N / shared/N (the speedup of sharing; VIFA reports 1.85-1.98x for
two tasks on a Jetson Nano). Task networks are not included (identical in both designs).

Usage: ``python benchmarks/vifa_sharing.py [--weights models/vifa_msrs.pt] [--frames 40]``;
writes benchmarks/vifa_sharing.json and .md. Without weights a seeded random 3-head student is
used (timing does not depend on the values).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ivif_fusion.bench import load_note  # noqa: E402 - after the path setup


def _pipeline(weights: Path, tasks: list[str], threads: int):  # noqa: ANN202
    from ivif_fusion.config import load_runtime
    from ivif_fusion.runtime.pipeline import Pipeline

    cfg = load_runtime(overrides={
        "pipeline.vifa_weights": str(weights), "pipeline.threads": threads, "pipeline.backends": ["torch"],
        "pipeline.tasks": [{"name": t, "kind": "fusion", "customization": "vifa"} for t in tasks]})
    return Pipeline.from_config(cfg)


def _frames(width: int, height: int, notes: list[str], count: int = 8) -> list:
    """The first ``count`` shared MSRS pairs at ``width`` x ``height`` (seeded noise without the data)."""
    import cv2

    from ivif_fusion.data.shared import open_shared
    from ivif_fusion.paths import data_root

    if not (data_root() / "MSRS" / "ir").is_dir():
        rng = np.random.default_rng(0)
        notes.append(f"inputs: {count} synthetic pairs (shared data not found)")
        return [(rng.random((height, width), dtype=np.float32), rng.random((height, width, 3), dtype=np.float32))
                for _ in range(count)]
    reader = open_shared(data_root(), "MSRS")
    pairs = []
    for item in reader.items[:count]:
        s = reader.load(item)
        ir, vi = s.thermal, s.visible
        if ir.shape != (height, width):
            ir = cv2.resize(ir, (width, height), interpolation=cv2.INTER_AREA)
            vi = cv2.resize(vi, (width, height), interpolation=cv2.INTER_AREA)
        pairs.append((ir.astype(np.float32), vi.astype(np.float32)))
    notes.append(f"inputs: {len(pairs)} MSRS pairs cycled ({width}x{height})")
    return pairs


def main(argv: list[str] | None = None) -> int:
    import torch

    from ivif_fusion.bench import machine_info
    from ivif_fusion.metrics.latency import latency_summary
    from ivif_fusion.models.vfn import VFN
    from ivif_fusion.models.vifa import build_student, head_parameters, load_vifa_model, save_vifa

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights", default=str(ROOT / "models" / "vifa_msrs.pt"))
    ap.add_argument("--frames", type=int, default=40)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "vifa_sharing"))
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    notes = []
    weights = Path(args.weights)
    tmp = Path(tempfile.mkdtemp(prefix="vifa_bench_"))
    if weights.is_file():
        model = load_vifa_model(weights)
        notes.append(f"weights: {weights.relative_to(ROOT) if weights.is_relative_to(ROOT) else weights}")
    else:
        torch.manual_seed(0)
        model = build_student(VFN(), ["detection", "segmentation", "fusion"])
        weights = save_vifa(tmp / "random_vifa.pt", model)
        notes.append("weights: seeded random 3-head student (models/vifa_msrs.pt not found)")
    tasks = [n for n in model.head_names][:3]
    if len(tasks) < 3:
        raise SystemExit(f"need a checkpoint with 3 heads, {weights} has {tasks}")
    head_p, bb_p = head_parameters(model)
    frames = _frames(640, 480, notes)
    configs = {f"shared/{n}": [_pipeline(weights, tasks[:n], args.threads)] for n in (1, 2, 3)}
    for n in (2, 3):
        configs[f"separate/{n}"] = [_pipeline(weights, [t], args.threads) for t in tasks[:n]]
    samples: dict[str, list[float]] = {k: [] for k in configs}
    stages: dict[str, list[float]] = {}
    info = machine_info()
    for i in range(args.warmup + args.frames):
        ir, rgb = frames[i % len(frames)]
        for name, pipes in configs.items():
            t = time.perf_counter()
            stage_t = {}
            for p in pipes:
                stage_t.update(p.run_arrays(ir, rgb)[1])
            if i >= args.warmup:
                samples[name].append((time.perf_counter() - t) * 1e3)
                if name == "shared/3":  # stage split of the 3-head pipeline: what a head costs
                    for k, v in stage_t.items():
                        stages.setdefault(k, []).append(v)
    info["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    res = {k: latency_summary(v) for k, v in samples.items()}
    med = {k: v["median"] for k, v in res.items()}
    summary = {
        "shared3_over_shared1": med["shared/3"] / med["shared/1"],
        "shared2_over_shared1": med["shared/2"] / med["shared/1"],
        "speedup_2_tasks": med["separate/2"] / med["shared/2"],
        "speedup_3_tasks": med["separate/3"] / med["shared/3"],
        "head_parameters": head_p, "backbone_parameters": bb_p,
        "head_percent_of_backbone": 100.0 * head_p / bb_p,
    }
    out = {"machine": info, "size": [640, 480], "threads": args.threads, "frames": args.frames,
           "tasks": tasks, "configs_ms": res, "shared3_stages_ms": {k: latency_summary(v) for k, v in stages.items()},
           "summary": summary, "notes": notes}
    Path(args.out + ".json").write_text(json.dumps(out, indent=1))
    lines = ["# VIFA sharing benchmark (Pipeline, torch, 640x480, "
             f"{args.threads} threads, {args.frames} frames round-robin)", "",
             f"Machine: {info['cpu_model']}, {info['usable_cpus']} usable CPUs, torch {info['torch']}; "
             f"load average {info['loadavg_start']} -> {info['loadavg_end']}: {load_note(info)}", "",
             "| configuration | median ms/pair | p90 ms |", "|---|---|---|"]
    for k, v in res.items():
        lines.append(f"| {k} | {v['median']:.1f} | {v['p90']:.1f} |")
    lines += ["", "| measure | value | target / reference |", "|---|---|---|",
              f"| shared: 3 heads / 1 head | {summary['shared3_over_shared1']:.3f} | <= 1.15 |",
              f"| shared: 2 heads / 1 head | {summary['shared2_over_shared1']:.3f} | |",
              f"| speedup, 2 tasks: 2 separate networks / shared + 2 heads | {summary['speedup_2_tasks']:.2f}x | "
              "VIFA: 1.85-1.98x (Jetson Nano) |",
              f"| speedup, 3 tasks: 3 separate networks / shared + 3 heads | {summary['speedup_3_tasks']:.2f}x | |",
              f"| one head, % of backbone parameters | {summary['head_percent_of_backbone']:.2f} % "
              f"({head_p} / {bb_p}) | |", "",
              "Stages of shared/3 (median ms, the pipeline's own timings): "
              + ", ".join(f"{k} {float(np.median(v)):.1f}" for k, v in stages.items()) + ".", "",
              "shared/N: one Pipeline, backbone once + N heads; separate/N: N one-task Pipelines, each a full "
              "network (backbone + head). Each total includes preprocess (BT.601) and per-task colour "
              "recombination; task networks excluded (identical in both designs).", ""]
    lines += [f"- {n}" for n in notes]
    Path(args.out + ".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
