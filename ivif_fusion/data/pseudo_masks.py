"""Box-supervised pseudo-masks: a class-id mask per pair from detection boxes, without human masks.

Inside each box the object is segmented by GrabCut (OpenCV) initialised by the box; outside
every box the mask is background. Class ids are those of the MSRS/MFNet segmentation label set
(car 1, person 2, bike 3: the indices of ``tasks.segmentation.MSRS_SEG_CLASSES``) so a segmenter
trained on these masks keeps the ids of real MSRS masks.

Per box, on a crop of the box plus a margin (resized so the box's short side is ``box_px``):
the margin is definite background, the box probable foreground, and a central ellipse spanning
``core`` of the box's width and height definite foreground (objects cover their box centre; this
keeps GrabCut from dropping the object). For persons at night (``hot_prior``) the box's cold
pixels (thermal at or under the box's Otsu threshold) start as probable background instead.
GrabCut then runs three times from these labels: on a joint image (thermal, visible luma, visible
red chroma), which gives the label, and on each modality alone, which give the confidence.

``IGNORE`` (255) marks pixels the method is unsure about:

- **ring**: the ``ring`` pixels just inside each box border (boxes are loose by a few pixels and
  MSRS pairs are offset by up to ~15 px, so the border is the least trustworthy part);
- **class overlap**: pixels inside boxes of two different classes;
- **cue disagreement**: pixels where the thermal-only and the visible-only GrabCut both
  contradict the joint one;
- **outline band**: pixels within ``band`` px of the joint foreground's outline;
- **degenerate box**: every pixel of a box whose interior (box minus ring) has a side under
  ``min_side`` pixels, where GrabCut fails, or whose confident foreground fills less than
  ``min_fill`` or more than ``max_fill`` of the interior.

A pixel covered by several boxes of one class is ignore if any of them says ignore, else
foreground if any says foreground, else background. Night is the caller's flag or, when not
given, a mean BT.601 luminance of the visible image under ``night_luminance``.

mIoU against these masks measures agreement with this method, not MSRS segmentation mIoU.
The result is deterministic: OpenCV's RNG (GrabCut's k-means) is seeded before every run.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..colour import luminance
from ..errors import UserError

IGNORE = 255
BACKGROUND = 0
CAR, PERSON, BIKE = 1, 2, 3
#: Detection class name -> MSRS segmentation id (the boxes' names: MSRS person/bicycle/car, LLVIP person).
SEG_IDS: dict[str, int] = {"car": CAR, "person": PERSON, "bicycle": BIKE, "bike": BIKE}
SEG_NAMES: dict[int, str] = {BACKGROUND: "background", CAR: "car", PERSON: "person", BIKE: "bike", IGNORE: "ignore"}
HOT_PRIOR_MODES = ("night", "always", "never")


class PseudoMaskError(UserError, ValueError):
    """Inputs to pseudo-mask generation are inconsistent (message says which)."""


@dataclass(frozen=True)
class PseudoMaskOptions:
    """How pseudo-masks are made (defaults are the shipped method, docs/pseudo_masks.md)."""

    ring: int = 2  # pixels inside each box border marked ignore
    margin: float = 0.3  # context around a box for GrabCut's background model, fraction of the box side
    min_margin: int = 8  # ... and at least this many pixels
    iterations: int = 5  # GrabCut iterations
    core: float = 0.4  # central ellipse (this fraction of the box's width and height) fixed as foreground
    band: int = 1  # pixels on each side of the foreground outline marked ignore
    box_px: int = 64  # GrabCut runs on the crop resized so that the box's short side has this many pixels
    max_scale: float = 8.0  # ... enlarged by at most this factor
    night_luminance: float = 0.21  # mean visible luminance (0..1) under which a pair counts as night
    hot_prior: str = "night"  # persons start from their hot pixels: at night, always or never
    min_side: int = 6  # an interior (box minus ring) side under this: the whole box is ignore
    min_fill: float = 0.05  # confident foreground below this fraction of the interior: whole box ignore
    max_fill: float = 0.98  # ... or above this fraction
    seed: int = 0  # OpenCV RNG seed (GrabCut's k-means initialisation)

    def __post_init__(self) -> None:
        if self.hot_prior not in HOT_PRIOR_MODES:
            raise PseudoMaskError(f"hot_prior must be one of {HOT_PRIOR_MODES}, got '{self.hot_prior}'")
        if self.ring < 0 or self.iterations < 1 or self.min_side < 1 or not 0 <= self.min_fill < self.max_fill <= 1:
            raise PseudoMaskError("pseudo-mask options out of range: ring >= 0, iterations >= 1, min_side >= 1, "
                                  "0 <= min_fill < max_fill <= 1")


@dataclass(frozen=True)
class BoxFill:
    """What one box became: its pixel rectangle, class, and the fractions of its pixels per label."""

    index: int  # position in the input boxes
    class_id: int
    x0: int  # pixel columns x0..x1-1, rows y0..y1-1 (box edges rounded to the nearest pixel edge)
    y0: int
    x1: int
    y1: int
    fill: float  # fraction of the box's pixels labelled with its class in the final mask
    ignore: float  # fraction labelled IGNORE
    status: str  # ok | small | grabcut_failed | degenerate


def _pixel_rect(box: Sequence[float], width: int, height: int) -> tuple[int, int, int, int]:
    """Box edges (x1, y1, x2, y2 in pixels) -> the pixel range it covers, clipped to the image."""
    x0, y0, x1, y1 = (int(np.floor(float(v) + 0.5)) for v in box)
    return max(0, x0), max(0, y0), min(width, x1), min(height, y1)


def is_night(visible: np.ndarray, threshold: float) -> bool:
    """True when the visible image's mean BT.601 luminance (0..1) is under ``threshold``."""
    return float(luminance(_float01(visible)).mean()) < threshold


def _float01(img: np.ndarray) -> np.ndarray:
    return img.astype(np.float32) / 255.0 if img.dtype == np.uint8 else img.astype(np.float32)


def _uint8(img: np.ndarray) -> np.ndarray:
    if img.dtype == np.uint8:
        return img
    return np.clip(np.rint(img.astype(np.float32) * 255.0), 0, 255).astype(np.uint8)


def _otsu(values: np.ndarray) -> float:
    """Otsu threshold of uint8 values (a value v is 'hot' when v > threshold)."""
    import cv2

    thr, _ = cv2.threshold(values.reshape(1, -1), 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    return float(thr)


def _box_init(shape: tuple[int, int], inner: tuple[slice, slice], core: float,
              hot: np.ndarray | None) -> np.ndarray:
    """GrabCut labels of a crop: outside the box definite background, the box probable foreground
    (with ``hot``: its cold pixels probable background), the central ellipse definite foreground."""
    import cv2

    init = np.full(shape, cv2.GC_BGD, np.uint8)
    bh, bw = inner[0].stop - inner[0].start, inner[1].stop - inner[1].start
    box = np.full((bh, bw), cv2.GC_PR_FGD, np.uint8)
    if hot is not None:
        box[~hot] = cv2.GC_PR_BGD
    if core > 0:
        yy, xx = np.mgrid[0:bh, 0:bw]
        ry, rx = max(core * bh / 2, 0.5), max(core * bw / 2, 0.5)
        box[((yy - (bh - 1) / 2) / ry) ** 2 + ((xx - (bw - 1) / 2) / rx) ** 2 <= 1] = cv2.GC_FGD
    init[inner] = box
    return init


def _grabcut(image3: np.ndarray, init: np.ndarray, scale: float, opts: PseudoMaskOptions) -> np.ndarray:
    """Foreground (bool, crop-sized) of GrabCut on a uint8 3-channel crop from initial labels.

    The crop is first resized by ``scale``: GrabCut's smoothness cost grows with an object's
    outline and its colour cost with its area, so on small boxes it would drop the object; large
    boxes are shrunk to bound the run time. The result is resized back (linear, threshold 0.5).
    """
    import cv2

    h, w = init.shape
    resized = abs(scale - 1) > 1e-6
    if resized:
        size = (max(2, int(round(w * scale))), max(2, int(round(h * scale))))
        image3 = cv2.resize(image3, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
        init = cv2.resize(init, size, interpolation=cv2.INTER_NEAREST)
    cv2.setRNGSeed(opts.seed)
    mask = np.ascontiguousarray(init).copy()
    bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    cv2.grabCut(np.ascontiguousarray(image3), mask, None, bgd, fgd, opts.iterations, cv2.GC_INIT_WITH_MASK)
    fg = ((mask == cv2.GC_FGD) | (mask == cv2.GC_PR_FGD)).astype(np.float32)
    if resized:
        fg = cv2.resize(fg, (w, h), interpolation=cv2.INTER_LINEAR)
    return fg >= 0.5


def _box_labels(thermal8: np.ndarray, visible8: np.ndarray, rect: tuple[int, int, int, int], class_id: int,
                night: bool, opts: PseudoMaskOptions) -> tuple[np.ndarray, str]:
    """Labels of one box's pixels (class_id / BACKGROUND / IGNORE, ring included) and its status."""
    import cv2

    h, w = thermal8.shape
    x0, y0, x1, y1 = rect
    out = np.full((y1 - y0, x1 - x0), IGNORE, np.uint8)
    r = opts.ring
    if min(y1 - y0, x1 - x0) - 2 * r < opts.min_side:
        return out, "small"
    mx = max(opts.min_margin, int(round(opts.margin * (x1 - x0))))
    my = max(opts.min_margin, int(round(opts.margin * (y1 - y0))))
    cx0, cy0, cx1, cy1 = max(0, x0 - mx), max(0, y0 - my), min(w, x1 + mx), min(h, y1 + my)
    inner = (slice(y0 - cy0, y1 - cy0), slice(x0 - cx0, x1 - cx0))  # the box inside the crop
    t_crop, v_crop = thermal8[cy0:cy1, cx0:cx1], visible8[cy0:cy1, cx0:cx1]
    hot = None
    if class_id == PERSON and (opts.hot_prior == "always" or (opts.hot_prior == "night" and night)):
        hot = t_crop[inner] > _otsu(t_crop[inner])
    init = _box_init(t_crop.shape, inner, opts.core, hot)
    scale = min(opts.max_scale, opts.box_px / min(y1 - y0, x1 - x0))
    ycrcb = cv2.cvtColor(v_crop, cv2.COLOR_RGB2YCrCb)
    try:  # one joint colour model (thermal, luma, red chroma) and one per modality
        fg = _grabcut(cv2.merge([t_crop, ycrcb[..., 0], ycrcb[..., 1]]), init, scale, opts)
        fg_t = _grabcut(cv2.merge([t_crop, t_crop, t_crop]), init, scale, opts)
        fg_v = _grabcut(v_crop, init, scale, opts)
    except cv2.error:
        return out, "grabcut_failed"
    # unsure: both single-modality cues contradict the joint one, or within `band` px of its outline
    unsure = (fg_t != fg) & (fg_v != fg)
    if opts.band > 0:
        k = np.ones((2 * opts.band + 1, 2 * opts.band + 1), np.uint8)
        f8 = fg.astype(np.uint8)
        unsure |= cv2.dilate(f8, k).astype(bool) & ~cv2.erode(f8, k).astype(bool)
    core = (slice(r, out.shape[0] - r), slice(r, out.shape[1] - r))
    fg_box, unsure_box = fg[inner][core], unsure[inner][core]
    fill = float((fg_box & ~unsure_box).mean())
    if not opts.min_fill <= fill <= opts.max_fill:
        return out, "degenerate"
    out[core] = np.where(unsure_box, IGNORE, np.where(fg_box, class_id, BACKGROUND))
    return out, "ok"


def pseudo_mask(thermal: np.ndarray, visible: np.ndarray, boxes: np.ndarray, class_ids: Sequence[int],
                options: PseudoMaskOptions | None = None, *, night: bool | None = None) -> tuple[np.ndarray, list[BoxFill]]:
    """The pseudo-mask of one pair and what each box became.

    Args:
        thermal: (H, W) uint8 or float 0..1.
        visible: (H, W, 3) RGB, uint8 or float 0..1 (same size as ``thermal``).
        boxes: (K, 4) ``x1, y1, x2, y2`` in pixels.
        class_ids: (K,) segmentation ids (:data:`SEG_IDS` values, 1..254).
        options: :class:`PseudoMaskOptions` (default: the documented method).
        night: whether the pair is a night pair; ``None`` decides from the visible luminance.

    Returns:
        (H, W) uint8 mask (0 background, class ids, 255 ignore) and one :class:`BoxFill` per box.
    """
    opts = options or PseudoMaskOptions()
    if thermal.ndim != 2 or visible.ndim != 3 or visible.shape[2] != 3 or visible.shape[:2] != thermal.shape:
        raise PseudoMaskError(f"expected thermal (H, W) and visible (H, W, 3) of one size, got {thermal.shape} "
                              f"and {visible.shape}")
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    ids = [int(c) for c in class_ids]
    if len(ids) != len(boxes) or any(not 0 < c < IGNORE for c in ids):
        raise PseudoMaskError(f"need one class id in 1..254 per box, got {len(ids)} ids for {len(boxes)} boxes")
    h, w = thermal.shape
    if night is None:
        night = is_night(visible, opts.night_luminance)
    thermal8, visible8 = _uint8(thermal), _uint8(visible)
    cover = np.zeros((h, w), np.int32)  # class id of the boxes covering a pixel; -1 when classes differ
    any_ignore = np.zeros((h, w), bool)
    any_fg = np.zeros((h, w), bool)
    rects, statuses = [], []
    for box, cid in zip(boxes, ids):
        rect = _pixel_rect(box, w, h)
        rects.append(rect)
        x0, y0, x1, y1 = rect
        if x1 <= x0 or y1 <= y0:
            statuses.append("small")
            continue
        labels, status = _box_labels(thermal8, visible8, rect, cid, night, opts)
        statuses.append(status)
        region = (slice(y0, y1), slice(x0, x1))
        c = cover[region]
        cover[region] = np.where((c == 0) | (c == cid), cid, -1)
        any_ignore[region] |= labels == IGNORE
        any_fg[region] |= labels == cid
    mask = np.where(any_fg, np.maximum(cover, 0), BACKGROUND).astype(np.uint8)
    mask[any_ignore | (cover < 0)] = IGNORE
    stats = []
    for k, ((x0, y0, x1, y1), cid, status) in enumerate(zip(rects, ids, statuses)):
        region = mask[y0:y1, x0:x1]
        n = max(region.size, 1)
        stats.append(BoxFill(k, cid, x0, y0, x1, y1, float((region == cid).sum() / n),
                             float((region == IGNORE).sum() / n), status))
    return mask, stats


def seg_ids(class_names: Sequence[str]) -> list[int]:
    """Segmentation id of each detection class name (a :class:`PseudoMaskError` names an unknown one)."""
    unknown = [n for n in class_names if n not in SEG_IDS]
    if unknown:
        raise PseudoMaskError(f"no segmentation class for box class '{unknown[0]}' (known: {', '.join(SEG_IDS)})")
    return [SEG_IDS[n] for n in class_names]


def mask_histogram(masks: Sequence[np.ndarray]) -> Counter:
    """Pixel count per label over masks (keys: label values)."""
    hist: Counter = Counter()
    for m in masks:
        values, counts = np.unique(m, return_counts=True)
        hist.update({int(v): int(c) for v, c in zip(values, counts)})
    return hist
