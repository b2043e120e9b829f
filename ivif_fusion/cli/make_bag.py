"""`ivif make-bag`: a ROS 2 bag (thermal + RGB topics) from a paired folder, with seeded jitter and faults."""

from __future__ import annotations

import argparse
from pathlib import Path

COMMAND = ("make-bag",)
HELP = "write a ROS 2 bag from a paired folder (ir/, vi/) with stamp jitter and injected faults"


def add_arguments(p: argparse.ArgumentParser) -> None:
    from ..io.fault_bag import MakeBagOptions

    d = MakeBagOptions()
    p.add_argument("--pairs", required=True, help="folder with ir/ and vi/ (identical file names)")
    p.add_argument("--out", required=True, help="bag folder to create (must not exist)")
    p.add_argument("--storage", choices=["sqlite3", "mcap"], default=d.storage, help="bag storage format")
    p.add_argument("--rate", type=float, default=d.rate_hz, help="camera rate in Hz (one pair per period)")
    p.add_argument("--jitter", type=float, default=d.jitter_ms,
                   help="std (ms) of each stream's header-stamp jitter, clipped at 2 std")
    p.add_argument("--drop", type=float, default=0.0, help="per-pair probability of dropping one frame")
    p.add_argument("--duplicate", type=float, default=0.0, help="per-pair probability of writing one frame twice")
    p.add_argument("--reorder", type=float, default=0.0,
                   help="per-pair probability of logging one frame after its successor")
    p.add_argument("--corrupt", type=float, default=0.0, help="per-pair probability of damaging one frame's data")
    p.add_argument("--seed", type=int, default=0, help="seed of jitter and fault draws")
    p.add_argument("--thermal-encoding", choices=["mono8", "mono16"], default="mono8", help="thermal Image encoding")
    p.add_argument("--compressed-visible", action="store_true", help="write the visible image as sensor_msgs/CompressedImage (JPEG)")
    p.add_argument("--labels", help="YOLO labels folder (<name>.txt; classes.txt here or in the parent): "
                                    "ground-truth boxes go into the sidecar")
    p.add_argument("--split", choices=["eval", "train", "val", "all"], default="all",
                   help="MSRS frame-range split to use (MSRS names only)")
    p.add_argument("--names", nargs="*", help="only these pair file names (in this order)")
    p.add_argument("--limit", type=int, default=0, help="use at most this many pairs (0 = all)")
    p.add_argument("--max-side", type=int, default=0, help="downscale images so the long side is at most this")
    p.add_argument("--thermal-topic", default=d.thermal_topic, help="thermal topic name")
    p.add_argument("--visible-topic", default=d.visible_topic, help="visible image topic name")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from ..data.paired import PairedFolder
    from ..data.splits import msrs_split
    from ..io.fault_bag import MakeBagOptions, make_bag

    names = args.names
    if names is None:
        names = PairedFolder(args.pairs, strict=False).names
        if args.split != "all":
            try:
                names = msrs_split(names, args.split)
            except ValueError as e:
                print(f"ERROR: --split {args.split}: {e}")
                return 1
    if args.limit:
        names = names[: args.limit]
    if not names:
        print(f"ERROR: no pairs selected in {args.pairs} (split {args.split})")
        return 1
    opts = MakeBagOptions(storage=args.storage, rate_hz=args.rate, jitter_ms=args.jitter, drop=args.drop,
                          duplicate=args.duplicate, reorder=args.reorder, corrupt=args.corrupt, seed=args.seed,
                          thermal_encoding=args.thermal_encoding, compressed_visible=args.compressed_visible,
                          max_side=args.max_side, thermal_topic=args.thermal_topic, visible_topic=args.visible_topic)
    res = make_bag(args.pairs, args.out, opts, names=names, labels_dir=args.labels, progress=not args.no_progress)
    faults: dict[str, int] = {}
    for f in res.faults:
        faults[f.kind] = faults.get(f.kind, 0) + 1
    injected = ", ".join(f"{n} {k}" for k, n in sorted(faults.items())) or "none"
    print(f"wrote {res.pairs} pair(s) ({', '.join(f'{t}: {n}' for t, n in res.messages.items())} messages, "
          f"{args.storage}) -> {Path(res.bag)}")
    print(f"injected faults: {injected}; sidecar -> {res.sidecar}")
    return 0
