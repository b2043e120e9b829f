"""`ivif data check`: counts, sizes, class histogram and problems of a dataset folder."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

COMMAND = ("data", "check")
LAYOUTS = ("msrs", "m3fd", "llvip", "flat")
CLASS_MAP_NAMES = ("msrs", "llvip", "m3fd", "m3fd_to_msrs", "llvip_to_msrs")
HELP = "check a dataset folder (msrs, m3fd, llvip or flat layout): pairs, sizes, boxes per class, problems"


def add_arguments(p: argparse.ArgumentParser) -> None:
    # literal names keep `ivif --help` free of numpy imports; test_readers checks them against the readers
    p.add_argument("root", metavar="ROOT", nargs="?",
                   help="dataset folder; a bare name such as MSRS is also looked up under the data root")
    p.add_argument("--masks", metavar="DIR", help="instead: class histogram and box fill of an `ivif data masks` folder")
    p.add_argument("--layout", default="auto", choices=("auto", *LAYOUTS),
                   help="folder layout (auto: guess from the sub-folders)")
    p.add_argument("--set", "--label-set", dest="label_set", default=None,
                   help="only this box set (e.g. fusion, infrared, visible); default: every set found")
    p.add_argument("--split", action="append", default=None, help="only this split (train/test; repeatable)")
    p.add_argument("--class-map", default=None,
                   help=f"class map: a built-in ({', '.join(CLASS_MAP_NAMES)}) or a YAML file with 'classes' and 'map'")
    p.add_argument("--quick", action="store_true", help="read image headers only (no full decode)")
    p.add_argument("--max-problems", type=int, default=20, help="problems listed (all are counted)")
    p.add_argument("--json", metavar="FILE", help="also write the report as JSON")


def _resolve_root(root: str) -> Path:
    p = Path(root).expanduser()
    if p.is_dir():
        return p
    from ..paths import data_root

    q = data_root() / root
    return q if q.is_dir() else p


def _fmt_hist(counter) -> str:  # noqa: ANN001
    return ", ".join(f"{k} {v}" for k, v in counter.most_common()) or "none"


def run(args: argparse.Namespace) -> int:
    from ..data.check import check
    from ..data.readers import open_dataset

    if args.masks or not args.root:
        from ..data.pseudo_mask_folder import mask_report

        lines, code = mask_report(args.masks, args.json)
        print("\n".join(lines))
        return code
    root = _resolve_root(args.root)
    reader = open_dataset(root, args.layout, splits=args.split, label_set=args.label_set, class_map=args.class_map,
                          strict=False)
    if args.label_set:
        reader.label_sets = [args.label_set]

    def progress(done: int, total: int) -> None:
        if sys.stderr.isatty() and (done % 200 == 0 or done == total):
            print(f"\rchecking {done}/{total} pairs", end="" if done < total else "\n", file=sys.stderr)

    rep = check(reader, decode=not args.quick, progress=progress)
    print(f"dataset: {rep.root} (layout {rep.layout})")
    splits = "" if list(rep.splits) == ["-"] else " (" + ", ".join(f"{k} {v}" for k, v in sorted(rep.splits.items())) + ")"
    print(f"pairs: {rep.pairs}{splits}; unpaired images: {len(reader.unpaired)}")
    print("sizes (thermal WxH): " + (", ".join(f"{w}x{h} {n}" for (w, h), n in rep.sizes.most_common()) or "none"))
    print(f"classes: {', '.join(f'{i} {c}' for i, c in enumerate(rep.classes)) or 'none'}")
    print(f"box sets: {len(rep.sets)}" + (f" ({', '.join(rep.sets)})" if rep.sets else ""))
    for name, st in rep.sets.items():
        print(f"  {name}: {st.boxes} boxes in {st.files} label files ({st.empty} empty): {_fmt_hist(st.classes)}")
        dropped = sum(st.source_classes.values()) - st.boxes
        if dropped > 0:
            print(f"    dataset classes before the map: {_fmt_hist(st.source_classes)} ({dropped} dropped)")
    if reader.items and reader.mask_dir(reader.items[0]) is not None:
        print(f"segmentation masks: {rep.masks}")
    for w in rep.warnings:
        print(f"WARNING: {w}")
    counts = rep.problem_counts()
    if counts:
        print(f"problems: {len(rep.problems)} (" + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) + ")")
        for p in rep.problems[: args.max_problems]:
            print(f"  [{p.kind}] {p.message}")
        if len(rep.problems) > args.max_problems:
            print(f"  ... {len(rep.problems) - args.max_problems} more (--max-problems, --json)")
    else:
        print("problems: none")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(rep.to_dict(), indent=2))
        print(f"report: {args.json}")
    return 1 if rep.problems else 0
