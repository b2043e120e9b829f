"""Turning camera images of any supported depth/layout into the core's float convention.

Core convention: thermal (H, W) float32 in 0..1; visible (H, W, 3) float32 RGB in 0..1.

Thermal normalization (documented in docs/data.md):
- 8-bit: value / 255.
- 16-bit (radiometric cameras store counts in a narrow band of 0..65535): per-image
  linear stretch between the 0.5th and 99.5th percentiles, clipped to 0..1. A constant
  image maps to 0. Mode ``scale`` divides by 65535 instead (keeps absolute levels).
- float (32FC1): per-image stretch as for 16-bit; NaN and inf are rejected by callers
  that need to count them (see :func:`finite_or_raise`).
"""

from __future__ import annotations

import numpy as np
from .errors import UserError


class ImageError(UserError, ValueError):
    """An image cannot be turned into the core convention (reason in the message)."""

    def __init__(self, message: str, reason: str = "bad_image") -> None:
        super().__init__(message)
        self.reason = reason


def finite_or_raise(img: np.ndarray, what: str = "image") -> None:
    if np.issubdtype(img.dtype, np.floating) and not np.isfinite(img).all():
        raise ImageError(f"{what} contains NaN or inf values", reason="non_finite")


def _stretch(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float32)
    lo, hi = np.percentile(x, [0.5, 99.5])
    if hi - lo < 1e-6:
        return np.zeros_like(x, dtype=np.float32)
    return np.clip((x - lo) / (hi - lo), 0.0, 1.0).astype(np.float32)


def normalize_thermal(img: np.ndarray, mode16: str = "percentile") -> np.ndarray:
    """Any thermal image -> (H, W) float32 in 0..1.

    Accepts (H, W) or (H, W, C) with identical or colour channels (colour is reduced to its
    BT.601 luminance, as LLVIP's 3-channel JPEG thermal frames need).
    """
    if img.ndim == 3:
        if img.shape[2] == 1:
            img = img[..., 0]
        elif img.shape[2] in (3, 4):
            from .colour import luminance

            c = img[..., :3]
            if np.issubdtype(c.dtype, np.integer):
                c = c.astype(np.float32) / np.iinfo(img.dtype).max
            return np.clip(luminance(c.astype(np.float32)), 0, 1)
        else:
            raise ImageError(f"thermal image has {img.shape[2]} channels", reason="bad_channels")
    if img.ndim != 2:
        raise ImageError(f"thermal image must be 2-D, got shape {img.shape}", reason="bad_shape")
    if img.size == 0:
        raise ImageError("thermal image is empty", reason="bad_shape")
    if img.dtype == np.uint8:
        return img.astype(np.float32) / 255.0
    if img.dtype in (np.uint16, np.int16):
        if mode16 == "scale":
            return img.astype(np.float32) / 65535.0
        return _stretch(img)
    if np.issubdtype(img.dtype, np.floating):
        finite_or_raise(img, "thermal image")
        return _stretch(img)
    raise ImageError(f"unsupported thermal dtype {img.dtype}", reason="bad_dtype")


def normalize_visible(img: np.ndarray, order: str = "rgb") -> np.ndarray:
    """Any visible image -> (H, W, 3) float32 RGB in 0..1.

    Grayscale is replicated to three channels; an alpha channel is dropped (documented);
    ``order='bgr'`` swaps channels (OpenCV-decoded files).
    """
    if img.ndim == 2:
        img = img[..., None]
    if img.ndim != 3 or img.size == 0:
        raise ImageError(f"visible image must be (H, W[, C]), got shape {img.shape}", reason="bad_shape")
    c = img.shape[2]
    if c == 1:
        img = np.repeat(img, 3, axis=2)
    elif c == 4:
        img = img[..., :3]
    elif c != 3:
        raise ImageError(f"visible image has {c} channels", reason="bad_channels")
    if order == "bgr":
        img = img[..., ::-1]
    if img.dtype == np.uint8:
        out = img.astype(np.float32) / 255.0
    elif img.dtype == np.uint16:
        out = img.astype(np.float32) / 65535.0
    elif np.issubdtype(img.dtype, np.floating):
        finite_or_raise(img, "visible image")
        out = np.clip(img.astype(np.float32), 0, 1)
    else:
        raise ImageError(f"unsupported visible dtype {img.dtype}", reason="bad_dtype")
    return np.ascontiguousarray(out)


def to_uint8(img: np.ndarray) -> np.ndarray:
    """Float 0..1 image -> uint8 with rounding."""
    return np.clip(np.rint(img * 255.0), 0, 255).astype(np.uint8)


def fit_max_side(max_side: int, *images: np.ndarray) -> tuple[list[np.ndarray], float]:
    """Downscale same-size images (area interpolation) so their long side is at most ``max_side``.

    Returns the images (unchanged objects when no resize is needed or ``max_side`` is 0) and the
    scale factor applied to widths (new width / old width).
    """
    h, w = images[0].shape[:2]
    if not max_side or max(h, w) <= max_side:
        return list(images), 1.0
    import cv2

    s = max_side / max(h, w)
    size = (max(1, round(w * s)), max(1, round(h * s)))
    return [cv2.resize(im, size, interpolation=cv2.INTER_AREA) for im in images], size[0] / w
