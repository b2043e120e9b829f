"""Pixel-domain VIF (Sheikh & Bovik 2006) as the IVIF papers' evaluators compute it.

Four scales; scale s = 1..4 uses a Gaussian window of N = 2^(5-s) + 1 pixels with sigma N/5.
From scale 2 on, both images are low-passed with that window ('valid' part) and subsampled by
2. The special cases follow the reference implementation (MATLAB ``vifvec``/``vifp_mscale``, the
CDDFuse evaluator's ``compare_viff``); a flat reference (denominator 0) gives 1.0 there, and here.
Formulas: docs/metrics.md.
"""

from __future__ import annotations

import numpy as np

#: Noise variance of the HVS model.
VIF_SIGMA_NSQ = 2.0
#: Threshold below which a local variance counts as zero.
VIF_EPS = 1e-10


def gaussian_window_1d(size: int, sigma: float) -> np.ndarray:
    """Normalized 1-D Gaussian of ``size`` taps; its outer product is MATLAB's ``fspecial('gaussian')``.

    For VIF's windows (17, 9, 5, 3 taps, sigma N/5) no tap falls below MATLAB's eps cut-off, so the
    separable form equals the 2-D window to rounding.
    """
    t = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
    k = np.exp(-(t * t) / (2.0 * sigma * sigma))
    return k / k.sum()


def filter_valid(x: np.ndarray, k: np.ndarray) -> np.ndarray:
    """Separable correlation with the outer product of ``k``, 'valid' part only (no border effects)."""
    import cv2

    r = (len(k) - 1) // 2
    if x.shape[0] < len(k) or x.shape[1] < len(k):
        raise ValueError(f"image {x.shape} smaller than the {len(k)}x{len(k)} window")
    y = cv2.sepFilter2D(x, cv2.CV_64F, k, k, borderType=cv2.BORDER_REFLECT)
    return y[r:x.shape[0] - r, r:x.shape[1] - r]


def vif_pair(ref: np.ndarray, dist: np.ndarray, *, sigma_nsq: float = VIF_SIGMA_NSQ) -> float:
    """VIFp of ``dist`` against reference ``ref`` (gray 0..255): sum of the four scales' numerators
    over the sum of their denominators; 1.0 when ``ref`` is flat (both sums are 0)."""
    r = np.asarray(ref, dtype=np.float64)
    d = np.asarray(dist, dtype=np.float64)
    eps = VIF_EPS
    num = den = 0.0
    for scale in range(1, 5):
        n = 2 ** (5 - scale) + 1
        k = gaussian_window_1d(n, n / 5.0)
        if scale > 1:
            r = filter_valid(r, k)[::2, ::2]
            d = filter_valid(d, k)[::2, ::2]
        mr, md = filter_valid(r, k), filter_valid(d, k)
        srr = np.maximum(filter_valid(r * r, k) - mr * mr, 0.0)
        sdd = np.maximum(filter_valid(d * d, k) - md * md, 0.0)
        srd = filter_valid(r * d, k) - mr * md
        g = srd / (srr + eps)
        sv = sdd - g * srd
        # the special cases of the reference implementation, in its order
        flat_r = srr < eps
        g[flat_r] = 0.0
        sv[flat_r] = sdd[flat_r]
        srr = np.where(flat_r, 0.0, srr)
        flat_d = sdd < eps
        g[flat_d] = 0.0
        sv[flat_d] = 0.0
        neg = g < 0
        sv[neg] = sdd[neg]
        g[neg] = 0.0
        sv = np.maximum(sv, eps)
        num += float(np.sum(np.log10(1.0 + g * g * srr / (sv + sigma_nsq))))
        den += float(np.sum(np.log10(1.0 + srr / sigma_nsq)))
    return num / den if den > 0 else 1.0


def vif(a: np.ndarray, b: np.ndarray, f: np.ndarray) -> float:
    """VIF = VIFp(A -> F) + VIFp(B -> F): each source the reference, F the distorted image."""
    return vif_pair(a, f) + vif_pair(b, f)
