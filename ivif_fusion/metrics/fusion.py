"""No-reference and source-referenced fusion metrics: EN, SD, SF, AG, MI, SCD, VIF, Qabf, SSIM, CC, PSNR, Nabf.

Conventions (full formulas and references in ``docs/metrics.md``):

- Every image is reduced to one gray channel by BT.601 luminance (0.299 R + 0.587 G + 0.114 B)
  on a 0..255 scale, rounded to integers and held as float64. uint8 input is used as is; float
  input must lie in 0..1 and is first quantized to 8 bits per channel (round(255 x), as saving
  a PNG would), so a float image and its uint8 version give exactly the same gray image.
- ``A`` is the infrared image, ``B`` the visible image and ``F`` the fused image.
- The per-metric functions (:func:`entropy`, :func:`vif`, ...) take gray 0..255 arrays as made by
  :func:`to_gray255`; :func:`fusion_metrics` does the conversion and the shape checks.
- Quantities that are undefined on degenerate inputs (for example VIF or Qabf when both sources
  are flat) are NaN, never a silent number; a correlation with a constant image is 0.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import UserError

#: Metric names in the order of the usual IVIF tables.
METRIC_NAMES: tuple[str, ...] = ("EN", "SD", "SF", "AG", "MI", "SCD", "VIF", "Qabf", "SSIM", "CC", "PSNR", "Nabf")
#: True where a larger value means a better fusion (Nabf measures artefacts: lower is better).
HIGHER_IS_BETTER: dict[str, bool] = {name: name != "Nabf" for name in METRIC_NAMES}

#: Smallest side accepted by :func:`fusion_metrics` (VIF's fourth scale needs 41 pixels).
MIN_SIDE = 41

# Xydeas-Petrovic edge-preservation constants (sigmoids for strength and orientation).
QABF_TG, QABF_KG, QABF_DG = 0.9994, -15.0, 0.5
QABF_TA, QABF_KA, QABF_DA = 0.9879, -22.0, 0.8
QABF_L = 1.0

_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float64)


# ---------------------------------------------------------------- input conversion


def to_gray255(img: np.ndarray, name: str = "image") -> np.ndarray:
    """Any supported image -> (H, W) float64 gray levels, integers in 0..255.

    Accepts (H, W), (H, W, 1), (H, W, 3) RGB or (H, W, 4) RGBA (alpha ignored), as uint8 (0..255)
    or float (0..1). Raises ValueError for other dtypes, shapes, NaN/inf or floats outside 0..1.

    >>> to_gray255(np.array([[0.0, 1.0]])).tolist()
    [[0.0, 255.0]]
    """
    a = np.asarray(img)
    if a.ndim == 3 and a.shape[2] in (1, 3, 4):
        pass
    elif a.ndim != 2:
        raise ValueError(f"{name}: expected (H, W) or (H, W, 1|3|4), got shape {a.shape}")
    if a.size == 0:
        raise ValueError(f"{name}: empty image, shape {a.shape}")
    if a.dtype == np.uint8:
        x = a.astype(np.float64)
    elif np.issubdtype(a.dtype, np.floating):
        x = a.astype(np.float64)
        if not np.isfinite(x).all():
            raise ValueError(f"{name}: contains NaN or inf")
        lo, hi = float(x.min()), float(x.max())
        # a little slack for float noise from a network's output; anything more is a wrong scale
        if lo < -1e-3 or hi > 1.0 + 1e-3:
            raise ValueError(f"{name}: float images must be in 0..1, got values in [{lo:.4g}, {hi:.4g}] "
                             "(pass uint8 for 0..255 data)")
        # quantize each channel to 8 bits first, as saving a PNG would: a float image made from
        # uint8 data then gives exactly the gray levels of that uint8 image
        x = np.rint(np.clip(x, 0.0, 1.0) * 255.0)
    else:
        raise ValueError(f"{name}: unsupported dtype {a.dtype} (use uint8 0..255 or float 0..1)")
    if x.ndim == 3:
        x = x[..., 0] if x.shape[2] == 1 else x[..., :3] @ _LUMA
    return np.clip(np.rint(x), 0.0, 255.0)


def _levels(x: np.ndarray) -> np.ndarray:
    """Integer gray levels 0..255 of a gray255 array (rounded, so any float array works)."""
    return np.clip(np.rint(x), 0, 255).astype(np.intp).ravel()


# ---------------------------------------------------------------- filters


def _gauss1d(size: int, sigma: float) -> np.ndarray:
    r = (size - 1) / 2.0
    t = np.arange(size, dtype=np.float64) - r
    k = np.exp(-(t * t) / (2.0 * sigma * sigma))
    return k / k.sum()


def _filter_valid(x: np.ndarray, k: np.ndarray) -> np.ndarray:
    """Separable correlation with the outer product of ``k``, 'valid' part only (no border effects)."""
    import cv2

    r = (len(k) - 1) // 2
    if x.shape[0] < len(k) or x.shape[1] < len(k):
        raise ValueError(f"image {x.shape} smaller than the {len(k)}x{len(k)} window")
    y = cv2.sepFilter2D(x, cv2.CV_64F, k, k, borderType=cv2.BORDER_REFLECT)
    return y[r:x.shape[0] - r, r:x.shape[1] - r]


# ---------------------------------------------------------------- single-image metrics


def entropy(f: np.ndarray) -> float:
    """EN: Shannon entropy in bits of the 256-bin gray histogram of ``f``."""
    p = np.bincount(_levels(f), minlength=256).astype(np.float64)
    p = p[p > 0] / p.sum()
    return float(-(p * np.log2(p)).sum()) + 0.0  # + 0.0 turns -0.0 into 0.0


def std_dev(f: np.ndarray) -> float:
    """SD: population standard deviation (ddof=0) of the gray levels of ``f``."""
    return float(np.std(np.asarray(f, dtype=np.float64)))


def spatial_frequency(f: np.ndarray) -> float:
    """SF = sqrt(RF^2 + CF^2); RF/CF: mean squared horizontal/vertical first differences."""
    f = np.asarray(f, dtype=np.float64)
    rf2 = float(np.mean(np.diff(f, axis=1) ** 2)) if f.shape[1] > 1 else 0.0
    cf2 = float(np.mean(np.diff(f, axis=0) ** 2)) if f.shape[0] > 1 else 0.0
    return math.sqrt(rf2 + cf2)


def average_gradient(f: np.ndarray) -> float:
    """AG: mean of sqrt((dx^2 + dy^2) / 2) with forward differences over the (H-1) x (W-1) region."""
    f = np.asarray(f, dtype=np.float64)
    if f.shape[0] < 2 or f.shape[1] < 2:
        raise ValueError(f"AG needs at least 2x2 pixels, got {f.shape}")
    dx = f[:-1, 1:] - f[:-1, :-1]
    dy = f[1:, :-1] - f[:-1, :-1]
    return float(np.mean(np.sqrt((dx * dx + dy * dy) / 2.0)))


# ---------------------------------------------------------------- two-image building blocks


def mutual_information_pair(x: np.ndarray, y: np.ndarray) -> float:
    """MI(x, y) in nats from the 256x256 joint gray-level histogram."""
    joint = np.bincount(_levels(x) * 256 + _levels(y), minlength=65536).astype(np.float64).reshape(256, 256)
    pxy = joint / joint.sum()
    px, py = pxy.sum(axis=1), pxy.sum(axis=0)
    nz = pxy > 0
    outer = np.outer(px, py)
    return float(np.sum(pxy[nz] * np.log(pxy[nz] / outer[nz]))) + 0.0


def correlation(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson correlation; 0.0 when either image is constant (no linear relation can be measured)."""
    x = np.asarray(x, dtype=np.float64).ravel()
    y = np.asarray(y, dtype=np.float64).ravel()
    xc, yc = x - x.mean(), y - y.mean()
    # np.sum, not np.dot: BLAS threads gain nothing at this size and stall on a busy machine
    den = math.sqrt(float(np.sum(xc * xc)) * float(np.sum(yc * yc)))
    if den <= 0.0:
        return 0.0
    return float(np.sum(xc * yc)) / den


def ssim_pair(x: np.ndarray, y: np.ndarray, *, data_range: float = 255.0) -> float:
    """Mean SSIM (Wang et al. 2004): Gaussian 11x11 window, sigma 1.5, K1=0.01, K2=0.03.

    Local statistics are population (biased) moments; the mean is over the 'valid' region
    (window fully inside the image). No automatic downsampling.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    k = _gauss1d(11, 1.5)
    mx, my = _filter_valid(x, k), _filter_valid(y, k)
    sxx = _filter_valid(x * x, k) - mx * mx
    syy = _filter_valid(y * y, k) - my * my
    sxy = _filter_valid(x * y, k) - mx * my
    num = (2.0 * mx * my + c1) * (2.0 * sxy + c2)
    den = (mx * mx + my * my + c1) * (sxx + syy + c2)
    return float(np.mean(num / den))


def vif_pair(ref: np.ndarray, dist: np.ndarray, *, sigma_nsq: float = 2.0) -> float:
    """Pixel-domain VIF (Sheikh & Bovik 2006), 4 scales, of ``dist`` against reference ``ref``.

    Scale s = 1..4 uses a Gaussian window of N = 2^(5-s) + 1 pixels and sigma N/5; from scale 2
    on, both images are first low-passed with that window and subsampled by 2. Per scale, the
    local gain g = s_rd / s_r^2 and residual variance s_v^2 = s_d^2 - g s_rd give
    num += sum log10(1 + g^2 s_r^2 / (s_v^2 + sigma_nsq)), den += sum log10(1 + s_r^2 / sigma_nsq);
    VIF = num / den (NaN when ``ref`` is flat: den = 0).
    """
    r = np.asarray(ref, dtype=np.float64)
    d = np.asarray(dist, dtype=np.float64)
    eps = 1e-10
    num = den = 0.0
    for scale in range(1, 5):
        n = 2 ** (4 - scale + 1) + 1
        k = _gauss1d(n, n / 5.0)
        if scale > 1:
            r = _filter_valid(r, k)[::2, ::2]
            d = _filter_valid(d, k)[::2, ::2]
        mr, md = _filter_valid(r, k), _filter_valid(d, k)
        srr = np.maximum(_filter_valid(r * r, k) - mr * mr, 0.0)
        sdd = np.maximum(_filter_valid(d * d, k) - md * md, 0.0)
        srd = _filter_valid(r * d, k) - mr * md
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
    return num / den if den > 0 else float("nan")


def _sobel(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Edge strength and orientation (mod pi) from 3x3 Sobel, interior (H-2) x (W-2) only."""
    import cv2

    x = np.asarray(x, dtype=np.float64)
    if x.shape[0] < 3 or x.shape[1] < 3:
        raise ValueError(f"Qabf/Nabf need at least 3x3 pixels, got {x.shape}")
    gx = cv2.Sobel(x, cv2.CV_64F, 1, 0, ksize=3)[1:-1, 1:-1]
    gy = cv2.Sobel(x, cv2.CV_64F, 0, 1, ksize=3)[1:-1, 1:-1]
    g = np.hypot(gx, gy)
    alpha = np.mod(np.arctan2(gy, gx), np.pi)  # an edge's orientation is defined modulo pi
    return g, alpha


def _edge_preservation(g_s: np.ndarray, a_s: np.ndarray, g_f: np.ndarray, a_f: np.ndarray) -> np.ndarray:
    """Q^{SF} map of Xydeas & Petrovic: strength preservation x orientation preservation."""
    hi = np.maximum(g_s, g_f)
    with np.errstate(invalid="ignore", divide="ignore"):
        rel_g = np.where(hi > 0, np.minimum(g_s, g_f) / hi, 0.0)
    d = np.abs(a_s - a_f)
    d = np.minimum(d, np.pi - d)  # distance between two orientations, in 0..pi/2
    rel_a = 1.0 - d / (np.pi / 2.0)
    qg = QABF_TG / (1.0 + np.exp(QABF_KG * (rel_g - QABF_DG)))
    qa = QABF_TA / (1.0 + np.exp(QABF_KA * (rel_a - QABF_DA)))
    return qg * qa


def qabf_nabf(a: np.ndarray, b: np.ndarray, f: np.ndarray) -> tuple[float, float]:
    """(Qabf, Nabf) sharing one set of Sobel gradients. NaN when both sources have no edges."""
    ga, aa = _sobel(a)
    gb, ab = _sobel(b)
    gf, af = _sobel(f)
    qaf = _edge_preservation(ga, aa, gf, af)
    qbf = _edge_preservation(gb, ab, gf, af)
    wa, wb = ga ** QABF_L, gb ** QABF_L
    wsum = float(np.sum(wa + wb))
    if wsum <= 0:
        return float("nan"), float("nan")
    q = float(np.sum(qaf * wa + qbf * wb)) / wsum
    am = (gf > ga) & (gf > gb)  # fused edge stronger than both sources: an artefact
    n = float(np.sum(am * ((1.0 - qaf) * wa + (1.0 - qbf) * wb))) / wsum
    return q, n


# ---------------------------------------------------------------- fusion metrics (A=IR, B=visible, F=fused)


def mutual_information(a: np.ndarray, b: np.ndarray, f: np.ndarray) -> float:
    """MI = MI(A, F) + MI(B, F), nats."""
    return mutual_information_pair(a, f) + mutual_information_pair(b, f)


def scd(a: np.ndarray, b: np.ndarray, f: np.ndarray) -> float:
    """SCD = corr(F - B, A) + corr(F - A, B) (Aslantas & Bendes 2015)."""
    a, b, f = (np.asarray(v, dtype=np.float64) for v in (a, b, f))
    return correlation(f - b, a) + correlation(f - a, b)


def vif(a: np.ndarray, b: np.ndarray, f: np.ndarray) -> float:
    """VIF = VIFp(A -> F) + VIFp(B -> F), each source the reference and F the distorted image."""
    return vif_pair(a, f) + vif_pair(b, f)


def qabf(a: np.ndarray, b: np.ndarray, f: np.ndarray) -> float:
    """Qabf (Xydeas & Petrovic 2000), Sobel gradients, L = 1; see :func:`qabf_nabf`."""
    return qabf_nabf(a, b, f)[0]


def nabf(a: np.ndarray, b: np.ndarray, f: np.ndarray) -> float:
    """Modified fusion-artefact measure Nabf (Kumar 2013); lower is better. See docs/metrics.md."""
    return qabf_nabf(a, b, f)[1]


def ssim(a: np.ndarray, b: np.ndarray, f: np.ndarray) -> float:
    """SSIM = SSIM(A, F) + SSIM(B, F) (so 2.0 at most)."""
    return ssim_pair(a, f) + ssim_pair(b, f)


def cc(a: np.ndarray, b: np.ndarray, f: np.ndarray) -> float:
    """CC = (corr(A, F) + corr(B, F)) / 2."""
    return (correlation(a, f) + correlation(b, f)) / 2.0


def psnr(a: np.ndarray, b: np.ndarray, f: np.ndarray) -> float:
    """PSNR = 10 log10(255^2 / ((MSE(A, F) + MSE(B, F)) / 2)) dB; +inf when A = B = F."""
    a, b, f = (np.asarray(v, dtype=np.float64) for v in (a, b, f))
    mse = (float(np.mean((a - f) ** 2)) + float(np.mean((b - f) ** 2))) / 2.0
    if mse == 0.0:
        return float("inf")
    return 10.0 * math.log10(255.0 ** 2 / mse)


def fusion_metrics(ir: np.ndarray, vi: np.ndarray, fused: np.ndarray) -> dict[str, float]:
    """All twelve metrics of :data:`METRIC_NAMES` for one (IR, visible, fused) triple.

    Args:
        ir: infrared image (source A).
        vi: visible image (source B).
        fused: fused image (F).
        Each is (H, W) or (H, W, 1|3|4), uint8 0..255 or float 0..1, all of the same H x W
        (at least :data:`MIN_SIDE` pixels per side). Colour is reduced to BT.601 luminance.

    Returns:
        dict name -> float, in the order of :data:`METRIC_NAMES`.

    Raises:
        ValueError: bad dtype/shape/range, sizes that differ, or an image smaller than MIN_SIDE.
    """
    a = to_gray255(ir, "ir")
    b = to_gray255(vi, "vi")
    f = to_gray255(fused, "fused")
    if not (a.shape == b.shape == f.shape):
        raise ValueError(f"image sizes differ: ir {a.shape[1]}x{a.shape[0]}, vi {b.shape[1]}x{b.shape[0]}, "
                         f"fused {f.shape[1]}x{f.shape[0]} (W x H)")
    if min(a.shape) < MIN_SIDE:
        raise ValueError(f"images are {a.shape[1]}x{a.shape[0]}; fusion metrics need at least "
                         f"{MIN_SIDE} pixels per side (VIF uses four scales)")
    q, n = qabf_nabf(a, b, f)
    out = {
        "EN": entropy(f),
        "SD": std_dev(f),
        "SF": spatial_frequency(f),
        "AG": average_gradient(f),
        "MI": mutual_information(a, b, f),
        "SCD": scd(a, b, f),
        "VIF": vif(a, b, f),
        "Qabf": q,
        "SSIM": ssim(a, b, f),
        "CC": cc(a, b, f),
        "PSNR": psnr(a, b, f),
        "Nabf": n,
    }
    return {k: out[k] for k in METRIC_NAMES}


# ---------------------------------------------------------------- folder evaluation


class FusedFolderError(UserError):
    """A fused-image folder does not match its paired folder (missing file, wrong size, bad dtype)."""


def find_fused(fused_dir: Path, name: str) -> Path | None:
    """The fused image for pair ``name``: same file name, else same stem with .png (then any image suffix)."""
    from ..data.paired import IMAGE_SUFFIXES

    exact = fused_dir / name
    if exact.is_file():
        return exact
    stem = Path(name).stem
    for suf in (".png", *IMAGE_SUFFIXES):
        p = fused_dir / f"{stem}{suf}"
        if p.is_file():
            return p
    return None


def _fused_array(path: Path) -> np.ndarray:
    from ..data.paired import read_image

    img = read_image(path)
    if img.dtype == np.uint16:
        return img.astype(np.float64) / 65535.0
    if img.dtype != np.uint8:
        raise FusedFolderError(f"{path}: unsupported dtype {img.dtype} (expected 8- or 16-bit PNG)")
    return img


def evaluate_folder(pairs_root: str | Path, fused_dir: str | Path, *, only_fused: bool = False,
                    resize_mismatched: bool = False, progress: bool = True) -> list[dict[str, Any]]:
    """Metrics of every fused image in ``fused_dir`` against its pair in the paired folder ``pairs_root``.

    Args:
        pairs_root: folder with ``ir/`` and ``vi/`` (:class:`ivif_fusion.data.paired.PairedFolder`).
        fused_dir: folder with one fused image per pair, same file name (or same stem, ``.png``).
        only_fused: evaluate only the pairs that have a fused image (default: a missing one is an error).
        resize_mismatched: resize visible images whose size differs from their thermal partner.
        progress: show a tqdm progress bar on stderr.

    Returns:
        One dict per pair: ``{"name": ..., "EN": ..., ..., "Nabf": ...}``, in name order.

    Raises:
        FusedFolderError: the fused folder is missing, a fused image is missing or has the wrong size.
    """
    from tqdm import tqdm

    from ..data.paired import PairedFolder

    fused_dir = Path(fused_dir)
    if not fused_dir.is_dir():
        raise FusedFolderError(f"fused folder {fused_dir} not found")
    folder = PairedFolder(pairs_root, resize_mismatched=resize_mismatched)
    found = {n: find_fused(fused_dir, n) for n in folder.names}
    missing = [n for n, p in found.items() if p is None]
    if missing and not only_fused:
        raise FusedFolderError(f"{len(missing)} of {len(found)} pair(s) have no fused image in {fused_dir}; first: "
                               f"'{missing[0]}' (expected {fused_dir / missing[0]} or the same stem with .png; "
                               "--only-fused evaluates just the pairs that have one)")
    names = [n for n in folder.names if found[n] is not None]
    if not names:
        raise FusedFolderError(f"no fused image in {fused_dir} matches a pair of {folder.root}")
    rows = []
    for name in tqdm(names, desc="fusion metrics", unit="img", disable=not progress):
        s = folder.load(name)
        path = found[name]
        fused = _fused_array(path)
        if fused.shape[:2] != s.ir.shape:
            raise FusedFolderError(f"{path}: fused image is {fused.shape[1]}x{fused.shape[0]} but pair '{name}' is "
                                   f"{s.ir.shape[1]}x{s.ir.shape[0]}")
        try:
            m = fusion_metrics(s.ir, s.vi, fused)
        except ValueError as e:
            raise FusedFolderError(f"pair '{name}': {e}") from e
        rows.append({"name": name, **m})
    return rows


def summarize(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per metric: mean and std (ddof=0) over the images where it is finite, and that count.

    Rows where a metric is NaN (undefined, e.g. flat sources) or +inf (PSNR of identical images)
    are left out of that metric's mean; ``n`` says how many were used.
    """
    out = []
    for k in METRIC_NAMES:
        v = np.array([r[k] for r in rows], dtype=np.float64)
        v = v[np.isfinite(v)]
        out.append({"metric": k, "mean": float(v.mean()) if v.size else float("nan"),
                    "std": float(v.std()) if v.size else float("nan"), "n": int(v.size),
                    "higher_is_better": HIGHER_IS_BETTER[k]})
    return out
