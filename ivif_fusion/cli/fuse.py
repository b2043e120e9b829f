"""`ivif fuse`: fuse a paired folder into colour PNGs (one per pair and task, same names)."""

from __future__ import annotations

import argparse
from pathlib import Path

COMMAND = ("fuse",)
HELP = "fuse thermal/visible pairs of a folder (ir/, vi/) into colour fused PNGs"


def add_arguments(p: argparse.ArgumentParser) -> None:
    from ..paths import CONFIG_DIR

    p.add_argument("--pairs", required=True, help="folder with ir/ and vi/ (identical file names)")
    p.add_argument("--out", required=True, help="output folder (one sub-folder per task when several tasks)")
    p.add_argument("--config", default=str(CONFIG_DIR / "multitask.yaml"), help="runtime config YAML")
    p.add_argument("--weights", help="backbone checkpoint (overrides pipeline.backbone_weights)")
    p.add_argument("--task", action="append", default=[],
                   help="only this configured task (repeatable); default: every task, one sub-folder each")
    p.add_argument("--names", nargs="*", help="only these pair file names")
    p.add_argument("--split", choices=["eval", "train", "val", "all"], default="all",
                   help="MSRS frame-range split to fuse (MSRS names only)")
    p.add_argument("--resize", action="store_true", help="resize visible images to the thermal size when they differ")
    p.add_argument("--rule", choices=["vfn", "mean", "max"], default="vfn",
                   help="fusion rule: the configured pipeline (vfn), or a pixel baseline on Y (mean, max) "
                        "recombined with the visible colour")
    p.add_argument("--set", metavar="KEY=VALUE", action="append", default=[], help="override a config key")


def run(args: argparse.Namespace) -> int:
    import sys

    import cv2
    from tqdm import tqdm

    from ..config import load_runtime
    from ..data.paired import PairedFolder
    from ..data.splits import msrs_split
    from ..runtime.pipeline import Pipeline
    from ._common import parse_sets

    overrides = parse_sets(args.set)
    if args.weights:
        overrides["pipeline.backbone_weights"] = str(Path(args.weights).resolve())
    cfg = load_runtime(args.config, overrides)
    if args.task:
        known = [t.name for t in cfg.pipeline.tasks]
        unknown = [t for t in args.task if t not in known]
        if unknown:
            print(f"ERROR: unknown task(s) {unknown}; configured: {known}", file=sys.stderr)
            return 1
        cfg.pipeline.tasks = [t for t in cfg.pipeline.tasks if t.name in args.task]
    folder = PairedFolder(args.pairs, names=args.names, resize_mismatched=args.resize)
    names = folder.names if args.split == "all" else msrs_split(folder.names, args.split)
    if not names:
        print(f"ERROR: no pairs to fuse in {args.pairs} (split {args.split})")
        return 1
    out = Path(args.out)
    if args.rule != "vfn":
        return _baseline(folder, names, out, args.rule)
    pipe = Pipeline.from_config(cfg)
    tasks = pipe.task_names
    dirs = {t: (out / t if len(tasks) > 1 else out) for t in tasks}
    for d in dirs.values():
        d.mkdir(parents=True, exist_ok=True)
    for name in tqdm(names, desc="fuse", unit="pair"):
        s = folder.load(name)
        outputs, _ = pipe.run_arrays(s.thermal, s.visible)
        for t, o in outputs.items():
            target = dirs[t] / (Path(name).stem + ".png")
            if not cv2.imwrite(str(target), o.fused_rgb[..., ::-1]):
                print(f"ERROR: cannot write {target}")
                return 1
    print(f"fused {len(names)} pair(s) with backend '{pipe.backend.name}' -> {out}")
    return 0


def _baseline(folder, names, out: Path, rule: str) -> int:  # noqa: ANN001
    """Pixel-mean / pixel-max of thermal and visible Y, with the visible colour (reference rules)."""
    import cv2
    import numpy as np
    from tqdm import tqdm

    from ..colour import recombine
    from ..colour import luminance
    from ..imageops import to_uint8

    out.mkdir(parents=True, exist_ok=True)
    for name in tqdm(names, desc=f"fuse ({rule})", unit="pair"):
        s = folder.load(name)
        y = luminance(s.visible)
        fy = (s.thermal + y) / 2 if rule == "mean" else np.maximum(s.thermal, y)
        cv2.imwrite(str(out / (Path(name).stem + ".png")), to_uint8(recombine(fy, s.visible))[..., ::-1])
    print(f"fused {len(names)} pair(s) with the pixel-{rule} rule -> {out}")
    return 0
