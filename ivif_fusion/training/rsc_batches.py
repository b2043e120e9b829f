"""RSC training data: labelled pairs held in memory (boxes, optionally class-id masks) and the
deterministic crops every RSC step trains on.

A pair carries its boxes (detection targets) and, when the job has a segmentation task, its
(H, W) uint8 class-id mask ``<masks_dir>/<name>.png`` (0 background, 1 car, 2 person, 3 bike,
255 ignore; e.g. the pseudo-masks of ``ivif data masks``), read by
:func:`ivif_fusion.data.pseudo_mask_folder.read_mask`. A crop and its flip apply to the mask
exactly as to the images; padding a small image pads its mask with 255 (ignore), as the
segmenter's own training does.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..colour import rgb_to_ycbcr
from ..data.pseudo_mask_folder import read_mask
from ..data.pseudo_masks import IGNORE
from ..data.shared import class_boxes, open_shared, split_items
from ..data.splits import cross_fit_fold, parse_fold
from ..errors import UserError
from ..paths import require_data_root


class RSCTrainingError(UserError):
    """The RSC training configuration cannot be run (missing weights, masks or labels, unsupported task)."""


@dataclass
class LabelledPair:
    """One training pair held in memory: IR, Y, CbCr as uint8, boxes (K, 5) [cls, x1, y1, x2, y2] pixels,
    and the class-id mask (H, W) uint8 when the job has a segmentation task (else None)."""

    name: str
    thermal: np.ndarray    # (H, W) uint8
    ycc: np.ndarray   # (H, W, 3) uint8
    boxes: np.ndarray  # (K, 5) float32
    mask: np.ndarray | None = None  # (H, W) uint8 class ids, 255 ignore


def load_labelled_pairs(cfg: Any, progress: bool = True, split: str | None = None,
                        masks_dir: str | Path | None = None) -> list[LabelledPair]:
    """Training pairs (MSRS: train frame range only) with their boxes from ``labels_det/<label_set>``;
    ``split`` names another MSRS range instead (e.g. 'val', for diagnostics); a ``holdout_fold`` 'k/n' in
    ``cfg`` leaves the pairs of that cross-fitting fold out. Every pair needs a label file; with
    ``masks_dir`` every pair also needs its mask there (a clear error names the first missing)."""
    from tqdm import tqdm

    from ..imageops import to_uint8

    root = require_data_root(cfg.data_root or None)
    reader = open_shared(root, cfg.dataset, label_set=cfg.label_set)
    if cfg.label_set not in reader.label_sets:
        raise RSCTrainingError(f"no box labels at {reader.root / 'labels_det' / cfg.label_set}: RSC training needs "
                           "a labelled dataset")
    items = split_items(reader, cfg.dataset, split or "train")
    if getattr(cfg, "holdout_fold", ""):
        try:
            k, n = parse_fold(cfg.holdout_fold)
        except ValueError as e:
            raise RSCTrainingError(str(e)) from e
        items = [it for it in items if cross_fit_fold(it.file, n) != k]
    pairs = []
    for it in tqdm(items, desc="loading pairs", disable=not progress, unit="pair"):
        s = reader.load(it)
        boxes = class_boxes(reader.record(it))
        mask = None if masks_dir is None else read_mask(masks_dir, it.file, s.thermal.shape[:2])
        pairs.append(LabelledPair(it.file, to_uint8(s.thermal), to_uint8(rgb_to_ycbcr(s.visible)), boxes, mask))
    if not pairs:
        raise RSCTrainingError(f"no training pairs in {reader.root}")
    return pairs


def crop_boxes(boxes: np.ndarray, x0: int, y0: int, size: int, min_visible: float, flip: bool) -> np.ndarray:
    """Boxes (K, 5) [cls, x1, y1, x2, y2] moved into a ``size`` crop at (x0, y0), clipped; boxes with less
    than ``min_visible`` of their area inside are dropped; ``flip`` mirrors them horizontally."""
    if len(boxes) == 0:
        return boxes.reshape(0, 5)
    b = boxes.copy()
    b[:, [1, 3]] -= x0
    b[:, [2, 4]] -= y0
    area = (b[:, 3] - b[:, 1]) * (b[:, 4] - b[:, 2])
    c = b.copy()
    c[:, 1:] = np.clip(c[:, 1:], 0, size)
    inside = (c[:, 3] - c[:, 1]) * (c[:, 4] - c[:, 2])
    keep = (inside >= min_visible * np.maximum(area, 1e-9)) & (c[:, 3] - c[:, 1] >= 2) & (c[:, 4] - c[:, 2] >= 2)
    c = c[keep]
    if flip:
        c[:, [1, 3]] = size - c[:, [3, 1]]
    return c


def sample_batch(pairs: list[LabelledPair], size: int, batch: int, seed: int, step: int,
                 min_visible: float = 0.4) -> dict[str, Any]:
    """A deterministic batch (a function of seed and step): crops centred near a random box 3 times out of 4.

    Returns ``ir`` (N, 1, s, s), ``y`` (N, 1, s, s), ``cbcr`` (N, 2, s, s) floats 0..1, ``targets`` (the
    crops' boxes) and ``masks``: (N, s, s) uint8 crops of the pairs' masks (None unless every pair has one).
    The masks draw nothing from the generator, so a batch's images and boxes do not depend on them.
    """
    rng = np.random.default_rng([seed, step])
    with_masks = all(p.mask is not None for p in pairs)
    irs, yccs, targets, masks = [], [], [], []
    for _ in range(batch):
        p = pairs[int(rng.integers(len(pairs)))]
        h, w = p.thermal.shape
        thermal, ycc, mask = p.thermal, p.ycc, p.mask
        if h < size or w < size:  # small images are padded by reflection up to the crop, their masks by ignore
            pad = ((0, max(0, size - h)), (0, max(0, size - w)))
            thermal, ycc = np.pad(thermal, pad, mode="reflect"), np.pad(ycc, pad + ((0, 0),), mode="reflect")
            if with_masks:
                mask = np.pad(mask, pad, constant_values=IGNORE)
            h, w = thermal.shape
        if len(p.boxes) and rng.random() < 0.75:
            bx = p.boxes[int(rng.integers(len(p.boxes)))]
            cx, cy = (bx[1] + bx[3]) / 2, (bx[2] + bx[4]) / 2
            x0 = int(np.clip(cx - rng.uniform(0.2, 0.8) * size, 0, w - size))
            y0 = int(np.clip(cy - rng.uniform(0.2, 0.8) * size, 0, h - size))
        else:
            x0, y0 = int(rng.integers(0, w - size + 1)), int(rng.integers(0, h - size + 1))
        flip = bool(rng.random() < 0.5)
        a, b = thermal[y0:y0 + size, x0:x0 + size], ycc[y0:y0 + size, x0:x0 + size]
        m = mask[y0:y0 + size, x0:x0 + size] if with_masks else None
        if flip:
            a, b = a[:, ::-1], b[:, ::-1]
            m = m[:, ::-1] if with_masks else None
        irs.append(np.ascontiguousarray(a))
        yccs.append(np.ascontiguousarray(b))
        if with_masks:
            masks.append(np.ascontiguousarray(m))
        targets.append(crop_boxes(p.boxes, x0, y0, size, min_visible, flip))
    ir_t = torch.from_numpy(np.stack(irs)).float().div_(255.0).unsqueeze(1)
    ycc_t = torch.from_numpy(np.stack(yccs)).float().div_(255.0).permute(0, 3, 1, 2).contiguous()
    return {"ir": ir_t, "y": ycc_t[:, :1], "cbcr": ycc_t[:, 1:], "targets": targets,
            "masks": torch.from_numpy(np.stack(masks)) if with_masks else None}
