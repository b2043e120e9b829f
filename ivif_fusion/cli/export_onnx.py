"""`ivif export onnx`: the deployment graph (backbone + configured heads) as one ONNX file."""

from __future__ import annotations

import argparse

from ._common import add_set_option, parse_sets

COMMAND = ("export", "onnx")
HELP = ("export backbone + task heads to <pipeline.onnx_dir>/fusion.onnx (dynamic N/H/W, onnxslim, checksums) "
        "and each configured task network to task_<name>.onnx")


def add_arguments(p: argparse.ArgumentParser) -> None:
    from ..paths import CONFIG_DIR

    p.add_argument("--config", default=str(CONFIG_DIR / "multitask.yaml"), help="runtime config YAML")
    p.add_argument("--out", help="output folder (default: the config's pipeline.onnx_dir)")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset (17 or newer)")
    p.add_argument("--no-slim", action="store_true", help="skip the onnxslim simplification")
    p.add_argument("--no-verify", action="store_true", help="skip the ONNX Runtime vs torch parity check")
    p.add_argument("--no-tasks", action="store_true", help="do not export the configured task networks")
    add_set_option(p)


def run(args: argparse.Namespace) -> int:
    from ..config import load_runtime
    from ..paths import resolve
    from ..runtime.onnx_export import export_onnx, export_task_onnx
    from ..runtime.pipeline import build_fusion_graph

    cfg = load_runtime(args.config, parse_sets(args.set))
    pc = cfg.pipeline
    fusion = build_fusion_graph(pc)
    out = resolve(args.out) if args.out else resolve(pc.onnx_dir)
    res = export_onnx(fusion.graph, out, source_files=[str(fusion.weights_file)], opset=args.opset,
                      slim=not args.no_slim, verify=not args.no_verify)
    print(f"heads: {', '.join(res.head_names)}")
    print(f"weights sha256: {res.weights_sha256}")
    if res.parity:
        print("parity (max |ORT - torch|): " + ", ".join(f"{k}: {v:.1e}" for k, v in res.parity.items()))
    print(f"onnx: {res.path}\nsidecar: {res.sidecar}")
    if not args.no_tasks:
        from ..tasks import load_task

        for t in pc.task_configs():
            if t.kind not in ("detection", "segmentation") or not t.weights:
                continue
            adapter = load_task(resolve(t.weights))
            tres = export_task_onnx(adapter, out, t.name, source=str(resolve(t.weights)), opset=args.opset,
                                    verify=not args.no_verify)
            print(f"task network '{t.name}' ({t.kind}, raw output before NMS/argmax): {tres.path}")
    return 0
