"""Paired image bootstrap of a difference between two inputs' dataset-level scores.

Why: on a few dozen images one box or one object more or less moves a dataset metric (mAP, mIoU)
by points, so a difference is only reported with its spread. Each resample draws the images with
replacement (the same draw for A and B: the pairing removes the between-image variance both
share) and recomputes the difference. Used by :func:`ivif_fusion.metrics.detection.paired_bootstrap`
and :func:`ivif_fusion.metrics.segmentation.paired_bootstrap_miou`.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def paired_bootstrap_difference(n: int, difference: Callable[[np.ndarray], float], *, resamples: int = 500,
                                seed: int = 0) -> dict[str, float]:
    """Bootstrap ``difference(idx)`` (score of B minus score of A on the images ``idx``) over ``n`` images.

    Returns ``{"delta": difference on all images, "low": 2.5 %, "high": 97.5 % percentile of the
    resampled differences, "p_b_not_better": fraction of resamples with a difference <= 0,
    "resamples": number kept}``; NaN resamples (e.g. no ground truth drawn) are dropped.
    """
    if resamples < 1:
        raise ValueError(f"resamples must be >= 1, got {resamples}")
    rng = np.random.default_rng(seed)
    diffs = []
    for _ in range(resamples):
        d = difference(rng.integers(0, n, n))
        if np.isfinite(d):
            diffs.append(d)
    d = np.asarray(diffs)
    observed = float(difference(np.arange(n)))
    if d.size == 0:
        return {"delta": observed, "low": float("nan"), "high": float("nan"), "p_b_not_better": float("nan"),
                "resamples": 0}
    return {"delta": observed, "low": float(np.percentile(d, 2.5)), "high": float(np.percentile(d, 97.5)),
            "p_b_not_better": float(np.mean(d <= 0)), "resamples": int(d.size)}
