"""BT.601 full-range (JPEG) RGB <-> YCbCr, and recombination of a fused Y with visible colour.

Conventions: values in 0..1; Cb and Cr are offset by 0.5 (128/255 in 8-bit terms).
The inverse uses the exact inverse of the forward matrix, so a float round trip is
exact to float precision (no rounding to the usual 1.402 / 1.772 constants).
Works on numpy arrays (H, W, 3) and on torch tensors (N, 3, H, W).
"""

from __future__ import annotations

import numpy as np

# Rows: Y, Cb, Cr. Coefficients of ITU-R BT.601 with full-range (JFIF) scaling.
RGB_TO_YCBCR = np.array(
    [[0.299, 0.587, 0.114],
     [-0.168735892, -0.331264108, 0.5],
     [0.5, -0.418687589, -0.081312411]],
    dtype=np.float64,
)
YCBCR_TO_RGB = np.linalg.inv(RGB_TO_YCBCR)
CHROMA_OFFSET = np.array([0.0, 0.5, 0.5])


def _check_last3(x: np.ndarray, name: str) -> None:
    if x.ndim != 3 or x.shape[-1] != 3:
        raise ValueError(f"{name}: expected an (H, W, 3) array, got shape {tuple(x.shape)}")


def rgb_to_ycbcr(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3) RGB in 0..1 -> (H, W, 3) YCbCr in 0..1 (float32).

    >>> rgb_to_ycbcr(np.ones((1, 1, 3)))[0, 0].round(6).tolist()
    [1.0, 0.5, 0.5]
    """
    _check_last3(rgb, "rgb_to_ycbcr")
    out = rgb.astype(np.float64) @ RGB_TO_YCBCR.T + CHROMA_OFFSET
    return out.astype(np.float32)


def ycbcr_to_rgb(ycbcr: np.ndarray, clip: bool = True) -> np.ndarray:
    """(H, W, 3) YCbCr in 0..1 -> (H, W, 3) RGB in 0..1 (float32); clipped to 0..1 unless ``clip=False``."""
    _check_last3(ycbcr, "ycbcr_to_rgb")
    out = (ycbcr.astype(np.float64) - CHROMA_OFFSET) @ YCBCR_TO_RGB.T
    if clip:
        out = np.clip(out, 0.0, 1.0)
    return out.astype(np.float32)


def luminance(rgb: np.ndarray) -> np.ndarray:
    """Y (H, W) of an (H, W, 3) RGB image in 0..1, or the image itself when it is already (H, W)."""
    if rgb.ndim == 2:
        return rgb.astype(np.float32)
    _check_last3(rgb, "luminance")
    return (rgb.astype(np.float64) @ RGB_TO_YCBCR[0]).astype(np.float32)


def recombine(fused_y: np.ndarray, visible_rgb: np.ndarray) -> np.ndarray:
    """Colour fused image: fused Y with the visible image's CbCr. Returns (H, W, 3) float32 RGB in 0..1.

    A grayscale visible image (H, W) gives a neutral chroma, so the output is gray in colour form.
    """
    if fused_y.ndim == 3 and fused_y.shape[-1] == 1:
        fused_y = fused_y[..., 0]
    if fused_y.ndim != 2:
        raise ValueError(f"recombine: fused Y must be (H, W), got {fused_y.shape}")
    if visible_rgb.ndim == 2:
        ycc = np.stack([fused_y, np.full_like(fused_y, 0.5), np.full_like(fused_y, 0.5)], axis=-1)
    else:
        if visible_rgb.shape[:2] != fused_y.shape:
            raise ValueError(f"recombine: fused Y {fused_y.shape} and visible {visible_rgb.shape[:2]} differ in size")
        ycc = rgb_to_ycbcr(visible_rgb)
        ycc[..., 0] = fused_y
    return ycbcr_to_rgb(ycc)


# ---------------------------------------------------------------- torch versions (N, 3, H, W)


def rgb_to_ycbcr_t(rgb):  # noqa: ANN001, ANN201 - torch imported lazily
    """Torch version of :func:`rgb_to_ycbcr` on (N, 3, H, W)."""
    import torch

    if rgb.ndim != 4 or rgb.shape[1] != 3:
        raise ValueError(f"rgb_to_ycbcr_t: expected (N, 3, H, W), got {tuple(rgb.shape)}")
    m = torch.as_tensor(RGB_TO_YCBCR, dtype=rgb.dtype, device=rgb.device)
    off = torch.as_tensor(CHROMA_OFFSET, dtype=rgb.dtype, device=rgb.device).view(1, 3, 1, 1)
    return torch.einsum("ij,njhw->nihw", m, rgb) + off


def ycbcr_to_rgb_t(ycc, clip: bool = True):  # noqa: ANN001, ANN201
    """Torch version of :func:`ycbcr_to_rgb` on (N, 3, H, W)."""
    import torch

    if ycc.ndim != 4 or ycc.shape[1] != 3:
        raise ValueError(f"ycbcr_to_rgb_t: expected (N, 3, H, W), got {tuple(ycc.shape)}")
    m = torch.as_tensor(YCBCR_TO_RGB, dtype=ycc.dtype, device=ycc.device)
    off = torch.as_tensor(CHROMA_OFFSET, dtype=ycc.dtype, device=ycc.device).view(1, 3, 1, 1)
    out = torch.einsum("ij,njhw->nihw", m, ycc - off)
    return out.clamp(0, 1) if clip else out
