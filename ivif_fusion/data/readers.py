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
carries no boxes. :func:`check` walks a whole reader for ``ivif data check``.

Class maps are configuration: every reader takes a :class:`ClassMap` (or the name of a
built-in one, or a YAML file with ``classes:`` and ``map:``) that renames, merges or
drops the dataset's classes. Box coordinates are pixels, ``x1, y1, x2, y2``, as given by
the annotation (VOC: no -1 offset, the same convention the shared LLVIP labels used).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np

from ..errors import UserError
from .labels import LabelError, read_classes, read_yolo, yolo_to_xyxy
from .paired import IMAGE_SUFFIXES, PairedFolder, PairError, UnpairedError

# MSRS pairs with an 8-16 px residual IR/VI offset, found by the ±20 px shift search on
# every 8th pair described in ../shared/data/ivif/MSRS/README.md ("Third pass, continued").
# The list is a lower bound: only 46 of the 365 pairs were surveyed. Boxes of one
# modality's set can be off by that much in the other modality.
MSRS_MISALIGNED: tuple[str, ...] = ("00036N", "00237D", "00571D", "01148N", "01344N")

LAYOUTS = ("msrs", "m3fd", "llvip", "flat")
DEFAULT_SET = "default"  # name of the single box set of layouts without named sets


# --------------------------------------------------------------------------- errors


class LayoutError(PairError):
    """A dataset folder does not match its layout or is inconsistent (file named in the message)."""


class UnpairedFileError(LayoutError, UnpairedError):
    """An image has no partner in the other modality."""


class MissingLabelError(LayoutError, LabelError):
    """A labelled dataset lacks the label file of a pair."""


class BadLabelError(LayoutError, LabelError):
    """A label file cannot be parsed, or names an unknown class."""


class MissingMaskError(LayoutError):
    """A dataset with a segmentation folder lacks the mask of a pair."""


class UnreadableFileError(LayoutError):
    """An image file cannot be opened."""


_ERRORS = {
    "unpaired": UnpairedFileError,
    "missing_label": MissingLabelError,
    "bad_label": BadLabelError,
    "unknown_class": BadLabelError,
    "missing_mask": MissingMaskError,
    "unreadable": UnreadableFileError,
    "size_mismatch": LayoutError,
}


# --------------------------------------------------------------------------- class maps


@dataclass(frozen=True)
class ClassMap:
    """Output classes and how the dataset's class names map onto them.

    Args:
        classes: output class names; the index is the class id in :class:`Record`.
        mapping: dataset class name -> output class name, or ``None`` to drop those boxes.
            A dataset class that is not in ``mapping`` keeps its name and must then be one
            of ``classes``; otherwise it is an ``unknown_class`` problem.
    """

    classes: tuple[str, ...]
    mapping: Mapping[str, str | None] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "classes", tuple(self.classes))
        bad = [t for t in self.mapping.values() if t is not None and t not in self.classes]
        if bad:
            raise LayoutError(f"class map sends boxes to '{bad[0]}', which is not one of its classes {list(self.classes)}")

    def target(self, source: str) -> int | None:
        """Output id for a dataset class name; ``None`` = drop; KeyError when unknown."""
        name = self.mapping[source] if source in self.mapping else source
        if name is None:
            return None
        try:
            return self.classes.index(name)
        except ValueError:
            raise KeyError(source) from None

    @classmethod
    def identity(cls, names: Sequence[str]) -> ClassMap:
        return cls(tuple(names))


M3FD_CLASSES = ("People", "Car", "Bus", "Motorcycle", "Lamp", "Truck")
MSRS_CLASSES = ("person", "bicycle", "car")

# Built-in maps, selectable by name (``--class-map NAME``). 'm3fd_to_msrs' puts M3FD on the
# MSRS classes so both can train one detector: motorcycles join 'bicycle' (MSRS labels
# two-wheelers with riders there), buses and trucks join 'car', lamps are dropped.
CLASS_MAPS: dict[str, ClassMap] = {
    "msrs": ClassMap(MSRS_CLASSES),
    "llvip": ClassMap(("person",)),
    "m3fd": ClassMap(M3FD_CLASSES),
    "m3fd_to_msrs": ClassMap(MSRS_CLASSES, {"People": "person", "Motorcycle": "bicycle", "Car": "car",
                                            "Bus": "car", "Truck": "car", "Lamp": None}),
    "llvip_to_msrs": ClassMap(MSRS_CLASSES),
}


def load_class_map(spec: str | Path | ClassMap | None) -> ClassMap | None:
    """A :class:`ClassMap` from a built-in name, a YAML file (``classes: [...]``, ``map: {...}``) or itself."""
    if spec is None or isinstance(spec, ClassMap):
        return spec
    if str(spec) in CLASS_MAPS:
        return CLASS_MAPS[str(spec)]
    path = Path(spec)
    if not path.is_file():
        raise LayoutError(f"class map '{spec}' is neither a built-in ({', '.join(CLASS_MAPS)}) nor a YAML file")
    import yaml

    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict) or not isinstance(data.get("classes"), list):
        raise LayoutError(f"class map file {path}: expected a mapping with a 'classes' list (and optional 'map')")
    mapping = data.get("map") or {}
    if not isinstance(mapping, dict):
        raise LayoutError(f"class map file {path}: 'map' must be a mapping of dataset class -> class (or null)")
    unknown = set(data) - {"classes", "map"}
    if unknown:
        raise LayoutError(f"class map file {path}: unknown key '{sorted(unknown)[0]}' (valid: classes, map)")
    return ClassMap(tuple(str(c) for c in data["classes"]), {str(k): v for k, v in mapping.items()})


# --------------------------------------------------------------------------- records


@dataclass(frozen=True)
class Item:
    """One paired listing entry (no file opened yet)."""

    name: str
    ir: Path
    vi: Path
    split: str = ""


@dataclass(frozen=True)
class Record:
    """One pair with its boxes.

    ``boxes`` is (K, 4) float32 ``x1, y1, x2, y2`` in pixels of the image, ``class_ids`` is
    (K,) int64 into the reader's ``classes``. ``labelled`` is False when the dataset (or
    box set) has no label for this pair, so that "no boxes" and "no label" differ.
    """

    name: str
    ir: Path
    vi: Path
    boxes: np.ndarray
    class_ids: np.ndarray
    split: str = ""
    mask: Path | None = None
    size: tuple[int, int] | None = None  # (W, H) of the thermal image when it was read
    labelled: bool = True


@dataclass(frozen=True)
class Problem:
    """A dataset problem found while reading (non-strict mode)."""

    kind: str  # one of the keys of _ERRORS
    path: Path
    message: str


def _empty_boxes() -> tuple[np.ndarray, np.ndarray]:
    return np.zeros((0, 4), np.float32), np.zeros((0,), np.int64)


def _images(folder: Path) -> dict[str, Path]:
    """Stem -> image path of a folder (sorted; non-images ignored)."""
    return {p.stem: p for p in sorted(folder.iterdir()) if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES}


def image_size(path: Path) -> tuple[int, int]:
    """(W, H) from the file header, without decoding the pixels."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            return im.size
    except (OSError, ValueError) as e:
        raise UnreadableFileError(f"cannot read {path}: {e}") from e


def read_voc(path: Path) -> tuple[list[str], np.ndarray, tuple[int, int] | None]:
    """Class names, (K, 4) pixel boxes and (W, H) from a Pascal VOC xml file."""
    if not path.is_file():
        raise MissingLabelError(f"label file {path} missing")
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as e:
        raise BadLabelError(f"{path}: not valid XML ({e})") from e
    size = None
    sz = root.find("size")
    if sz is not None and sz.findtext("width") and sz.findtext("height"):
        size = (int(float(sz.findtext("width"))), int(float(sz.findtext("height"))))
    names, boxes = [], []
    for i, obj in enumerate(root.iter("object"), 1):
        name, bb = (obj.findtext("name") or "").strip(), obj.find("bndbox")
        if not name or bb is None:
            raise BadLabelError(f"{path}: object {i} has no <name> or <bndbox>")
        try:
            box = [float(bb.findtext(k)) for k in ("xmin", "ymin", "xmax", "ymax")]
        except (TypeError, ValueError) as e:
            raise BadLabelError(f"{path}: object {i} ('{name}') has a bad <bndbox>: {e}") from e
        if box[2] < box[0] or box[3] < box[1]:
            raise BadLabelError(f"{path}: object {i} ('{name}') has xmax < xmin or ymax < ymin")
        names.append(name)
        boxes.append(box)
    return names, np.array(boxes, np.float32).reshape(-1, 4), size


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
    """

    layout: ClassVar[str] = ""
    default_class_map: ClassVar[str] = ""
    label_format: ClassVar[str] = "yolo"  # or "voc"

    def __init__(self, root: str | Path, *, splits: Sequence[str] | None = None, label_set: str | None = None,
                 class_map: str | Path | ClassMap | None = None, strict: bool = True) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise LayoutError(f"dataset folder {self.root} not found")
        self.strict = strict
        self.problems: list[Problem] = []
        self.unpaired: list[Path] = []
        self._sizes: dict[Path, tuple[int, int]] = {}
        self.splits = self._find_splits(splits)
        self.items: list[Item] = self._list()
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

    def _label_path(self, item: Item, label_set: str) -> Path | None:
        return None

    def _mask_dir(self, item: Item) -> Path | None:
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

    def _problem(self, kind: str, path: Path, message: str) -> None:
        if self.strict:
            raise _ERRORS[kind](message)
        self.problems.append(Problem(kind, path, message))

    def _pair(self, ir_dir: Path, vi_dir: Path, split: str = "") -> list[Item]:
        """Pair two folders by file stem; unpaired files are problems naming the file."""
        for d in (ir_dir, vi_dir):
            if not d.is_dir():
                raise LayoutError(f"{self.root} is not a '{self.layout}' dataset: folder {d} missing")
        ir, vi = _images(ir_dir), _images(vi_dir)
        for stem in sorted(set(ir) ^ set(vi)):
            path, other = (ir[stem], vi_dir) if stem in ir else (vi[stem], ir_dir)
            self.unpaired.append(path)
            self._problem("unpaired", path, f"unpaired image {path}: no '{stem}.*' in {other}")
        return [Item(s, ir[s], vi[s], split) for s in sorted(set(ir) & set(vi))]

    def size_of(self, path: Path) -> tuple[int, int]:
        """(W, H) of an image from its header (cached)."""
        if path not in self._sizes:
            self._sizes[path] = image_size(path)
        return self._sizes[path]

    def __len__(self) -> int:
        return len(self.items)

    def __iter__(self) -> Iterator[Record]:
        for item in self.items:
            yield self.record(item)

    def record(self, item: Item) -> Record:
        """The :class:`Record` of one listed item (reads its label file and, for YOLO, the image header)."""
        path = self._label_path(item, self.label_set) if self.label_set is not None else None
        before = len(self.problems)
        boxes, ids = self.boxes(item) if path is not None else _empty_boxes()
        # a missing or broken label file (non-strict) means "not labelled", not "no objects"
        labelled = path is not None and path.is_file() and len(self.problems) == before
        mask = None
        mdir = self._mask_dir(item)
        if mdir is not None:
            mask = mdir / f"{item.name}.png"
            if not mask.is_file():
                self._problem("missing_mask", mask, f"mask {mask} missing for pair '{item.name}'")
                mask = None
        return Record(item.name, item.ir, item.vi, boxes, ids, item.split, mask, self._sizes.get(item.ir), labelled)

    def boxes(self, item: Item, label_set: str | None = None,
              source_hist: Counter | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(K, 4) pixel boxes and (K,) class ids of one item in a box set (problems -> empty boxes).

        ``source_hist``, when given, counts every box by its dataset class name, before the map.
        """
        label_set = label_set or self.label_set
        path = self._label_path(item, label_set) if label_set else None
        if path is None:
            return _empty_boxes()
        if not path.is_file():
            self._problem("missing_label", path, f"label file {path} missing for pair '{item.name}'"
                          + (f" (box set '{label_set}')" if label_set != DEFAULT_SET else ""))
            return _empty_boxes()
        try:
            if self.label_format == "voc":
                names, xyxy, _ = read_voc(path)
            else:
                raw = read_yolo(path)
                try:
                    w, h = self.size_of(item.ir)
                except UnreadableFileError as e:
                    self._problem("unreadable", item.ir, str(e))
                    return _empty_boxes()
                xyxy = yolo_to_xyxy(raw, w, h)[:, 1:] if len(raw) else np.zeros((0, 4), np.float32)
                names = []
                for i, c in enumerate(raw[:, 0]):
                    if c != int(c) or not 0 <= int(c) < len(self.source_classes):
                        raise BadLabelError(f"{path}: line {i + 1}: class id {c:g} is not one of 0.."
                                            f"{len(self.source_classes) - 1} ({', '.join(self.source_classes)})")
                    names.append(self.source_classes[int(c)])
        except LabelError as e:
            kind = "missing_label" if isinstance(e, MissingLabelError) else "bad_label"
            self._problem(kind, path, str(e) if isinstance(e, LayoutError) else f"{e}")
            return _empty_boxes()
        keep, ids = [], []
        for i, n in enumerate(names):
            if source_hist is not None:
                source_hist[n] += 1
            try:
                t = self.class_map.target(n)
            except KeyError:
                self._problem("unknown_class", path, f"{path}: class '{n}' is not in the class map "
                              f"(classes {list(self.classes)}; add it to the map or map it to null)")
                return _empty_boxes()
            if t is not None:
                keep.append(i)
                ids.append(t)
        return xyxy[keep].astype(np.float32).reshape(-1, 4), np.array(ids, np.int64)


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

    def _label_path(self, item: Item, label_set: str) -> Path | None:
        d = self._dirs.get(item.split, {}).get(label_set)
        return None if d is None else d / f"{item.name}.txt"

    def _mask_dir(self, item: Item) -> Path | None:
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

    def _label_path(self, item: Item, label_set: str) -> Path | None:
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

    def _label_path(self, item: Item, label_set: str) -> Path | None:
        return self.root / "Annotations" / f"{item.name}.xml"

    def _source_classes(self) -> list[str]:
        return ["person"]


class FlatReader(LayoutReader):
    """The shared data's layout: ``ir/``, ``vi/``, ``labels_det[/<set>]/`` YOLO txt, ``classes.txt``."""

    layout = "flat"

    def _list(self) -> list[Item]:
        try:
            folder = PairedFolder(self.root, strict=False)  # the same pairing rule as training and `ivif fuse`
        except PairError as e:
            raise LayoutError(str(e)) from e
        for fname in folder.unpaired:
            in_ir = (self.root / "ir" / fname).exists()
            path = self.root / ("ir" if in_ir else "vi") / fname
            self.unpaired.append(path)
            self._problem("unpaired", path, f"unpaired image {path}: no '{fname}' in {self.root / ('vi' if in_ir else 'ir')}")
        return [Item(Path(n).stem, *folder.paths(n)) for n in folder.names]

    def _find_label_sets(self) -> list[str]:
        base = self.root / "labels_det"
        if not base.is_dir():
            return []
        subs = sorted(d.name for d in base.iterdir() if d.is_dir())
        return subs or ([DEFAULT_SET] if any(base.glob("*.txt")) else [])

    def _label_path(self, item: Item, label_set: str) -> Path | None:
        base = self.root / "labels_det"
        return (base if label_set == DEFAULT_SET else base / label_set) / f"{item.name}.txt"

    def _mask_dir(self, item: Item) -> Path | None:
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


# --------------------------------------------------------------------------- check


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


def _decode(path: Path) -> tuple[int, int]:
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
        for path in (item.ir, item.vi):
            try:
                sizes.append(_decode(path) if decode else image_size(path))
                reader._sizes[path] = sizes[-1]
            except UnreadableFileError as e:
                reader._problem("unreadable", path, str(e))
        if len(sizes) == 2:
            rep.sizes[sizes[0]] += 1
            if sizes[0] != sizes[1]:
                reader._problem("size_mismatch", item.vi, f"pair '{item.name}': thermal is {sizes[0][0]}x{sizes[0][1]} "
                                f"but visible is {sizes[1][0]}x{sizes[1][1]}")
        for s, st in rep.sets.items():
            path = reader._label_path(item, s)
            before = len(reader.problems)
            boxes, ids = reader.boxes(item, s, source_hist=st.source_classes)
            if path is not None and path.is_file() and len(reader.problems) == before:
                st.files += 1
                st.empty += int(len(boxes) == 0)
            st.boxes += len(boxes)
            st.classes.update(reader.classes[i] for i in ids)
        mdir = reader._mask_dir(item)
        if mdir is not None:
            if (mdir / f"{item.name}.png").is_file():
                rep.masks += 1
            else:
                reader._problem("missing_mask", mdir / f"{item.name}.png", f"mask {mdir / (item.name + '.png')} "
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
