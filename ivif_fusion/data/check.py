"""`ivif data check`: walk every pair of a dataset reader and report sizes, boxes, masks and problems."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from .readers import MSRS_MISALIGNED, LayoutReader
from .records import Problem, UnreadableFileError, image_size


@dataclass
class SetStats:
    """Box statistics of one box set."""

    files: int = 0
    empty: int = 0
    boxes: int = 0
    classes: Counter = field(default_factory=Counter)  # output class name -> boxes
    source_classes: Counter = field(default_factory=Counter)  # dataset class name -> boxes (before the map)


@dataclass
class CheckReport:
    """What :func:`check` found (printed by ``ivif data check``)."""

    root: Path
    layout: str
    pairs: int = 0
    splits: Counter = field(default_factory=Counter)
    sizes: Counter = field(default_factory=Counter)  # (W, H) of the thermal image -> pairs
    sets: dict[str, SetStats] = field(default_factory=dict)
    masks: int = 0
    problems: list[Problem] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    classes: tuple[str, ...] = ()

    def problem_counts(self) -> Counter:
        return Counter(p.kind for p in self.problems)

    def to_dict(self) -> dict:
        """Plain-data form (for ``--json``)."""
        return {
            "root": str(self.root), "layout": self.layout, "pairs": self.pairs, "splits": dict(self.splits),
            "sizes": {f"{w}x{h}": n for (w, h), n in sorted(self.sizes.items())},
            "classes": list(self.classes),
            "sets": {k: {"files": s.files, "empty": s.empty, "boxes": s.boxes, "classes": dict(s.classes),
                         "source_classes": dict(s.source_classes)} for k, s in self.sets.items()},
            "masks": self.masks, "problems": [{"kind": p.kind, "path": str(p.path), "message": p.message}
                                              for p in self.problems],
            "problem_counts": dict(self.problem_counts()), "warnings": list(self.warnings),
        }


def decoded_size(path: Path) -> tuple[int, int]:
    """(W, H) after a full decode (catches truncated files that a header read misses)."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            im.load()
            return im.size
    except (OSError, ValueError) as e:
        raise UnreadableFileError(f"cannot decode {path}: {e}") from e


def check(reader: LayoutReader, *, decode: bool = True, progress=None) -> CheckReport:  # noqa: ANN001
    """Walk every pair of a non-strict reader: sizes, readability, every box set, masks, warnings.

    Args:
        reader: a reader built with ``strict=False`` (problems are collected, not raised).
        decode: fully decode every image (slower; finds truncated files) instead of headers only.
        progress: optional callable(done, total) for long datasets.
    """
    if reader.strict:
        raise ValueError("check() needs a reader built with strict=False")
    rep = CheckReport(reader.root, reader.layout, classes=reader.classes)
    rep.sets = {s: SetStats() for s in reader.label_sets}
    misaligned = []
    n = len(reader.items)
    for k, item in enumerate(reader.items):
        rep.pairs += 1
        rep.splits[item.split or "-"] += 1
        sizes = []
        for path in (item.thermal, item.visible):
            try:
                sizes.append(decoded_size(path) if decode else image_size(path))
                reader.note_size(path, sizes[-1])
            except UnreadableFileError as e:
                reader.problem("unreadable", path, str(e))
        if len(sizes) == 2:
            rep.sizes[sizes[0]] += 1
            if sizes[0] != sizes[1]:
                reader.problem("size_mismatch", item.visible, f"pair '{item.name}': thermal is {sizes[0][0]}x{sizes[0][1]} "
                                f"but visible is {sizes[1][0]}x{sizes[1][1]}")
        for s, st in rep.sets.items():
            path = reader.label_path(item, s)
            before = len(reader.problems)
            boxes, ids = reader.boxes(item, s, source_hist=st.source_classes)
            if path is not None and path.is_file() and len(reader.problems) == before:
                st.files += 1
                st.empty += int(len(boxes) == 0)
            st.boxes += len(boxes)
            st.classes.update(reader.classes[i] for i in ids)
        mdir = reader.mask_dir(item)
        if mdir is not None:
            if (mdir / f"{item.name}.png").is_file():
                rep.masks += 1
            else:
                reader.problem("missing_mask", mdir / f"{item.name}.png", f"mask {mdir / (item.name + '.png')} "
                                f"missing for pair '{item.name}'")
        if item.name in MSRS_MISALIGNED:
            misaligned.append(item.name)
        if progress is not None:
            progress(k + 1, n)
    if misaligned:
        rep.warnings.append(f"{len(misaligned)} known-misaligned MSRS pair(s) with an 8-16 px residual IR/VI offset "
                            f"(MSRS_MISALIGNED): {', '.join(misaligned)}; prefer each modality's own box set for them")
    if not reader.label_sets:
        rep.warnings.append("no detection labels found")
    rep.problems = list(reader.problems)
    return rep
