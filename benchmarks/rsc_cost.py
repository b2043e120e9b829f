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

Usage: ``python benchmarks/rsc_cost.py [--runs 15] [--threads 2]``; writes
``benchmarks/rsc_cost.json`` and ``benchmarks/rsc_cost.md``.
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


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--height", type=int, default=480)
    ap.add_argument("--width", type=int, default=640)
    ap.add_argument("--out", default=str(HERE / "rsc_cost"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
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
    med = {k: statistics.median(v) for k, v in times.items()}
    fl = {k: flops(fn) for k, fn in fns.items()}
    res = {
        "size": f"{args.width}x{args.height}",
        "threads": args.threads,
        "runs": args.runs,
        "warmup": args.warmup,
        "median_ms": {k: round(v, 2) for k, v in med.items()},
        "min_ms": {k: round(min(v), 2) for k, v in times.items()},
        "time_ratio_vs_plain": {k: round(v / med["plain"], 3) for k, v in med.items()},
        "gflops": {k: round(v / 1e9, 3) for k, v in fl.items()},
        "flop_ratio_vs_plain": {k: round(v / fl["plain"], 3) for k, v in fl.items()},
        "params": {"backbone": count_parameters(vfn), "rsc": count_parameters(model.rsc)},
        "torch": torch.__version__,
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "cpus": os.cpu_count(),
        "target": "rsc / plain <= 1.3",
    }
    res["meets_target"] = res["time_ratio_vs_plain"]["rsc"] <= 1.3
    out = Path(args.out)
    out.with_suffix(".json").write_text(json.dumps(res, indent=2) + "\n")
    lines = [f"# RSC cost at {res['size']}, {args.threads} threads (median of {args.runs} interleaved runs)", "",
             "| variant | median ms | time / plain | GFLOPs | FLOPs / plain |", "|---|---|---|---|---|"]
    for k in fns:
        lines.append(f"| {k} | {res['median_ms'][k]} | {res['time_ratio_vs_plain'][k]} | {res['gflops'][k]} | "
                     f"{res['flop_ratio_vs_plain'][k]} |")
    lines += ["", f"Parameters: backbone {res['params']['backbone']:,}, RSC {res['params']['rsc']:,} "
                  "(one task, 256-d descriptor).",
              f"Target rsc / plain <= 1.3: {'met' if res['meets_target'] else 'NOT met'}. "
              "Command: `python benchmarks/rsc_cost.py`. See docs/rsc.md for what each variant includes.", ""]
    out.with_suffix(".md").write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
