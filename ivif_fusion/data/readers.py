"""Streaming, checked readers for the public infrared-visible dataset layouts.

Four layouts are understood (``LAYOUTS``):

``msrs``
    The official MSRS release: ``<root>/{train,test}/{ir,vi}/<name>.png``, segmentation
    masks in ``<root>/<split>/Segmentation_labels/<name>.png`` and detection boxes as YOLO
    txt. Boxes are looked for, first match wins, in ``<split>/labels_det/<set>/``,
    ``labels_det/<set>/<split>/`` (how ``Lele-3/MSRS-detection-label`` is organised, with
    the sets ``infrared``, ``visible``, ``fusion``), ``<split>/labels_det/`` and
    ``<split>/labels/`` (one unnamed set, called ``default``).
``m3fd``
    M3FD (TarDAL): ``<root>/Ir/``, ``<root>/Vis/``, VOC xml in ``<root>/Annotation/``.
``llvip``
    LLVIP: ``<root>/infrared/{train,test}/``, ``<root>/visible/{train,test}/``, VOC xml in
    ``<root>/Annotations/`` (one folder for both splits).
``flat``
    The shared data's layout (:mod:`ivif_fusion.data.paired`): ``<root>/ir``, ``<root>/vi``,
    YOLO txt in ``labels_det/<set>/`` (several sets, MSRS) or directly in ``labels_det/``
    (one set, LLVIP), class names in ``labels_det/classes.txt`` (``0 person`` or ``person``
    per line), optional masks in ``labels_seg/``.

A reader lists and pairs the images when it is built (cheap: directory listings only) and
then *streams* :class:`Record` objects: labels are parsed and image headers read only when a
record is produced. With ``strict=True`` (the default) the first problem raises a
:class:`LayoutError` subclass whose message names the offending file; with
``strict=False`` problems are collected in ``reader.problems`` and the affected record
carries no boxes. :func:`ivif_fusion.data.check.check` walks a whole reader for
``ivif data check``; :mod:`ivif_fusion.data.shared` opens the shared data's folders for the
training and evaluation jobs.

Class maps are configuration (:mod:`ivif_fusion.data.classes`). Records, problems and errors
are in :mod:`ivif_fusion.data.records`.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import ClassVar

import numpy as np

from .classes import CLASS_MAPS, M3FD_CLASSES, MSRS_CLASSES, ClassMap, load_class_map
from .labels import LabelError, read_classes, read_yolo, yolo_to_xyxy
from .paired import PairedFolder, PairError, Sample
from .records import (DEFAULT_SET, ERROR_KINDS, BadLabelError, Item, LayoutError, MissingLabelError, Problem, Record,
                      UnreadableFileError, empty_boxes, image_size, images_in, read_voc)

log = logging.getLogger(__name__)

# MSRS pairs with an 8-16 px residual IR/VI offset, found by the ±20 px shift search on
# every 8th pair described in ../shared/data/ivif/MSRS/README.md ("Third pass, continued").
# The list is a lower bound: only 46 of the 365 pairs were surveyed. Boxes of one
# modality's set can be off by that much in the other modality.
MSRS_MISALIGNED: tuple[str, ...] = ("00036N", "00237D", "00571D", "01148N", "01344N")

LAYOUTS = ("msrs", "m3fd", "llvip", "flat")


# --------------------------------------------------------------------------- readers


class LayoutReader:
    """Base of the layout readers: pairing, label sets, class maps, strict/collecting errors.

    Args:
        root: dataset folder.
        splits: splits to read (layouts with splits); default: every split present.
        label_set: box set to attach to records (layouts with several); default: ``fusion``
            when present (fused images are what this project detects on), else the only or
            first set.
        class_map: :class:`ClassMap`, built-in name or YAML path; default: the layout's.
        strict: raise on the first problem (default) or collect them in ``problems``.
        skip_unpaired: an image without a partner is left out, counted in ``unpaired`` and
            logged, instead of being a problem (what training and evaluation want: the pairs
            that exist, and label problems still raise).
    """

    layout: ClassVar[str] = ""
    default_class_map: ClassVar[str] = ""
    label_format: ClassVar[str] = "yolo"  # or "voc"

    def __init__(self, root: str | Path, *, splits: Sequence[str] | None = None, label_set: str | None = None,
                 class_map: str | Path | ClassMap | None = None, strict: bool = True,
                 skip_unpaired: bool = False) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise LayoutError(f"dataset folder {self.root} not found")
        self.strict = strict
        self.skip_unpaired = skip_unpaired
        self.problems: list[Problem] = []
        self.unpaired: list[Path] = []
        self._sizes: dict[Path, tuple[int, int]] = {}
        self.splits = self._find_splits(splits)
        self.items: list[Item] = self._list()
        if self.unpaired and skip_unpaired:
            log.warning("%s: %d unpaired image(s) left out (first: %s)", self.root, len(self.unpaired), self.unpaired[0])
        self.label_sets: list[str] = self._find_label_sets()
        if label_set is not None and label_set not in self.label_sets:
            raise LayoutError(f"box set '{label_set}' not found in {self.root} "
                              f"(found: {', '.join(self.label_sets) or 'no labels'})")
        self.label_set = label_set or self._default_set()
        cmap = load_class_map(class_map)
        self.source_classes = self._source_classes()
        self.class_map = cmap or (CLASS_MAPS[self.default_class_map] if self.default_class_map
                                  else ClassMap.identity(self.source_classes))

    # -- layout-specific parts
    # Layouts with split sub-folders set ``split_names``, ``missing_splits`` and ``_split_dirs``.
    split_names: tuple[str, ...] = ()
    missing_splits = ""

    def _split_dirs(self, split: str) -> tuple[Path, Path]:
        raise NotImplementedError

    def _find_splits(self, splits: Sequence[str] | None) -> list[str]:
        if not self.split_names:
            return [""]
        found = [s for s in self.split_names if self._split_dirs(s)[0].is_dir()]
        if not found:
            raise LayoutError(f"{self.root} is not an {self.layout.upper()} release: {self.missing_splits}")
        if splits is None:
            return found
        for s in splits:
            if s not in found:
                raise LayoutError(f"split '{s}' not found in {self.root} (found: {', '.join(found)})")
        return list(splits)

    def _list(self) -> list[Item]:
        if not self.split_names:
            raise NotImplementedError
        items = []
        for s in self.splits:
            items += self._pair(*self._split_dirs(s), s)
        return items

    def _find_label_sets(self) -> list[str]:
        return []

    def label_path(self, item: Item, label_set: str) -> Path | None:
        return None

    def mask_dir(self, item: Item) -> Path | None:
        return None

    def _source_classes(self) -> list[str]:
        return []

    # -- shared machinery
    @property
    def classes(self) -> tuple[str, ...]:
        """Output class names (index = class id in records)."""
        return self.class_map.classes

    def _default_set(self) -> str | None:
        if not self.label_sets:
            return None
        return "fusion" if "fusion" in self.label_sets else self.label_sets[0]

    def problem(self, kind: str, path: Path, message: str) -> None:
        """Raise the error of ``kind`` (strict reader) or collect the problem."""
        if kind == "unpaired" and self.skip_unpaired:
            return
        if self.strict:
            raise ERROR_KINDS[kind](message)
        self.problems.append(Problem(kind, path, message))

    def _pair(self, ir_dir: Path, vi_dir: Path, split: str = "") -> list[Item]:
        """Pair two folders by file stem; unpaired files are problems naming the file."""
        for d in (ir_dir, vi_dir):
            if not d.is_dir():
                raise LayoutError(f"{self.root} is not a '{self.layout}' dataset: folder {d} missing")
        thermal, visible = images_in(ir_dir), images_in(vi_dir)
        for stem in sorted(set(thermal) ^ set(visible)):
            path, other = (thermal[stem], vi_dir) if stem in thermal else (visible[stem], ir_dir)
            self.unpaired.append(path)
            self.problem("unpaired", path, f"unpaired image {path}: no '{stem}.*' in {other}")
        return [Item(s, thermal[s], visible[s], split) for s in sorted(set(thermal) & set(visible))]

    def size_of(self, path: Path) -> tuple[int, int]:
        """(W, H) of an image from its header (cached)."""
        if path not in self._sizes:
            self._sizes[path] = image_size(path)
        return self._sizes[path]

    def note_size(self, path: Path, size: tuple[int, int]) -> None:
        """Remember the (W, H) of an image measured elsewhere (a full decode)."""
        self._sizes[path] = size

    def map_onto(self, classes: Sequence[str]) -> None:
        """Map this dataset's classes by name onto ``classes`` (others dropped): :meth:`ClassMap.onto`."""
        self.class_map = ClassMap.onto(self.source_classes, classes, str(self.root))

    def __len__(self) -> int:
        return len(self.items)

    def __iter__(self) -> Iterator[Record]:
        for item in self.items:
            yield self.record(item)

    def record(self, item: Item) -> Record:
        """The :class:`Record` of one listed item (reads its label file and, for YOLO, the image header)."""
        path = self.label_path(item, self.label_set) if self.label_set is not None else None
        before = len(self.problems)
        boxes, ids = self.boxes(item) if path is not None else empty_boxes()
        # a missing or broken label file (non-strict) means "not labelled", not "no objects"
        labelled = path is not None and path.is_file() and len(self.problems) == before
        mask = None
        mdir = self.mask_dir(item)
        if mdir is not None:
            mask = mdir / f"{item.name}.png"
            if not mask.is_file():
                self.problem("missing_mask", mask, f"mask {mask} missing for pair '{item.name}'")
                mask = None
        return Record(item.name, item.thermal, item.visible, boxes, ids, item.split, mask, self._sizes.get(item.thermal), labelled)

    def boxes(self, item: Item, label_set: str | None = None,
              source_hist: Counter | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(K, 4) pixel boxes and (K,) class ids of one item in a box set (problems -> empty boxes).

        ``source_hist``, when given, counts every box by its dataset class name, before the map.
        """
        label_set = label_set or self.label_set
        path = self.label_path(item, label_set) if label_set else None
        if path is None:
            return empty_boxes()
        if not path.is_file():
            self.problem("missing_label", path, f"label file {path} missing for pair '{item.name}'"
                          + (f" (box set '{label_set}')" if label_set != DEFAULT_SET else ""))
            return empty_boxes()
        try:
            if self.label_format == "voc":
                names, xyxy, _ = read_voc(path)
            else:
                raw = read_yolo(path)
                try:
                    w, h = self.size_of(item.thermal)
                except UnreadableFileError as e:
                    self.problem("unreadable", item.thermal, str(e))
                    return empty_boxes()
                xyxy = yolo_to_xyxy(raw, w, h)[:, 1:] if len(raw) else np.zeros((0, 4), np.float32)
                names = self._yolo_names(path, raw)
        except LabelError as e:
            kind = "missing_label" if isinstance(e, MissingLabelError) else "bad_label"
            self.problem(kind, path, str(e) if isinstance(e, LayoutError) else f"{e}")
            return empty_boxes()
        keep, ids = [], []
        for i, n in enumerate(names):
            if source_hist is not None:
                source_hist[n] += 1
            try:
                t = self.class_map.target(n)
            except KeyError:
                self.problem("unknown_class", path, f"{path}: class '{n}' is not in the class map "
                              f"(classes {list(self.classes)}; add it to the map or map it to null)")
                return empty_boxes()
            if t is not None:
                keep.append(i)
                ids.append(t)
        return xyxy[keep].astype(np.float32).reshape(-1, 4), np.array(ids, np.int64)

    def _yolo_names(self, path: Path, raw: np.ndarray) -> list[str]:
        """Dataset class names of the rows of a YOLO file (BadLabelError for an id outside classes.txt)."""
        names = []
        for i, c in enumerate(raw[:, 0]):
            if c != int(c) or not 0 <= int(c) < len(self.source_classes):
                raise BadLabelError(f"{path}: line {i + 1}: class id {c:g} is not one of 0.."
                                    f"{len(self.source_classes) - 1} ({', '.join(self.source_classes)})")
            names.append(self.source_classes[int(c)])
        return names

    def yolo_rows(self, item: Item) -> np.ndarray:
        """(K, 5) float32 ``class id, cx, cy, w, h`` (normalized, as in the file) of a YOLO layout's box
        set, class ids through the class map, dropped classes left out; a problem raises (strict)."""
        if self.label_format != "yolo" or self.label_set is None:
            raise LayoutError(f"{self.root}: no YOLO box set to read")
        path = self.label_path(item, self.label_set)
        try:
            raw = read_yolo(path)
            names = self._yolo_names(path, raw)
            ids = [self.class_map.target(n) for n in names]
        except KeyError as e:
            raise BadLabelError(f"{path}: class {e} is not in the class map (classes {list(self.classes)})") from None
        except LabelError as e:
            if isinstance(e, LayoutError):
                raise
            raise (BadLabelError if path.is_file() else MissingLabelError)(str(e)) from None
        keep = [i for i, t in enumerate(ids) if t is not None]
        rows = raw[keep].copy()
        rows[:, 0] = [ids[i] for i in keep]
        return rows.reshape(-1, 5)


class MsrsReader(LayoutReader):
    """Official MSRS release: ``{train,test}/{ir,vi}``, ``Segmentation_labels``, YOLO boxes."""

    layout = "msrs"
    default_class_map = "msrs"
    split_names = ("train", "test")
    missing_splits = "no train/ir or test/ir folder (for <root>/ir + <root>/vi use --layout flat)"

    def _split_dirs(self, split: str) -> tuple[Path, Path]:
        return self.root / split / "ir", self.root / split / "vi"


    def _set_dirs(self, split: str) -> dict[str, Path]:
        """Box set -> folder of its txt files for one split (first matching convention wins)."""
        r = self.root
        for base in (r / split / "labels_det", r / "labels_det"):
            if base.is_dir():
                subs = sorted(d for d in base.iterdir() if d.is_dir())
                if subs:
                    return {d.name: (d / split if (d / split).is_dir() else d) for d in subs}
                if any(base.glob("*.txt")) and base.parent.name == split:
                    return {DEFAULT_SET: base}
        if (r / split / "labels").is_dir():
            return {DEFAULT_SET: r / split / "labels"}
        return {}

    def _find_label_sets(self) -> list[str]:
        self._dirs = {s: self._set_dirs(s) for s in self.splits}
        names = sorted({n for d in self._dirs.values() for n in d})
        return names

    def label_path(self, item: Item, label_set: str) -> Path | None:
        d = self._dirs.get(item.split, {}).get(label_set)
        return None if d is None else d / f"{item.name}.txt"

    def mask_dir(self, item: Item) -> Path | None:
        d = self.root / item.split / "Segmentation_labels"
        return d if d.is_dir() else None

    def _source_classes(self) -> list[str]:
        for split in self.splits:
            for d in self._dirs.get(split, {}).values():
                for c in (d / "classes.txt", d.parent / "classes.txt", d.parent.parent / "classes.txt"):
                    if c.is_file():
                        return read_classes(c)
        return list(MSRS_CLASSES)


class M3fdReader(LayoutReader):
    """M3FD: ``Ir/``, ``Vis/``, VOC xml ``Annotation/`` (6 classes)."""

    layout = "m3fd"
    default_class_map = "m3fd"
    label_format = "voc"

    def _list(self) -> list[Item]:
        return self._pair(self.root / "Ir", self.root / "Vis")

    def _find_label_sets(self) -> list[str]:
        return [DEFAULT_SET] if (self.root / "Annotation").is_dir() else []

    def label_path(self, item: Item, label_set: str) -> Path | None:
        return self.root / "Annotation" / f"{item.name}.xml"

    def _source_classes(self) -> list[str]:
        return list(M3FD_CLASSES)


class LlvipReader(LayoutReader):
    """LLVIP: ``infrared/{train,test}``, ``visible/{train,test}``, VOC xml ``Annotations/``."""

    layout = "llvip"
    default_class_map = "llvip"
    label_format = "voc"
    split_names = ("train", "test")
    missing_splits = "no infrared/train or infrared/test folder"

    def _split_dirs(self, split: str) -> tuple[Path, Path]:
        return self.root / "infrared" / split, self.root / "visible" / split


    def _find_label_sets(self) -> list[str]:
        return [DEFAULT_SET] if (self.root / "Annotations").is_dir() else []

    def label_path(self, item: Item, label_set: str) -> Path | None:
        return self.root / "Annotations" / f"{item.name}.xml"

    def _source_classes(self) -> list[str]:
        return ["person"]


class FlatReader(LayoutReader):
    """The shared data's layout: ``ir/``, ``vi/``, ``labels_det[/<set>]/`` YOLO txt, ``classes.txt``."""

    layout = "flat"

    def _list(self) -> list[Item]:
        try:  # the same pairing rule as `ivif fuse`
            folder = PairedFolder(self.root, strict=False, resize_mismatched=self.resize_mismatched)
        except PairError as e:
            raise LayoutError(str(e)) from e
        self.folder = folder
        for fname in folder.unpaired:
            in_ir = (self.root / "ir" / fname).exists()
            path = self.root / ("ir" if in_ir else "vi") / fname
            self.unpaired.append(path)
            self.problem("unpaired", path, f"unpaired image {path}: no '{fname}' in {self.root / ('vi' if in_ir else 'ir')}")
        return [Item(Path(n).stem, *folder.paths(n)) for n in folder.names]

    def __init__(self, root: str | Path, *, resize_mismatched: bool = False, **kwargs) -> None:  # noqa: ANN003
        """``resize_mismatched``: :meth:`load` resizes a visible image to its thermal partner's size."""
        self.resize_mismatched = resize_mismatched
        super().__init__(root, **kwargs)

    def load(self, item: Item) -> Sample:
        """The pixels of a pair (:meth:`PairedFolder.load`): thermal (H, W), visible (H, W, 3), float32 0..1."""
        return self.folder.load(item.thermal.name)

    def _find_label_sets(self) -> list[str]:
        base = self.root / "labels_det"
        if not base.is_dir():
            return []
        subs = sorted(d.name for d in base.iterdir() if d.is_dir())
        return subs or ([DEFAULT_SET] if any(base.glob("*.txt")) else [])

    def label_path(self, item: Item, label_set: str) -> Path | None:
        base = self.root / "labels_det"
        return (base if label_set == DEFAULT_SET else base / label_set) / f"{item.name}.txt"

    def mask_dir(self, item: Item) -> Path | None:
        d = self.root / "labels_seg"
        return d if d.is_dir() else None

    def _source_classes(self) -> list[str]:
        for c in (self.root / "labels_det" / "classes.txt", self.root / "classes.txt"):
            if c.is_file():
                return read_classes(c)
        if self.label_sets:
            raise LayoutError(f"{self.root} has labels_det/ but no classes.txt (one class name per line, "
                              "optionally '<id> <name>') in labels_det/ or the dataset folder")
        return []


READERS: dict[str, type[LayoutReader]] = {"msrs": MsrsReader, "m3fd": M3fdReader, "llvip": LlvipReader,
                                          "flat": FlatReader}


def detect_layout(root: str | Path) -> str:
    """Guess the layout of a dataset folder from its sub-folders."""
    r = Path(root)
    if (r / "ir").is_dir() and (r / "vi").is_dir():
        return "flat"
    if any((r / s / "ir").is_dir() for s in ("train", "test")):
        return "msrs"
    if (r / "Ir").is_dir() and (r / "Vis").is_dir():
        return "m3fd"
    if (r / "infrared").is_dir() and (r / "visible").is_dir():
        return "llvip"
    raise LayoutError(f"cannot tell the layout of {r}: expected ir/+vi/ (flat), train|test/ir (msrs), "
                      "Ir/+Vis/ (m3fd) or infrared/+visible/ (llvip); pass --layout")


def open_dataset(root: str | Path, layout: str = "auto", **kwargs) -> LayoutReader:  # noqa: ANN003
    """The reader for ``root`` in ``layout`` (``auto`` guesses it); kwargs go to :class:`LayoutReader`."""
    if layout == "auto":
        layout = detect_layout(root)
    if layout not in READERS:
        raise LayoutError(f"unknown layout '{layout}'; choose from {', '.join(LAYOUTS)}")
    return READERS[layout](root, **kwargs)
