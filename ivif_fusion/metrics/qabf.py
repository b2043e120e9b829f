"""Edge-preservation metrics from Sobel gradients: Qabf (Xydeas & Petrovic 2000) and the modified
artefact measure Nabf (Kumar 2013). Both use :func:`ivif_fusion.ops.sobel_xy`. Formulas and the
differences between public implementations: docs/metrics.md.

Qabf follows the CDDFuse evaluator, VIFB and Linfeng-Tang/Image-Fusion (which agree): 'same'-mode
convolution with zero padding, orientation ``atan(s_y / s_x)`` (pi/2 where ``s_x = 0``) compared
by plain difference, and a relative strength that is ``g_F`` itself where ``g_X = g_F``. Nabf
follows Kumar's ``objective_fusion_perform_fn`` as Image-Fusion runs it (``analysis_nabf`` on
images scaled to 0..1).
"""

from __future__ import annotations

import math

import numpy as np

# Xydeas-Petrovic edge-preservation constants (sigmoids for strength and orientation).
QABF_TG, QABF_KG, QABF_DG = 0.9994, -15.0, 0.5
QABF_TA, QABF_KA, QABF_DA = 0.9879, -22.0, 0.8
#: Qabf conventions: "cddfuse" (the public evaluators) and "mod_pi" (interior only, orientation mod pi).
QABF_CONVENTIONS = ("cddfuse", "mod_pi")

# Kumar's parameters: strength threshold, weight floor, weight exponent, strength / orientation sigmoids.
NABF_TD, NABF_WT_MIN, NABF_LG = 2.0, 0.001, 1.5
NABF_NRG, NABF_KG, NABF_SIGMA_G = 0.9999, 19.0, 0.5
NABF_NRA, NABF_KA, NABF_SIGMA_A = 0.9995, 22.0, 0.5
#: Gray-level scale Nabf sees: Image-Fusion passes im2double images (0..1), the default.
NABF_SCALES = {"unit": 1.0 / 255.0, "255": 1.0}


def sobel_np(x: np.ndarray, padding: str) -> tuple[np.ndarray, np.ndarray]:
    """(gx, gy) of a 2-D float64 array by :func:`ivif_fusion.ops.sobel_xy` (exact for integer images)."""
    import torch

    from ..ops import sobel_xy

    x = np.ascontiguousarray(x, dtype=np.float64)
    if x.shape[0] < 3 or x.shape[1] < 3:
        raise ValueError(f"Qabf/Nabf need at least 3x3 pixels, got {x.shape}")
    gx, gy = sobel_xy(torch.from_numpy(x)[None, None], padding=padding)
    return gx[0, 0].numpy(), gy[0, 0].numpy()


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den, 0 where den is 0 (callers overwrite those entries)."""
    return np.divide(num, den, out=np.zeros_like(num), where=den != 0)


def qabf_gradients(x: np.ndarray, convention: str) -> tuple[np.ndarray, np.ndarray]:
    """Edge strength ``g`` and orientation ``alpha`` maps of one gray image for Qabf."""
    if convention == "mod_pi":
        gx, gy = sobel_np(x, "valid")
        return np.hypot(gx, gy), np.mod(np.arctan2(gy, gx), np.pi)
    gx, gy = sobel_np(x, "zeros")
    # the evaluators convolve with [-1 0 1; -2 0 2; -1 0 1]: s_x = -gx; their s_y equals gy
    sx = -gx
    alpha = np.where(sx == 0, np.pi / 2, np.arctan(_ratio(gy, sx)))
    return np.sqrt(sx * sx + gy * gy), alpha


def edge_preservation(g_s: np.ndarray, a_s: np.ndarray, g_f: np.ndarray, a_f: np.ndarray,
                      convention: str) -> np.ndarray:
    """Q^{SF} map: strength preservation x orientation preservation of source S in F."""
    if convention == "mod_pi":
        rel_g = _ratio(np.minimum(g_s, g_f), np.maximum(g_s, g_f))
        d = np.abs(a_s - a_f)
        d = np.minimum(d, np.pi - d)
    else:
        rel_g = np.where(g_s > g_f, _ratio(g_f, g_s), np.where(g_s == g_f, g_f, _ratio(g_s, g_f)))
        d = np.abs(a_s - a_f)
    rel_a = 1.0 - d / (np.pi / 2.0)
    qg = QABF_TG / (1.0 + np.exp(QABF_KG * (rel_g - QABF_DG)))
    qa = QABF_TA / (1.0 + np.exp(QABF_KA * (rel_a - QABF_DA)))
    return qg * qa


def qabf(a: np.ndarray, b: np.ndarray, f: np.ndarray, *, convention: str = "cddfuse") -> float:
    """Qabf = sum(Q^AF g_A + Q^BF g_B) / sum(g_A + g_B) (weights g^L with L = 1); NaN when neither
    source has an edge."""
    if convention not in QABF_CONVENTIONS:
        raise ValueError(f"unknown Qabf convention '{convention}'; choose from {QABF_CONVENTIONS}")
    ga, aa = qabf_gradients(a, convention)
    gb, ab = qabf_gradients(b, convention)
    gf, af = qabf_gradients(f, convention)
    wsum = float(np.sum(ga + gb))
    if wsum <= 0:
        return math.nan
    q = edge_preservation(ga, aa, gf, af, convention) * ga + edge_preservation(gb, ab, gf, af, convention) * gb
    return float(np.sum(q)) / wsum


def _nabf_gradients(x: np.ndarray, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """Kumar's ``sobel_fn`` (Sobel / 8, mirrored borders) of ``scale * x``: strength and ``atan(gv / gh)``
    (0 on flat pixels).

    The Sobel runs on the 0..255 integers, where it is exact, and the scale is applied to the
    result: equal strengths stay exactly equal, so the artefact test ``g_F > g_X`` is never decided
    by rounding (an implementation that filters the scaled image breaks such ties arbitrarily).
    """
    gx, gy = sobel_np(x, "reflect")
    with np.errstate(divide="ignore", invalid="ignore"):
        alpha = np.where((gx == 0) & (gy == 0), 0.0, np.arctan(gx / gy))
    return np.sqrt(gx * gx + gy * gy) * (scale / 8.0), alpha


def _nabf_preservation(g_s: np.ndarray, a_s: np.ndarray, g_f: np.ndarray, a_f: np.ndarray) -> np.ndarray:
    rel_g = _ratio(np.minimum(g_s, g_f), np.maximum(g_s, g_f))  # 0 where either is 0, as Kumar's code
    rel_a = np.abs(np.abs(a_s - a_f) - np.pi / 2) * 2.0 / np.pi
    qg = NABF_NRG / (1.0 + np.exp(-NABF_KG * (rel_g - NABF_SIGMA_G)))
    qa = NABF_NRA / (1.0 + np.exp(-NABF_KA * (rel_a - NABF_SIGMA_A)))
    return np.sqrt(qg * qa)


def nabf(a: np.ndarray, b: np.ndarray, f: np.ndarray, *, scale: str = "unit") -> float:
    """Modified fusion-artefact measure Nabf (lower is better) of gray 0..255 images.

    ``sum(AM ((1 - Q^AF) w_A + (1 - Q^BF) w_B)) / sum(w_A + w_B)``, AM = 1 where g_F exceeds both
    sources' strengths; ``w = g^1.5`` where ``g >= 2``, else 0.001. ``scale`` picks the gray range
    the gradients see (:data:`NABF_SCALES`).
    """
    if scale not in NABF_SCALES:
        raise ValueError(f"unknown Nabf scale '{scale}'; choose from {sorted(NABF_SCALES)}")
    s = NABF_SCALES[scale]
    ga, aa = _nabf_gradients(a, s)
    gb, ab = _nabf_gradients(b, s)
    gf, af = _nabf_gradients(f, s)
    wa = np.where(ga >= NABF_TD, ga ** NABF_LG, NABF_WT_MIN)
    wb = np.where(gb >= NABF_TD, gb ** NABF_LG, NABF_WT_MIN)
    am = (gf > ga) & (gf > gb)
    lost = (1.0 - _nabf_preservation(ga, aa, gf, af)) * wa + (1.0 - _nabf_preservation(gb, ab, gf, af)) * wb
    return float(np.sum(am * lost)) / float(np.sum(wa + wb))


def qabf_nabf(a: np.ndarray, b: np.ndarray, f: np.ndarray) -> tuple[float, float]:
    """(Qabf, Nabf) with the default conventions."""
    return qabf(a, b, f), nabf(a, b, f)



