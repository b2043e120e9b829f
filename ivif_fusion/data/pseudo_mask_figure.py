"""Overlay figure of pseudo-masks: the visible and the thermal image of a few pairs, masks drawn on both.

Pairs are chosen deterministically so that day and night pairs each show every class:
:func:`pick_pairs` takes, for day and for night in turn, the pair with the most distinct
classes that holds the next class of the cycle (person, car, bike), at least ``spacing``
frames away from the pairs already taken (neighbouring MSRS frames show the same scene).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .mask_palette import mask_colours, overlay_mask
from .pseudo_mask_folder import load_pair, night_from_name
from .pseudo_masks import BIKE, CAR, PERSON, SEG_NAMES, PseudoMaskOptions, is_night, pseudo_mask, seg_ids
from .splits import frame_number

# Pseudo-mask value -> colour of the one mask palette (data/mask_palette.py), ignore included.
COLOURS = mask_colours([SEG_NAMES[k] for k in range(max(CAR, PERSON, BIKE) + 1)])


def overlay(image_rgb: np.ndarray, mask: np.ndarray, rects: Sequence[tuple[int, int, int, int, int]]) -> np.ndarray:
    """uint8 RGB image with mask labels blended in (:func:`mask_palette.overlay_mask`) and box
    outlines (x0, y0, x1, y1, class) drawn in their class's colour."""
    import cv2

    out = overlay_mask(image_rgb, mask, COLOURS)
    for x0, y0, x1, y1, cid in rects:
        cv2.rectangle(out, (x0, y0), (x1 - 1, y1 - 1), COLOURS[cid], 1)
    return out


def pick_pairs(records: Sequence, ids: Sequence[int], count: int = 12, spacing: int = 20) -> list:
    """``count`` records, half day and half night, cycling through the classes (see the module doc)."""
    def night(r) -> bool:  # noqa: ANN001
        flag = night_from_name(r.name)
        return flag if flag is not None else False

    chosen: list = []
    frames: list[int] = []
    cycle = (PERSON, CAR, BIKE)
    for want_night in (False, True):
        pool = [r for r in records if night(r) == want_night and len(r.class_ids)]
        for k in range(count // 2):
            cls = cycle[k % len(cycle)]
            best = None
            for r in pool:
                classes = {ids[c] for c in r.class_ids}
                if cls not in classes or any(c.name == r.name for c in chosen):
                    continue
                f = frame_number(r.name) if r.name[:1].isdigit() else -10 ** 6
                if any(abs(f - g) < spacing for g in frames):
                    continue
                key = (-len(classes), -len(r.class_ids), r.name)
                if best is None or key < best[0]:
                    best = (key, r, f)
            if best is not None:
                chosen.append(best[1])
                frames.append(best[2])
    return chosen


def render_figure(records: Sequence, class_names: Sequence[str], path: str | Path,
                  options: PseudoMaskOptions | None = None, columns: int = 3, scale: float = 0.5) -> Path:
    """Write a PNG grid: per pair the visible and the thermal image with the pseudo-mask overlaid."""
    import cv2
    from PIL import Image

    opts = options or PseudoMaskOptions()
    ids = seg_ids(class_names)
    tiles = []
    for rec in records:
        thermal, visible = load_pair(rec)
        flag = night_from_name(rec.name)
        night = flag if flag is not None else is_night(visible, opts.night_luminance)
        mask, fills = pseudo_mask(thermal, visible, rec.boxes, [ids[c] for c in rec.class_ids], opts, night=night)
        rects = [(b.x0, b.y0, b.x1, b.y1, b.class_id) for b in fills]
        vis8 = np.clip(np.rint(visible * 255), 0, 255).astype(np.uint8)
        th8 = np.clip(np.rint(thermal * 255), 0, 255).astype(np.uint8)
        panels = [overlay(vis8, mask, rects), overlay(np.dstack([th8] * 3), mask, rects)]
        tile = np.concatenate(panels, axis=1)
        tile = cv2.resize(tile, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        label = f"{rec.name} {'night' if night else 'day'}"
        cv2.putText(tile, label, (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 3, cv2.LINE_AA)
        cv2.putText(tile, label, (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1, cv2.LINE_AA)
        tiles.append(np.pad(tile, ((2, 2), (2, 2), (0, 0)), constant_values=255))
    if not tiles:
        raise ValueError("no pairs to draw")
    while len(tiles) % columns:
        tiles.append(np.full_like(tiles[0], 255))
    rows = [np.concatenate(tiles[i:i + columns], axis=1) for i in range(0, len(tiles), columns)]
    grid = np.concatenate(rows, axis=0)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # a 256-colour palette keeps the committed figure small
    Image.fromarray(grid).quantize(256, dither=Image.Dither.NONE).save(path, optimize=True)
    return path
