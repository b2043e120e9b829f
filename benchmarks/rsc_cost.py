"""Cost of RSC-customized fusion versus the plain backbone at 640x480 (CPU, 2 threads by default).

Measured variants, one 640x480 pair (batch 1), eval mode, ``torch.inference_mode``:

- ``plain``: ``VFN.forward`` (encode + fuse + decode): the generic fused Y.
- ``rsc``: customized fusion for one task: encode + RSC (task descriptor given) + fuse + decode.
- ``rsc_nodesc``: the same with the RSC's stored mean descriptor (no task descriptor passed).
- ``per_extra_task``: what each further task adds once the encoders have run: RSC + fuse + decode.
- ``closed_loop``: generic fusion + RSC + fuse + decode for one task, i.e. everything fusion-side
  when the descriptor comes from the task network on the generic image (the task network's
  ``features`` call itself is task-network cost and is not included).

Timing: the variants are run interleaved (round robin) so that load from other processes
affects them alike; the median over ``--runs`` rounds after ``--warmup`` rounds is reported,
and the ratios are of medians. FLOPs: ``torch.utils.flop_counter.FlopCounterMode`` (convolutions
and matrix products, 2 FLOPs per multiply-add; elementwise ops are not counted).

``--arch vfn2`` measures the context RSC of the vfn2 backbone instead, in ONNX Runtime (the
deployment runtime; graphs exported with :func:`ivif_fusion.runtime.onnx_export.export_rsc_onnx`,
each task on the RSC's stored mean descriptor, as the pipeline runs it), with the shipped
``models/vfn2_msrs.pt`` weights when present:

- ``plain``: the vfn2 backbone graph (``ir, y -> fused Y``).
- ``rsc_1task``: backbone + context RSC for one task.
- ``rsc_2task``: one graph with two task outputs: the shared part (detail path, context
  blocks) once, RSC + ``up`` + decoder + head per task. Target: ``rsc_2task / plain <= 1.3``.

``--rsc CKPT`` times a trained two-task RSC (``models/rsc_two_tasks_msrs.pt``) instead of a seeded one.

Usage: ``python benchmarks/rsc_cost.py [--arch vfn|vfn2] [--rsc CKPT] [--runs 15] [--threads 2]``; writes
``benchmarks/rsc_cost.json`` (the vfn run at the top level, the vfn2 run under ``"vfn2"``; each
run keeps the other's results) and ``benchmarks/rsc_cost.md`` (both).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from ivif_fusion.models.rsc import RSC, CustomizedFusion
from ivif_fusion.models.vfn import VFN, VFNConfig, count_parameters

HERE = Path(__file__).resolve().parent


def build(desc_dim: int = 256) -> tuple[VFN, CustomizedFusion]:
    torch.manual_seed(0)
    vfn = VFN(VFNConfig()).eval()
    rsc = RSC(vfn.cfg, ["detection"], desc_dim).eval()
    with torch.no_grad():
        rsc.gamma.fill_(0.1)  # cost does not depend on the values; a non-zero residual, as trained
    return vfn, CustomizedFusion(vfn, rsc).eval()


def variants(vfn: VFN, model: CustomizedFusion, ir: torch.Tensor, y: torch.Tensor, desc: torch.Tensor) -> dict:
    def per_extra_task_fn():
        return model.fuse_decode(*model.customize(f_ir, f_vi, "detection", desc))

    def closed_loop():
        a, b = model.encode(ir, y)
        generic = model.fuse_decode(a, b)
        return generic, model.fuse_decode(*model.customize(a, b, "detection", desc))

    with torch.inference_mode():
        f_ir, f_vi = model.encode(ir, y)
    return {
        "plain": lambda: vfn(ir, y),
        "rsc": lambda: model(ir, y, "detection", desc),
        "rsc_nodesc": lambda: model(ir, y, "detection"),
        "per_extra_task": per_extra_task_fn,
        "closed_loop": closed_loop,
    }


def flops(fn) -> int:
    with torch.inference_mode(), FlopCounterMode(display=False) as fc:
        fn()
    return int(fc.get_total_flops())


def cost_summary(times: dict[str, list[float]], fl: dict[str, int], backbone: torch.nn.Module,
                 rsc: torch.nn.Module) -> dict:
    """Median and min times (ms), GFLOPs, their ratios to ``plain``, and the parameter counts."""
    med = {k: statistics.median(v) for k, v in times.items()}
    return {
        "median_ms": {k: round(v, 2) for k, v in med.items()},
        "min_ms": {k: round(min(v), 2) for k, v in times.items()},
        "time_ratio_vs_plain": {k: round(v / med["plain"], 3) for k, v in med.items()},
        "gflops": {k: round(v / 1e9, 3) for k, v in fl.items()},
        "flop_ratio_vs_plain": {k: round(v / fl["plain"], 3) for k, v in fl.items()},
        "params": {"backbone": count_parameters(backbone), "rsc": count_parameters(rsc)},
    }


def measure_vfn(args: argparse.Namespace) -> dict:
    vfn, model = build()
    g = torch.Generator().manual_seed(1)
    ir = torch.rand(1, 1, args.height, args.width, generator=g)
    y = torch.rand(1, 1, args.height, args.width, generator=g)
    desc = torch.randn(1, 256, generator=g)
    fns = variants(vfn, model, ir, y, desc)
    times: dict[str, list[float]] = {k: [] for k in fns}
    with torch.inference_mode():
        for r in range(args.warmup + args.runs):
            for k, fn in fns.items():
                t = time.perf_counter()
                fn()
                if r >= args.warmup:
                    times[k].append((time.perf_counter() - t) * 1e3)
    fl = {k: flops(fn) for k, fn in fns.items()}
    res = {
        "size": f"{args.width}x{args.height}",
        "threads": args.threads,
        "runs": args.runs,
        "warmup": args.warmup,
        **cost_summary(times, fl, vfn, model.rsc),
        "torch": torch.__version__,
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "cpus": os.cpu_count(),
        "target": "rsc / plain <= 1.3",
    }
    res["meets_target"] = res["time_ratio_vs_plain"]["rsc"] <= 1.3
    return res


def build_vfn2(rsc_path: str = "", desc_dim: int = 256) -> tuple[torch.nn.Module, torch.nn.Module, str]:
    """vfn2 (shipped weights when present, else seeded random init) + a two-task context RSC: the trained one
    at ``rsc_path`` when given, else a seeded one of the same shape (the cost does not depend on the values)."""
    from ivif_fusion.models.checkpoint import load_backbone
    from ivif_fusion.models.rsc import customized_fusion, load_customized, make_rsc
    from ivif_fusion.models.vfn2 import VFN2

    torch.manual_seed(0)
    shipped = HERE.parent / "models" / "vfn2_msrs.pt"
    v2 = load_backbone(shipped) if shipped.is_file() else VFN2().eval()
    source = "models/vfn2_msrs.pt" if shipped.is_file() else "random init"
    if rsc_path:
        return v2, load_customized(rsc_path, v2).eval(), f"{source} + {rsc_path}"
    rsc = make_rsc(v2.cfg, ["detection", "segmentation"], desc_dim).eval()
    with torch.no_grad():
        rsc.gamma.fill_(0.1)  # a non-zero residual, as trained
    return v2, customized_fusion(v2, rsc).eval(), f"{source} + a seeded two-task context RSC"


def measure_vfn2(args: argparse.Namespace) -> dict:
    import tempfile

    import numpy as np
    import onnxruntime as ort

    from ivif_fusion.runtime.onnx_export import export_reference_onnx, export_rsc_onnx, rsc_task_graph

    load_start = [round(v, 2) for v in os.getloadavg()]
    v2, model, source = build_vfn2(args.rsc)
    tmp = Path(tempfile.mkdtemp(prefix="rsc_cost_"))
    paths = {"plain": export_reference_onnx(v2, tmp / "plain.onnx"),
             "rsc_1task": export_rsc_onnx(model, tmp, tasks=["detection"], name="rsc1.onnx").path,
             "rsc_2task": export_rsc_onnx(model, tmp, name="rsc2.onnx").path}
    so = ort.SessionOptions()
    so.intra_op_num_threads = args.threads
    sessions = {k: ort.InferenceSession(str(p), so, providers=["CPUExecutionProvider"]) for k, p in paths.items()}
    rng = np.random.default_rng(1)
    feed = {"ir": rng.random((1, 1, args.height, args.width), dtype=np.float32),
            "y": rng.random((1, 1, args.height, args.width), dtype=np.float32)}
    times: dict[str, list[float]] = {k: [] for k in sessions}
    for r in range(args.warmup + args.runs):
        for k, sess in sessions.items():
            t = time.perf_counter()
            sess.run(None, feed)
            if r >= args.warmup:
                times[k].append((time.perf_counter() - t) * 1e3)
    ir, y = torch.from_numpy(feed["ir"]), torch.from_numpy(feed["y"])
    fl = {"plain": flops(lambda: v2(ir, y)),
          "rsc_1task": flops(lambda: rsc_task_graph(model, ["detection"])[0](ir, y)),
          "rsc_2task": flops(lambda: rsc_task_graph(model)[0](ir, y))}
    res = {
        "arch": "vfn2", "runtime": f"onnxruntime {ort.__version__} (CPUExecutionProvider, ORT_ENABLE_ALL)",
        "weights": source, "size": f"{args.width}x{args.height}", "threads": args.threads, "runs": args.runs,
        "warmup": args.warmup,
        **cost_summary(times, fl, v2, model.rsc),
        "load_average_1_5_15": {"start": load_start, "end": [round(v, 2) for v in os.getloadavg()]},
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(), "cpus": os.cpu_count(),
        "target": "rsc_2task / plain <= 1.3",
        "command": "python benchmarks/rsc_cost.py --arch vfn2" + (f" --rsc {args.rsc}" if args.rsc else ""),
        "descriptor_dims": dict(model.rsc.cfg.descriptor_dims),
    }
    res["meets_target"] = res["time_ratio_vs_plain"]["rsc_2task"] <= 1.3
    return res


def table(res: dict) -> list[str]:
    lines = ["| variant | median ms | time / plain | GFLOPs | FLOPs / plain |", "|---|---|---|---|---|"]
    for k in res["median_ms"]:
        lines.append(f"| {k} | {res['median_ms'][k]} | {res['time_ratio_vs_plain'][k]} | {res['gflops'][k]} | "
                     f"{res['flop_ratio_vs_plain'][k]} |")
    return lines


def markdown(res: dict) -> str:
    lines = [f"# RSC cost at {res['size']}, {res['threads']} threads (median of {res['runs']} interleaved runs)", "",
             "## vfn backbone, RSC on the encoder features (eager torch)", "", *table(res), "",
             f"Parameters: backbone {res['params']['backbone']:,}, RSC {res['params']['rsc']:,} "
             "(one task, 256-d descriptor).",
             f"Target rsc / plain <= 1.3: {'met' if res['meets_target'] else 'NOT met'}. "
             "Command: `python benchmarks/rsc_cost.py`. See docs/rsc.md for what each variant includes.", ""]
    v2 = res.get("vfn2")
    if v2:
        ld = v2["load_average_1_5_15"]
        lines += [f"## vfn2 backbone, context RSC ({v2['runtime']}, {v2['threads']} threads, {v2['size']}, "
                  f"median of {v2['runs']} interleaved runs)", "", *table(v2), "",
                  f"Weights: {v2['weights']}. Parameters: backbone {v2['params']['backbone']:,}, context RSC "
                  f"{v2['params']['rsc']:,} (task descriptors: {v2.get('descriptor_dims', {'detection': 256, 'segmentation': 256})}). "
                  "`rsc_2task` is one graph with both "
                  "task outputs: the shared part once, RSC and the backbone's tail per task.",
                  f"Machine load (1/5/15-min load average, {v2['cpus']} CPUs): {ld['start']} at start, "
                  f"{ld['end']} at end; other jobs shared the CPUs, so absolute times are inflated and the "
                  "ratios (interleaved runs) are what to read.",
                  f"Target rsc_2task / plain <= 1.3: {'met' if v2['meets_target'] else 'NOT met'} "
                  f"({v2['time_ratio_vs_plain']['rsc_2task']}). Command: `{v2.get('command', 'python benchmarks/rsc_cost.py --arch vfn2')}`.",
                  ""]
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", choices=("vfn", "vfn2"), default="vfn")
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--height", type=int, default=480)
    ap.add_argument("--width", type=int, default=640)
    ap.add_argument("--rsc", default="", help="vfn2: a trained two-task RSC checkpoint (default: a seeded one)")
    ap.add_argument("--out", default=str(HERE / "rsc_cost"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    old = json.loads(out.with_suffix(".json").read_text()) if out.with_suffix(".json").is_file() else {}
    if args.arch == "vfn":
        res = {**measure_vfn(args), **({"vfn2": old["vfn2"]} if "vfn2" in old else {})}
    else:
        res = {**old, "vfn2": measure_vfn2(args)}
    out.with_suffix(".json").write_text(json.dumps(res, indent=2) + "\n")
    text = markdown(res) if "median_ms" in res else "\n".join(table(res["vfn2"])) + "\n"
    out.with_suffix(".md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
