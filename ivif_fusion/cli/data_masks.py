"""`ivif data masks`: box-supervised pseudo-masks (GrabCut inside each box) for a dataset, written to a folder."""

from __future__ import annotations

import argparse
from pathlib import Path

COMMAND = ("data", "masks")
HELP = ("write box-supervised pseudo-masks (GrabCut in each detection box; 0 background, 1 car, 2 person, "
        "3 bike, 255 ignore) for a dataset; not human masks")
SPLITS = ("all", "eval", "guard", "train", "val", "trainval")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True, help="output folder (refused inside the data root; keep it out of git)")
    p.add_argument("--dataset", default="MSRS",
                   help="dataset folder, or a name (MSRS, LLVIP) looked up under the data root")
    p.add_argument("--set", "--label-set", dest="label_set", default=None,
                   help="box set (MSRS: fusion, infrared, visible); default: fusion when present")
    p.add_argument("--split", default="all", choices=SPLITS,
                   help="MSRS frame-range split (ivif_fusion/data/splits.py); other datasets: all")
    p.add_argument("--figure", metavar="PNG", help="also draw the overlay figure of 12 pairs (day and night, each class)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def _inside(path: Path, folder: Path) -> bool:
    path, folder = path.resolve(), folder.resolve()
    return path == folder or folder in path.parents


def run(args: argparse.Namespace) -> int:
    from ..data.pseudo_mask_folder import write_pseudo_masks
    from ..data.pseudo_masks import PseudoMaskError
    from ..data.readers import open_dataset
    from ..data.splits import msrs_split
    from ..paths import data_root

    root = Path(args.dataset).expanduser()
    if not root.is_dir():
        root = data_root() / args.dataset
    out = Path(args.out).expanduser()
    for folder in (data_root(), root):
        if folder.is_dir() and _inside(out, folder):
            raise PseudoMaskError(f"--out {out} is inside {folder}: the shared data is read-only here, "
                                  "write pseudo-masks to a folder of your own (e.g. runs/pseudo_masks)")
    reader = open_dataset(root, "auto", label_set=args.label_set, strict=False)
    names = [it.name for it in reader.items]
    if args.split != "all":
        names = msrs_split(names, args.split)
    progress = None
    if not args.no_progress:
        from tqdm import tqdm

        def progress(items):  # noqa: ANN001, ANN202
            return tqdm(items, desc="pseudo-masks", unit="pair")

    summary = write_pseudo_masks(reader, out, names, progress=progress)
    print(f"dataset: {reader.root} (box set {reader.label_set})")
    print("\n".join(summary.lines()))
    for problem in summary.problems:
        print(f"WARNING: {problem}")
    print("these are box-supervised pseudo-masks: mIoU against them measures agreement with the method "
          "(docs/pseudo_masks.md), not segmentation mIoU")
    print(f"masks: {out}\nper-box table: {out / 'boxes.csv'}\nsummary: {out / 'summary.json'}")
    if args.figure:
        from ..data.pseudo_mask_figure import pick_pairs, render_figure
        from ..data.pseudo_masks import seg_ids

        wanted = set(names)
        records = [reader.record(it) for it in reader.items if it.name in wanted]
        chosen = pick_pairs(records, seg_ids(reader.classes))
        print(f"figure: {render_figure(chosen, reader.classes, args.figure)} "
              f"({', '.join(r.name for r in chosen)})")
    return 0
