"""Paired-folder datasets: ``<root>/ir/<name>`` and ``<root>/vi/<name>`` with identical names.

This is the layout of the shared data (``../shared/data/ivif/<dataset>``) and of what
``ivif fuse`` reads. Thermal may be 8- or 16-bit (see :mod:`ivif_fusion.imageops`),
visible may be grayscale, RGB or RGBA. Problems raise :class:`PairError` subclasses
with the offending file in the message.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..imageops import ImageError, normalize_thermal, normalize_visible
from ..errors import UserError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


class PairError(UserError, ValueError):
    """A paired folder is inconsistent or an image cannot be read."""


class UnpairedError(PairError):
    pass


class UnreadableImageError(PairError):
    pass


class SizeMismatchError(PairError):
    pass


def read_image(path: Path) -> np.ndarray:
    """Read an image file keeping its depth and channels; RGB(A) order for colour files."""
    import cv2

    data = np.fromfile(str(path), dtype=np.uint8) if path.is_file() else None
    if data is None or data.size == 0:
        raise UnreadableImageError(f"cannot read {path}: file missing or empty")
    img = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    if img is None:
        raise UnreadableImageError(f"cannot decode {path}: not a valid image file (corrupt or truncated?)")
    if img.ndim == 3 and img.shape[2] == 3:
        img = img[..., ::-1]
    elif img.ndim == 3 and img.shape[2] == 4:
        img = img[..., [2, 1, 0, 3]]
    return np.ascontiguousarray(img)


def _stems(folder: Path) -> dict[str, Path]:
    return {p.name: p for p in sorted(folder.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES}


@dataclass
class Sample:
    name: str
    thermal: np.ndarray  # (H, W) float32 0..1
    visible: np.ndarray  # (H, W, 3) float32 RGB 0..1


class PairedFolder(Sequence):
    """Sequence of :class:`Sample` from ``root/ir`` and ``root/vi``.

    Args:
        root: folder with ``ir/`` and ``vi/``.
        names: subset of file names to use (default: all pairs).
        resize_mismatched: if True, a visible image whose size differs from its thermal
            partner is resized to the thermal size (bilinear); otherwise that raises.
        strict: if True, a name present in only one modality raises :class:`UnpairedError`;
            if False, such names are skipped and listed in ``self.unpaired``.
    """

    def __init__(self, root: str | Path, names: Sequence[str] | None = None, *, resize_mismatched: bool = False,
                 strict: bool = True) -> None:
        self.root = Path(root)
        for sub in ("ir", "vi"):
            if not (self.root / sub).is_dir():
                raise PairError(f"{self.root} has no '{sub}/' folder (expected <root>/ir and <root>/vi)")
        thermal, visible = _stems(self.root / "ir"), _stems(self.root / "vi")
        self.unpaired = sorted(set(thermal) ^ set(visible))
        if self.unpaired and strict:
            first = self.unpaired[0]
            side = "vi" if first in thermal else "ir"
            raise UnpairedError(f"{len(self.unpaired)} unpaired file(s) in {self.root}; first: '{first}' has no "
                                f"partner in {side}/ (pass strict=False to skip them)")
        common = sorted(set(thermal) & set(visible))
        if names is not None:
            missing = [n for n in names if n not in common]
            if missing:
                raise UnpairedError(f"requested pair '{missing[0]}' not found in {self.root}")
            common = list(names)
        self.names = common
        self._ir, self._vi = thermal, visible
        self.resize_mismatched = resize_mismatched

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, i):  # noqa: ANN001, ANN204
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        return self.load(self.names[i])

    def __iter__(self) -> Iterator[Sample]:
        for n in self.names:
            yield self.load(n)

    def paths(self, name: str) -> tuple[Path, Path]:
        return self._ir[name], self._vi[name]

    def load(self, name: str) -> Sample:
        ir_path, vi_path = self.paths(name)
        try:
            thermal = normalize_thermal(read_image(ir_path))
        except ImageError as e:
            raise UnreadableImageError(f"{ir_path}: {e}") from e
        try:
            visible = normalize_visible(read_image(vi_path))
        except ImageError as e:
            raise UnreadableImageError(f"{vi_path}: {e}") from e
        if thermal.shape != visible.shape[:2]:
            if not self.resize_mismatched:
                raise SizeMismatchError(f"pair '{name}': thermal is {thermal.shape[1]}x{thermal.shape[0]} but visible is "
                                        f"{visible.shape[1]}x{visible.shape[0]} (enable resize_mismatched / --resize to resize "
                                        "the visible image to the thermal size)")
            import cv2

            visible = cv2.resize(visible, (thermal.shape[1], thermal.shape[0]), interpolation=cv2.INTER_LINEAR)
        return Sample(name, thermal, visible)
