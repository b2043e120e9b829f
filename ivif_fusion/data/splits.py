"""Documented splits of the shared data.

MSRS in the shared data is the official MSRS *test* split (plus 4 train frames). MSRS
frames come from driving sequences, so neighbouring frame numbers show the same scene:
splits are frame-number ranges, never random. The first 20 names (frames 4..107,
``00004N``..``00107D``) are the evaluation pairs and are never used for training; a guard
band of frames 108..130 is left out of both; frames 1400+ are a validation range used for
model selection of task networks. Results on the evaluation pairs are called
"MSRS eval-20", never "MSRS test", because other frames of the official test split are
used for training here.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Iterable

MSRS_RANGES = {
    "eval": (0, 107),     # 20 pairs, held out of all training
    "guard": (108, 130),  # unused: neighbours of the eval frames
    "train": (131, 1399),
    "val": (1400, 99999),
}

_FRAME = re.compile(r"^(\d+)")


def frame_number(name: str) -> int:
    m = _FRAME.match(name)
    if not m:
        raise ValueError(f"'{name}' does not start with an MSRS frame number")
    return int(m.group(1))


def msrs_split(names: Iterable[str], split: str) -> list[str]:
    """Names of MSRS pairs in ``split`` ('eval', 'train', 'val', 'trainval', 'guard')."""
    if split == "trainval":
        return msrs_split(names, "train") + msrs_split(names, "val")
    if split not in MSRS_RANGES:
        raise ValueError(f"unknown split '{split}'; choose from {sorted(MSRS_RANGES) + ['trainval']}")
    lo, hi = MSRS_RANGES[split]
    return sorted(n for n in names if lo <= frame_number(n) <= hi)


def training_names(dataset: str, names: Iterable[str]) -> list[str]:
    """Names of a shared dataset that training may use (MSRS: train range only; others: all)."""
    names = list(names)
    if dataset.upper() == "MSRS":
        return msrs_split(names, "train")
    return sorted(names)


#: Frames per cross-fitting block: neighbouring MSRS frames show the same scene, so folds are
#: made of whole blocks of frame numbers (interleaved, so every fold covers the whole range).
FOLD_BLOCK = 100


def parse_fold(spec: str) -> tuple[int, int]:
    """'k/n' -> (k, n) with 0 <= k < n, n >= 2 (a cross-fitting fold of n)."""
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", str(spec))
    if not m or not (int(m.group(2)) >= 2 and int(m.group(1)) < int(m.group(2))):
        raise ValueError(f"fold '{spec}' must be 'k/n' with 0 <= k < n and n >= 2, e.g. '0/2'")
    return int(m.group(1)), int(m.group(2))


def cross_fit_fold(name: str, folds: int) -> int:
    """Fold (0..folds-1) of a pair for cross-fitting.

    Names that start with a frame number (MSRS) go by blocks of :data:`FOLD_BLOCK` frames, so
    near-duplicate neighbours share a fold; other names by a CRC32 of the name (stable across
    runs and machines, unlike Python's hash).
    """
    if folds < 1:
        raise ValueError(f"folds must be >= 1, got {folds}")
    m = _FRAME.match(name)
    if m:
        return (int(m.group(1)) // FOLD_BLOCK) % folds
    return zlib.crc32(name.encode()) % folds
