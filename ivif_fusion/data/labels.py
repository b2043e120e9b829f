"""YOLO box labels: ``labels_det/<set>/<name>.txt`` lines ``cls cx cy w h`` (normalized)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from ..errors import UserError


class LabelError(UserError, ValueError):
    pass


def read_yolo(path: Path) -> np.ndarray:
    """(K, 5) float32 array: class, cx, cy, w, h (normalized). Missing file raises LabelError."""
    if not path.is_file():
        raise LabelError(f"label file {path} missing")
    rows = []
    for i, line in enumerate(path.read_text().splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 5:
            raise LabelError(f"{path}:{i}: expected 5 values, got {len(parts)}")
        try:
            vals = [float(v) for v in parts]
        except ValueError as e:
            raise LabelError(f"{path}:{i}: {e}") from e
        rows.append(vals)
    return np.array(rows, dtype=np.float32).reshape(-1, 5)


def yolo_to_xyxy(labels: np.ndarray, width: int, height: int) -> np.ndarray:
    """(K, 5) normalized cx,cy,w,h -> (K, 5) class, x1, y1, x2, y2 in pixels."""
    out = labels.copy()
    cx, cy, w, h = labels[:, 1] * width, labels[:, 2] * height, labels[:, 3] * width, labels[:, 4] * height
    out[:, 1], out[:, 2], out[:, 3], out[:, 4] = cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2
    return out


def read_classes(path: Path) -> list[str]:
    """Class names from ``classes.txt``: one per line, optionally ``<id> <name>``."""
    names = []
    for ln in path.read_text().splitlines():
        parts = ln.split(maxsplit=1)
        if not parts:
            continue
        names.append(parts[1].strip() if len(parts) == 2 and parts[0].isdigit() else ln.strip())
    return names
