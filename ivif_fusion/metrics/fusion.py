"""No-reference and source-referenced fusion metrics: EN, SD, SF, AG, MI, SCD, VIF, Qabf, SSIM, CC, PSNR, Nabf.

Every metric follows the conventions of the CDDFuse evaluator (``utils/Evaluator.py`` of
Zhaozixiang1228/MMIF-CDDFuse, the evaluator of the CDDFuse/DDFM/EMMA papers) by default; Nabf,
which that evaluator lacks, follows Linfeng-Tang/Image-Fusion. Other conventions are named
variants (``AG_VARIANTS``, ``SSIM_VARIANTS``, ``PSNR_PEAKS``, ``qabf.QABF_CONVENTIONS``,
``qabf.NABF_SCALES``). Formulas, references and where public suites disagree: docs/metrics.md.

- Every image is reduced to one gray channel on a 0..255 scale, rounded to integers, held as
  float64, as the evaluator reads files: colour goes through OpenCV's BGR->gray on float32
  (0.114 B + 0.587 G + 0.299 R), then rounding half to even. uint8 input is used as is; float
  input must lie in 0..1 and is first quantized to 8 bits per channel (round(255 x), as saving
  a PNG would), so a float image and its uint8 version give exactly the same gray image.
- ``A`` is the thermal (infrared) image, ``B`` the visible image and ``F`` the fused image.
- The per-metric functions take gray 0..255 arrays as made by :func:`to_gray255`;
  :func:`fusion_metrics` does the conversion and the shape checks.
- Quantities the evaluator leaves undefined are NaN (a correlation with a constant image, Qabf
  when neither source has an edge); VIFp of a flat reference is 1.0, as there.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import UserError
from .qabf import nabf, qabf, qabf_nabf
from .vif import vif, vif_pair

# qabf_nabf and vif_pair are re-exported: callers import every fusion metric from this module
__all__ = ["AG_VARIANTS", "HIGHER_IS_BETTER", "METRIC_NAMES", "MIN_SIDE", "PSNR_PEAKS", "SSIM_VARIANTS",
           "FusedFolderError", "average_gradient", "cc", "correlation", "entropy", "evaluate_folder", "find_fused",
           "fusion_metrics", "mutual_information", "mutual_information_pair", "nabf", "psnr", "qabf", "qabf_nabf",
           "scd", "spatial_frequency", "ssim", "ssim_pair", "std_dev", "summarize", "to_gray255", "vif", "vif_pair"]

#: Metric names in the order of the usual IVIF tables.
METRIC_NAMES: tuple[str, ...] = ("EN", "SD", "SF", "AG", "MI", "SCD", "VIF", "Qabf", "SSIM", "CC", "PSNR", "Nabf")
#: True where a larger value means a better fusion (Nabf measures artefacts: lower is better).
HIGHER_IS_BETTER: dict[str, bool] = {name: name != "Nabf" for name in METRIC_NAMES}

#: Smallest side accepted by :func:`fusion_metrics` (VIF's fourth scale needs 41 pixels).
MIN_SIDE = 41

#: AG difference schemes: "cddfuse" (central differences, one-sided at the border, mean over H x W),
#: "vifb" (the same differences summed and divided by (H-1)(W-1)), "forward" (forward differences
#: over the (H-1) x (W-1) region).
AG_VARIANTS = ("cddfuse", "vifb", "forward")
#: SSIM conventions: the input dtype and the keyword arguments of skimage.metrics.structural_similarity.
#: "cddfuse": what the evaluator's ``ssim(F, X)`` on its float32 images does with its pinned
#: scikit-image 0.19 (7x7 uniform window, sample covariance, data_range 2 from the float dtype range
#: -1..1, local moments in float32). "wang": Wang et al. 2004 (11x11 Gaussian, sigma 1.5, population
#: moments, data_range 255, float64).
SSIM_VARIANTS: dict[str, tuple[type, dict[str, Any]]] = {
    "cddfuse": (np.float32, {"win_size": 7, "data_range": 2.0}),
    "wang": (np.float64, {"gaussian_weights": True, "sigma": 1.5, "use_sample_covariance": False,
                          "data_range": 255.0}),
}
#: PSNR peak: "max_fused" (the evaluator: the largest gray level of F) or "255".
PSNR_PEAKS = ("max_fused", "255")


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
        # uint8 data then gives exactly the gray levels of that uint8 image (the slack rounds into 0..255)
        x = np.rint(x * 255.0)
    else:
        raise ValueError(f"{name}: unsupported dtype {a.dtype} (use uint8 0..255 or float 0..1)")
    if x.ndim == 3 and x.shape[2] == 1:
        x = x[..., 0]
    elif x.ndim == 3:
        x = bgr_float32_to_gray(np.ascontiguousarray(x[..., 2::-1], dtype=np.float32))
    return np.rint(x)


def bgr_float32_to_gray(bgr: np.ndarray) -> np.ndarray:
    """OpenCV's float32 BGR -> gray (the evaluator's ``cvtColor(imread(p).astype('float32'), BGR2GRAY)``), float64."""
    import cv2

    return cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY).astype(np.float64)


def _levels(x: np.ndarray) -> np.ndarray:
    """Integer gray levels of a gray255 array, flattened (rounded, so float noise is harmless)."""
    return np.rint(x).astype(np.intp).ravel()


def _float_2x2(f: np.ndarray, metric: str) -> np.ndarray:
    """``f`` as float64 (differences of uint8 would wrap), checked to have at least 2x2 pixels."""
    f = np.asarray(f, dtype=np.float64)
    if f.shape[0] < 2 or f.shape[1] < 2:
        raise ValueError(f"{metric} needs at least 2x2 pixels, got {f.shape}")
    return f


# ---------------------------------------------------------------- single-image metrics


def entropy(f: np.ndarray) -> float:
    """EN: Shannon entropy in bits of the 256-bin gray histogram of ``f``."""
    counts = np.bincount(_levels(f))
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log2(p)).sum()) + 0.0  # + 0.0 turns -0.0 into 0.0


def std_dev(f: np.ndarray) -> float:
    """SD: population standard deviation (ddof=0) of the gray levels of ``f``."""
    return float(np.std(f))


def spatial_frequency(f: np.ndarray) -> float:
    """SF = sqrt(RF^2 + CF^2); RF/CF: mean squared horizontal/vertical first differences."""
    f = _float_2x2(f, "SF")
    return math.sqrt(float(np.mean(np.diff(f, axis=1) ** 2)) + float(np.mean(np.diff(f, axis=0) ** 2)))


def average_gradient(f: np.ndarray, variant: str = "cddfuse") -> float:
    """AG: mean of sqrt((dx^2 + dy^2) / 2); the difference scheme and the divisor by ``variant`` (:data:`AG_VARIANTS`)."""
    f = _float_2x2(f, "AG")
    if variant == "forward":
        dx = f[:-1, 1:] - f[:-1, :-1]
        dy = f[1:, :-1] - f[:-1, :-1]
        return float(np.mean(np.sqrt((dx * dx + dy * dy) / 2.0)))
    if variant not in AG_VARIANTS:
        raise ValueError(f"unknown AG variant '{variant}'; choose from {AG_VARIANTS}")
    # np.gradient: (f[i+1] - f[i-1]) / 2 inside, one-sided differences on the first and last row/column
    dy, dx = np.gradient(f)
    total = float(np.sum(np.sqrt((dx * dx + dy * dy) / 2.0)))
    h, w = f.shape
    return total / (h * w) if variant == "cddfuse" else total / ((h - 1) * (w - 1))


# ---------------------------------------------------------------- two-image building blocks


def mutual_information_pair(x: np.ndarray, y: np.ndarray) -> float:
    """MI(x, y) in nats from the 256x256 joint gray-level histogram."""
    joint = np.bincount(_levels(x) * 256 + _levels(y), minlength=65536).reshape(256, 256)
    pxy = joint / joint.sum()
    px, py = pxy.sum(axis=1), pxy.sum(axis=0)
    nz = pxy > 0
    outer = np.outer(px, py)
    return float(np.sum(pxy[nz] * np.log(pxy[nz] / outer[nz])))


def correlation(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson correlation over all pixels; NaN when either image is constant (0 / 0, as in the evaluator)."""
    xc, yc = np.ravel(x) - np.mean(x), np.ravel(y) - np.mean(y)
    # np.sum, not np.dot: BLAS threads gain nothing at this size and stall on a busy machine
    den = math.sqrt(float(np.sum(xc * xc)) * float(np.sum(yc * yc)))
    if den <= 0.0:
        return math.nan
    return float(np.sum(xc * yc)) / den


def ssim_pair(x: np.ndarray, y: np.ndarray, variant: str = "cddfuse") -> float:
    """Mean SSIM of two gray images by ``skimage.metrics.structural_similarity`` with :data:`SSIM_VARIANTS`.

    The "cddfuse" variant works in float32 like the evaluator: on real images that moves SSIM by
    about 1e-6 relative against float64, but near-zero values of low-contrast pairs move more.
    """
    from skimage.metrics import structural_similarity

    if variant not in SSIM_VARIANTS:
        raise ValueError(f"unknown SSIM variant '{variant}'; choose from {sorted(SSIM_VARIANTS)}")
    dtype, kwargs = SSIM_VARIANTS[variant]
    x, y = (np.asarray(v, dtype=dtype) for v in (x, y))
    return float(structural_similarity(x, y, **kwargs))


# ---------------------------------------------------------------- fusion metrics (A=thermal, B=visible, F=fused)


def mutual_information(a: np.ndarray, b: np.ndarray, f: np.ndarray) -> float:
    """MI = MI(A, F) + MI(B, F), nats."""
    return mutual_information_pair(a, f) + mutual_information_pair(b, f)


def scd(a: np.ndarray, b: np.ndarray, f: np.ndarray) -> float:
    """SCD = corr(F - B, A) + corr(F - A, B) (Aslantas & Bendes 2015)."""
    a, b, f = (np.asarray(v, dtype=np.float64) for v in (a, b, f))
    return correlation(f - b, a) + correlation(f - a, b)


def ssim(a: np.ndarray, b: np.ndarray, f: np.ndarray, variant: str = "cddfuse") -> float:
    """SSIM = SSIM(F, A) + SSIM(F, B) (the sum over the two sources, as the evaluator reports it)."""
    return ssim_pair(f, a, variant) + ssim_pair(f, b, variant)


def cc(a: np.ndarray, b: np.ndarray, f: np.ndarray) -> float:
    """CC = (corr(A, F) + corr(B, F)) / 2."""
    return (correlation(a, f) + correlation(b, f)) / 2.0


def psnr(a: np.ndarray, b: np.ndarray, f: np.ndarray, peak: str = "max_fused") -> float:
    """PSNR = 10 log10(P^2 / ((MSE(A, F) + MSE(B, F)) / 2)) dB, P by ``peak`` (:data:`PSNR_PEAKS`).

    +inf when A = B = F; -inf when F is all black but differs from a source (P = 0).
    """
    if peak not in PSNR_PEAKS:
        raise ValueError(f"unknown PSNR peak '{peak}'; choose from {PSNR_PEAKS}")
    a, b, f = (np.asarray(v, dtype=np.float64) for v in (a, b, f))
    mse = (float(np.mean((a - f) ** 2)) + float(np.mean((b - f) ** 2))) / 2.0
    p = float(f.max()) if peak == "max_fused" else 255.0
    if mse == 0.0:
        return math.inf
    if p == 0.0:
        return -math.inf
    return 10.0 * math.log10(p * p / mse)


def fusion_metrics(thermal: np.ndarray, visible: np.ndarray, fused: np.ndarray) -> dict[str, float]:
    """All twelve metrics of :data:`METRIC_NAMES` for one (thermal, visible, fused) triple.

    Args:
        thermal: infrared image (source A).
        visible: visible image (source B).
        fused: fused image (F).
        Each is (H, W) or (H, W, 1|3|4), uint8 0..255 or float 0..1, all of the same H x W
        (at least :data:`MIN_SIDE` pixels per side). Colour is reduced to gray as the evaluator does.

    Returns:
        dict name -> float, in the order of :data:`METRIC_NAMES`.

    Raises:
        ValueError: bad dtype/shape/range, sizes that differ, or an image smaller than MIN_SIDE.
    """
    a = to_gray255(thermal, "thermal")
    b = to_gray255(visible, "visible")
    f = to_gray255(fused, "fused")
    if not (a.shape == b.shape == f.shape):
        raise ValueError(f"image sizes differ: thermal {a.shape[1]}x{a.shape[0]}, visible {b.shape[1]}x{b.shape[0]}, "
                         f"fused {f.shape[1]}x{f.shape[0]} (W x H)")
    if min(a.shape) < MIN_SIDE:
        raise ValueError(f"images are {a.shape[1]}x{a.shape[0]}; fusion metrics need at least "
                         f"{MIN_SIDE} pixels per side (VIF uses four scales)")
    out = {
        "EN": entropy(f),
        "SD": std_dev(f),
        "SF": spatial_frequency(f),
        "AG": average_gradient(f),
        "MI": mutual_information(a, b, f),
        "SCD": scd(a, b, f),
        "VIF": vif(a, b, f),
        "Qabf": qabf(a, b, f),
        "SSIM": ssim(a, b, f),
        "CC": cc(a, b, f),
        "PSNR": psnr(a, b, f),
        "Nabf": nabf(a, b, f),
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
    for suf in IMAGE_SUFFIXES:  # .png first
        p = fused_dir / f"{stem}{suf}"
        if p.is_file():
            return p
    return None


def _fused_array(path: Path) -> np.ndarray:
    """The fused image as the evaluator reads it (``cv2.imread``: 3 channels, 8 bits, 16-bit data
    keeps its high byte, alpha dropped), in RGB order."""
    import cv2

    img = cv2.imdecode(np.fromfile(str(path), dtype=np.uint8), cv2.IMREAD_COLOR)
    if img is None:
        raise FusedFolderError(f"{path}: not a readable image")
    return img[..., ::-1]


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
        if fused.shape[:2] != s.thermal.shape:
            raise FusedFolderError(f"{path}: fused image is {fused.shape[1]}x{fused.shape[0]} but pair '{name}' is "
                                   f"{s.thermal.shape[1]}x{s.thermal.shape[0]}")
        try:
            m = fusion_metrics(s.thermal, s.visible, fused)
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
        mean, std = (float(v.mean()), float(v.std())) if v.size else (math.nan, math.nan)
        out.append({"metric": k, "mean": mean, "std": std, "n": int(v.size), "higher_is_better": HIGHER_IS_BETTER[k]})
    return out
