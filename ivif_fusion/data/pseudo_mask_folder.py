"""Pseudo-masks for a whole dataset folder, and the summary of a folder of them.

:func:`write_pseudo_masks` runs :func:`~ivif_fusion.data.pseudo_masks.pseudo_mask` on every
labelled pair of a reader and writes, into one output folder:

- ``<name>.png``: the uint8 mask (0 background, 1 car, 2 person, 3 bike, 255 ignore), named
  like the source images;
- ``boxes.csv``: one row per box (pair, box index, class, pixel rectangle, fill, ignore, status);
- ``summary.json``: the options, the dataset and box set, and per-class statistics.

Nothing in these files depends on the time or the machine, so a rerun writes the same bytes.
:func:`summarize_masks` reads such a folder back for ``ivif data check --masks``.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ..imageops import normalize_thermal, normalize_visible
from .paired import read_image
from .pseudo_masks import (IGNORE, SEG_NAMES, BoxFill, PseudoMaskError, PseudoMaskOptions, mask_histogram, pseudo_mask,
                           seg_ids)

BOX_COLUMNS = ("name", "box", "class_id", "class", "x0", "y0", "x1", "y1", "fill", "ignore", "status")
_MSRS_NAME = re.compile(r"^\d{5}([DN])$")


def night_from_name(name: str) -> bool | None:
    """MSRS names end in N (night) or D (day); other names say nothing (None)."""
    m = _MSRS_NAME.match(name)
    return None if m is None else m.group(1) == "N"


@dataclass
class FolderSummary:
    """Statistics of a folder of pseudo-masks (what ``ivif data check --masks`` prints)."""

    masks: int = 0
    pixels: Counter = field(default_factory=Counter)  # label value -> pixels
    boxes: Counter = field(default_factory=Counter)  # class id -> boxes
    statuses: Counter = field(default_factory=Counter)  # status -> boxes
    fill: dict = field(default_factory=dict)  # class id -> mean fill fraction of its boxes
    box_ignore: dict = field(default_factory=dict)  # class id -> mean ignore fraction of its boxes
    by_time: dict = field(default_factory=dict)  # (class id, "day"|"night") -> (boxes, mean fill, mean ignore)
    problems: list = field(default_factory=list)

    def to_dict(self) -> dict:
        d = asdict(self)
        for k in ("pixels", "boxes", "statuses"):
            d[k] = {str(a): b for a, b in sorted(getattr(self, k).items(), key=lambda kv: str(kv[0]))}
        d["fill"] = {str(k): round(v, 4) for k, v in sorted(self.fill.items())}
        d["box_ignore"] = {str(k): round(v, 4) for k, v in sorted(self.box_ignore.items())}
        d["by_time"] = {f"{c} {t}": [n, round(f, 4), round(i, 4)] for (c, t), (n, f, i) in sorted(self.by_time.items())}
        return d

    def lines(self) -> list[str]:
        """Human-readable report lines."""
        total = sum(self.pixels.values()) or 1
        out = [f"pseudo-masks: {self.masks}",
               "pixels: " + ", ".join(f"{SEG_NAMES.get(v, v)} {100 * n / total:.2f} %"
                                      for v, n in sorted(self.pixels.items()))]
        for cid, n in sorted(self.boxes.items()):
            times = [f"{t} {self.by_time[cid, t][0]} boxes, fill {self.by_time[cid, t][1]:.3f}, "
                     f"ignore {self.by_time[cid, t][2]:.3f}" for t in ("day", "night") if (cid, t) in self.by_time]
            out.append(f"  {SEG_NAMES.get(cid, cid)}: {n} boxes, mean fill {self.fill[cid]:.3f}, "
                       f"mean ignore {self.box_ignore[cid]:.3f}" + (f" ({'; '.join(times)})" if times else ""))
        out.append("box status: " + ", ".join(f"{k} {v}" for k, v in sorted(self.statuses.items())))
        return out


def summarize_boxes(rows: Iterable[dict], summary: FolderSummary) -> None:
    """Add per-class box counts, mean fill and mean ignore fractions from box rows to ``summary``
    (also split by day and night where the pair names say which, as MSRS names do)."""
    values = defaultdict(list)  # class id or (class id, day|night) -> [(fill, ignore)]
    for r in rows:
        cid = int(r["class_id"])
        summary.boxes[cid] += 1
        summary.statuses[str(r["status"])] += 1
        pair = (float(r["fill"]), float(r["ignore"]))
        values[cid].append(pair)
        night = night_from_name(str(r["name"]))
        if night is not None:
            values[cid, "night" if night else "day"].append(pair)
    means = {k: np.mean(v, axis=0) for k, v in values.items()}
    summary.fill = {k: float(m[0]) for k, m in means.items() if isinstance(k, int)}
    summary.box_ignore = {k: float(m[1]) for k, m in means.items() if isinstance(k, int)}
    summary.by_time = {k: (len(values[k]), float(m[0]), float(m[1])) for k, m in means.items() if isinstance(k, tuple)}


def summarize_masks(folder: str | Path) -> FolderSummary:
    """Class histogram of every ``*.png`` mask in ``folder`` and the fill of each box in its ``boxes.csv``."""
    import cv2

    folder = Path(folder)
    if not folder.is_dir():
        raise PseudoMaskError(f"mask folder {folder} not found")
    summary = FolderSummary()
    for path in sorted(folder.glob("*.png")):
        m = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if m is None or m.ndim != 2 or m.dtype != np.uint8:
            summary.problems.append(f"{path}: not a single-channel 8-bit mask")
            continue
        summary.masks += 1
        summary.pixels.update(mask_histogram([m]))
    table = folder / "boxes.csv"
    if table.is_file():
        with table.open(newline="") as f:
            summarize_boxes(csv.DictReader(f), summary)
    else:
        summary.problems.append(f"{table} missing: no per-box fill statistics")
    return summary


def mask_report(folder: str | Path | None, json_path: str | Path | None = None) -> tuple[list[str], int]:
    """Report lines and exit code (1 when there are problems) of ``ivif data check --masks``."""
    if folder is None:
        raise PseudoMaskError("give a dataset folder (ROOT) or a pseudo-mask folder (--masks DIR)")
    summary = summarize_masks(folder)
    lines = [f"mask folder: {folder}", *summary.lines()]
    lines += [f"problem: {p}" for p in summary.problems]
    if json_path:
        Path(json_path).parent.mkdir(parents=True, exist_ok=True)
        Path(json_path).write_text(json.dumps(summary.to_dict(), indent=2, sort_keys=True) + "\n")
        lines.append(f"report: {json_path}")
    return lines, int(bool(summary.problems))


def _box_row(name: str, b: BoxFill) -> dict:
    return {"name": name, "box": b.index, "class_id": b.class_id, "class": SEG_NAMES[b.class_id],
            "x0": b.x0, "y0": b.y0, "x1": b.x1, "y1": b.y1, "fill": f"{b.fill:.4f}", "ignore": f"{b.ignore:.4f}",
            "status": b.status}


def read_mask(folder: str | Path, name: str, shape: tuple[int, int] | None = None) -> np.ndarray:
    """The (H, W) uint8 class-id mask ``<folder>/<name>.png``; a clear error when missing, not a
    single-channel 8-bit image, or not of ``shape``."""
    import cv2

    path = Path(folder) / f"{Path(name).stem}.png"
    if not path.is_file():
        raise PseudoMaskError(f"no mask {path} (write masks with `ivif data masks --out {folder}`)")
    m = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if m is None or m.ndim != 2 or m.dtype != np.uint8:
        raise PseudoMaskError(f"{path}: not a single-channel 8-bit mask")
    if shape is not None and m.shape != tuple(shape):
        raise PseudoMaskError(f"{path}: mask is {m.shape}, its pair is {tuple(shape)}")
    return m


def load_pair(record) -> tuple[np.ndarray, np.ndarray]:  # noqa: ANN001 - a readers.Record
    """Thermal (H, W) and visible (H, W, 3) of a record, as floats 0..1."""
    return normalize_thermal(read_image(record.thermal)), normalize_visible(read_image(record.visible))


def write_pseudo_masks(reader, out: str | Path, names: Iterable[str] | None = None,  # noqa: ANN001
                       options: PseudoMaskOptions | None = None,
                       progress: Callable[[Iterable], Iterable] | None = None) -> FolderSummary:
    """Write the pseudo-mask of every labelled pair of ``reader`` (or of ``names``) into ``out``.

    Pairs without a label file are skipped and counted (``summary.statuses['unlabelled']``); the
    reader's problems (unreadable or unparsable files) are listed in ``summary.problems``.
    """
    import cv2

    opts = options or PseudoMaskOptions()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    ids = seg_ids(reader.classes)
    wanted = None if names is None else set(names)
    items = [it for it in reader.items if wanted is None or it.name in wanted]
    summary, rows = FolderSummary(), []
    for item in (progress(items) if progress else items):
        rec = reader.record(item)
        if not rec.labelled:
            summary.statuses["unlabelled"] += 1
            continue
        thermal, visible = load_pair(rec)
        mask, fills = pseudo_mask(thermal, visible, rec.boxes, [ids[c] for c in rec.class_ids], opts,
                                  night=night_from_name(rec.name))
        ok, png = cv2.imencode(".png", mask)
        if not ok:
            raise PseudoMaskError(f"cannot encode the mask of '{rec.name}' as PNG")
        (out / f"{rec.name}.png").write_bytes(png.tobytes())
        summary.masks += 1
        summary.pixels.update(mask_histogram([mask]))
        rows += [_box_row(rec.name, b) for b in fills]
    summarize_boxes(rows, summary)
    summary.problems = [p.message for p in reader.problems]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, BOX_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    (out / "boxes.csv").write_text(buf.getvalue())
    meta = {"method": "box-supervised pseudo-masks (GrabCut in each box; docs/pseudo_masks.md)",
            "dataset": reader.root.name, "box_set": reader.label_set, "box_classes": list(reader.classes),
            "class_ids": {n: i for n, i in zip(reader.classes, ids)}, "ignore": IGNORE,
            "options": asdict(opts), **summary.to_dict()}
    (out / "summary.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return summary
