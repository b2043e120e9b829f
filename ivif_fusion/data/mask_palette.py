"""The one palette of segmentation masks, and the blend that draws a mask over an image.

Every mask overlay (the replay report's segmentation figure, the pseudo-mask figure) takes its
colours from here, so a class looks the same in every figure. Colours are RGB 0..255, blended as
``(1 - alpha) * pixel + alpha * colour``:

- car (id 1 in MSRS/MFNet masks and pseudo-masks): azure (0, 170, 255), alpha 0.5;
- person (id 2): red (255, 48, 48), alpha 0.5;
- bike (id 3): amber (255, 210, 0), alpha 0.5;
- ignore (255): violet (200, 0, 255), alpha 0.45.

The colours are chosen for night pairs, where most pixels are near black and a blend keeps
only half of a colour's brightness: all four are saturated and bright, with hues spread
around the circle (red 0 deg, amber 49 deg, azure 200 deg, violet 287 deg). Car is the one cool
colour; person and bike, the nearest hues, differ in lightness (BT.601 luma 110 vs 200), which
also keeps them apart for red-green colour-blind readers. Ignore (pixels a mask declines to
label) is violet, a hue no class has, so what a method gave up on stays visible on the dark
visible image and on the bright thermal one alike.

Classes are looked up by name (``bicycle`` counts as ``bike``), so car, person and bike keep
their colours whatever their ids in a task's class list; other classes take
:data:`OTHER_COLOURS` in id order; background classes (:data:`BACKGROUND_CLASSES`) are never
coloured.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from .pseudo_masks import IGNORE as IGNORE_ID  # 255, the ignore value of every class-id mask

CLASS_COLOURS: dict[str, tuple[int, int, int]] = {"car": (0, 170, 255), "person": (255, 48, 48),
                                                  "bike": (255, 210, 0)}
ALIASES = {"bicycle": "bike"}  # detection class names (MSRS boxes) onto mask class names
IGNORE_COLOUR = (200, 0, 255)
CLASS_ALPHA = 0.5
IGNORE_ALPHA = 0.45
# Further classes (MSRS: curve, car_stop, guardrail, color_cone, bump), away from the hues above.
OTHER_COLOURS = [(0, 210, 110), (255, 255, 255), (150, 90, 40), (255, 150, 200), (140, 140, 140), (0, 110, 0)]
BACKGROUND_CLASSES = ("unlabelled", "background", "void")


def mask_colours(classes: Sequence[str]) -> dict[int, tuple[int, int, int]]:
    """Mask value -> overlay colour: every class of ``classes`` (index = id) not named as background,
    and :data:`IGNORE_ID`."""
    out = {}
    others = 0
    for k, name in enumerate(classes):
        name = ALIASES.get(name, name)
        if name in BACKGROUND_CLASSES:
            continue
        if name in CLASS_COLOURS:
            out[k] = CLASS_COLOURS[name]
        else:
            out[k] = OTHER_COLOURS[others % len(OTHER_COLOURS)]
            others += 1
    out[IGNORE_ID] = IGNORE_COLOUR
    return out


def overlay_mask(image: np.ndarray, mask: np.ndarray, colours: Mapping[int, tuple[int, int, int]],
                 alpha: float = CLASS_ALPHA, ignore_alpha: float = IGNORE_ALPHA) -> np.ndarray:
    """RGB uint8 image with each coloured mask value blended in: ``(1 - a) * pixel + a * colour``,
    ``a`` = ``ignore_alpha`` on :data:`IGNORE_ID` pixels and ``alpha`` elsewhere; rounded half to even.

    ``mask`` is an integer (H, W) array of values 0..255 the size of ``image``; values without a
    colour leave their pixels as they were.
    """
    if image.shape[:2] != mask.shape:
        raise ValueError(f"mask {mask.shape} does not match the image {image.shape[:2]}")
    lut = np.zeros((256, 3), np.float32)
    weight = np.zeros(256, np.float32)
    for k, colour in colours.items():
        lut[k] = colour
        weight[k] = ignore_alpha if k == IGNORE_ID else alpha
    a = weight[mask][..., None]
    out = (1.0 - a) * image.astype(np.float32) + a * lut[mask]
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)
