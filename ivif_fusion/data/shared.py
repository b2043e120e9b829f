"""The shared data's folders as every training and evaluation job reads them.

``<data root>/<dataset>`` is a flat-layout folder (:class:`~ivif_fusion.data.readers.FlatReader`):
``ir/``, ``vi/``, optional YOLO boxes in ``labels_det[/<set>]/`` with ``classes.txt``. The jobs
(`ivif train fusion|task|rsc|vifa`, `ivif eval tasks`) and `ivif data check` all go through the
readers, so pairing, label parsing and class mapping are written once:

- :func:`open_shared` opens a dataset (unpaired images left out, counted and logged; a bad or
  missing label file raises, naming the file);
- :func:`split_items` picks a split (MSRS: frame-number ranges of :mod:`ivif_fusion.data.splits`;
  other datasets are training-only);
- :func:`labelled_pairs` is both plus "has a label file", with classes mapped by name onto a task
  network's classes (:meth:`~ivif_fusion.data.classes.ClassMap.onto`).

A job names a pair by its file name (``Item.file``, e.g. ``00131D.png``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .readers import FlatReader
from .records import Item, LayoutError, Record
from .splits import msrs_split, training_names


def open_shared(root: str | Path, dataset: str, *, label_set: str | None = None,
                classes: Sequence[str] | None = None, resize_mismatched: bool = False) -> FlatReader:
    """Reader of ``<root>/<dataset>``.

    Args:
        label_set: box set to read when the dataset has it (MSRS: ``fusion``, ``infrared``,
            ``visible``); a dataset with a single unnamed set (LLVIP) uses that one.
        classes: map the dataset's classes by name onto these (others dropped); default: the
            dataset's own ``classes.txt``.
        resize_mismatched: :meth:`FlatReader.load` resizes a visible image to the thermal size.
    """
    folder = Path(root) / dataset
    if not folder.is_dir():
        raise LayoutError(f"dataset '{dataset}' not found under {root}")
    reader = FlatReader(folder, skip_unpaired=True, resize_mismatched=resize_mismatched)
    if label_set is not None and label_set in reader.label_sets:
        reader.label_set = label_set
    if classes is not None:
        reader.map_onto(classes)
    return reader


def split_items(reader: FlatReader, dataset: str, split: str) -> list[Item]:
    """Items of ``split`` ('train', 'val', 'eval', 'guard', 'trainval'), in name order.

    MSRS goes by frame-number ranges; any other dataset is training-only: every pair in 'train',
    none elsewhere.
    """
    by_file = {it.file: it for it in reader.items}
    if split == "train":
        names = training_names(dataset, by_file)
    else:
        names = msrs_split(by_file, split) if dataset.upper() == "MSRS" else []
    return [by_file[n] for n in names]


def labelled(reader: FlatReader, items: Sequence[Item]) -> list[Item]:
    """The items that have a label file in the reader's box set."""
    if reader.label_set is None:
        return []
    return [it for it in items if reader.label_path(it, reader.label_set).is_file()]


def labelled_pairs(root: str | Path, dataset: str, split: str, label_set: str = "fusion",
                   classes: Sequence[str] | None = None) -> tuple[FlatReader, list[Item]]:
    """Reader and the labelled items of ``split`` (visible images resized to the thermal size)."""
    reader = open_shared(root, dataset, label_set=label_set, classes=classes, resize_mismatched=True)
    return reader, labelled(reader, split_items(reader, dataset, split))


def class_boxes(record: Record) -> np.ndarray:
    """(K, 5) float32 ``class id, x1, y1, x2, y2`` (pixels) of a record: what task adapters take."""
    return np.concatenate([record.class_ids[:, None].astype(np.float32), record.boxes], 1).reshape(-1, 5)
