"""What a dataset reader produces: listing items, records with boxes, problems, and their errors.

Box coordinates are pixels, ``x1, y1, x2, y2``, as given by the annotation (VOC: no -1 offset,
the same convention the shared LLVIP labels used).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .labels import LabelError
from .paired import IMAGE_SUFFIXES, PairError, UnpairedError

DEFAULT_SET = "default"  # name of the single box set of layouts without named sets


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


ERROR_KINDS = {
    "unpaired": UnpairedFileError,
    "missing_label": MissingLabelError,
    "bad_label": BadLabelError,
    "unknown_class": BadLabelError,
    "missing_mask": MissingMaskError,
    "unreadable": UnreadableFileError,
    "size_mismatch": LayoutError,
}


@dataclass(frozen=True)
class Item:
    """One paired listing entry (no file opened yet)."""

    name: str
    thermal: Path
    visible: Path
    split: str = ""

    @property
    def file(self) -> str:
        """File name of the thermal image (the visible one has the same name in the flat layout)."""
        return self.thermal.name


@dataclass(frozen=True)
class Record:
    """One pair with its boxes.

    ``boxes`` is (K, 4) float32 ``x1, y1, x2, y2`` in pixels of the image, ``class_ids`` is
    (K,) int64 into the reader's ``classes``. ``labelled`` is False when the dataset (or
    box set) has no label for this pair, so that "no boxes" and "no label" differ.
    """

    name: str
    thermal: Path
    visible: Path
    boxes: np.ndarray
    class_ids: np.ndarray
    split: str = ""
    mask: Path | None = None
    size: tuple[int, int] | None = None  # (W, H) of the thermal image when it was read
    labelled: bool = True


@dataclass(frozen=True)
class Problem:
    """A dataset problem found while reading (non-strict mode)."""

    kind: str  # one of the keys of ERROR_KINDS
    path: Path
    message: str



def empty_boxes() -> tuple[np.ndarray, np.ndarray]:
    """No boxes: (0, 4) float32 and (0,) int64."""
    return np.zeros((0, 4), np.float32), np.zeros((0,), np.int64)


def images_in(folder: Path) -> dict[str, Path]:
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
