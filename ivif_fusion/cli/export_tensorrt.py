"""`ivif export tensorrt`: a TensorRT engine from the exported ONNX, through the engine cache."""

from __future__ import annotations

import argparse

from ._common import add_set_option, parse_sets

COMMAND = ("export", "tensorrt")
HELP = "build (or reuse) a TensorRT engine for <pipeline.onnx_dir>/fusion.onnx in pipeline.engine_cache_dir"


def add_arguments(p: argparse.ArgumentParser) -> None:
    from ..paths import CONFIG_DIR

    p.add_argument("--config", default=str(CONFIG_DIR / "multitask.yaml"), help="runtime config YAML")
    p.add_argument("--onnx", help="ONNX file (default: <pipeline.onnx_dir>/fusion.onnx)")
    p.add_argument("--cache", help="engine cache folder (default: pipeline.engine_cache_dir)")
    p.add_argument("--precision", choices=("fp16", "fp32"), default="fp16", help="engine precision")
    p.add_argument("--min", default="1x64x64", help="smallest input, NxHxW")
    p.add_argument("--opt", default="1x480x640", help="input size the engine is tuned for, NxHxW")
    p.add_argument("--max", default="1x1088x1920", help="largest input, NxHxW")
    p.add_argument("--workspace-mib", type=int, default=1024, help="TensorRT builder workspace (MiB)")
    add_set_option(p)


def run(args: argparse.Namespace) -> int:
    from ..config import load_runtime
    from ..paths import resolve
    from ..runtime.engine_cache import Profile
    from ..runtime.graph_check import ONNX_NAME
    from ..runtime.tensorrt_engine import ensure_engine

    cfg = load_runtime(args.config, parse_sets(args.set))
    onnx_path = resolve(args.onnx) if args.onnx else resolve(cfg.pipeline.onnx_dir) / ONNX_NAME
    if not onnx_path.is_file():
        raise FileNotFoundError(f"{onnx_path} not found: run `ivif export onnx` first")
    profile = Profile(Profile.parse(args.min), Profile.parse(args.opt), Profile.parse(args.max))
    cache = resolve(args.cache) if args.cache else resolve(cfg.pipeline.engine_cache_dir)
    res = ensure_engine(onnx_path, cache, args.precision, profile, args.workspace_mib)
    for n in res.notes:
        print(f"note: {n}")
    print(f"engine ({res.status}, {res.key.precision}, TensorRT {res.key.tensorrt_version}, {res.key.gpu_name} "
          f"sm {res.key.compute_capability}): {res.path}")
    return 0
