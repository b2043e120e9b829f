"""Semantic-segmentation metrics: an accumulating confusion matrix and mean IoU.

Conventions: rows of the confusion matrix are ground-truth classes, columns are predicted
classes; pixels whose ground truth is ``ignore_index`` are skipped. IoU_c = TP / (TP + FP + FN).
A class absent from both the ground truth and the predictions (TP + FP + FN = 0) has no
defined IoU: it is NaN in the per-class list and left out of the mean. A class predicted but
absent from the ground truth has IoU 0 and counts.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .bootstrap import paired_bootstrap_difference


def confusion_matrix(pred: np.ndarray, gt: np.ndarray, num_classes: int, ignore_index: int | None = 255,
                     conf: np.ndarray | None = None) -> np.ndarray:
    """Add the pixels of one (or a batch of) prediction/ground-truth masks to a confusion matrix.

    Args:
        pred: integer class ids, any shape.
        gt: integer class ids, same shape; ``ignore_index`` marks pixels to skip.
        num_classes: number of classes C.
        ignore_index: ground-truth value to skip (None: skip nothing).
        conf: (C, C) int64 matrix to add into (in place); a new one when None.

    Returns:
        The (C, C) int64 matrix, rows = ground truth, columns = prediction.

    Raises:
        ValueError: shapes differ, or a class id outside 0..C-1 (other than ignore_index in gt).

    >>> confusion_matrix(np.array([0, 1, 1]), np.array([0, 1, 255]), 2).tolist()
    [[1, 0], [0, 1]]
    """
    pred = np.asarray(pred)
    gt = np.asarray(gt)
    if pred.shape != gt.shape:
        raise ValueError(f"prediction {pred.shape} and ground truth {gt.shape} differ in shape")
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    if conf is None:
        conf = np.zeros((num_classes, num_classes), dtype=np.int64)
    elif conf.shape != (num_classes, num_classes):
        raise ValueError(f"conf has shape {conf.shape}, expected {(num_classes, num_classes)}")
    g = gt.ravel().astype(np.int64)
    p = pred.ravel().astype(np.int64)
    keep = g != ignore_index if ignore_index is not None else np.ones(g.shape, dtype=bool)
    g, p = g[keep], p[keep]
    if g.size:
        if g.min() < 0 or g.max() >= num_classes:
            bad = g[(g < 0) | (g >= num_classes)][0]
            raise ValueError(f"ground truth has class id {bad} outside 0..{num_classes - 1} "
                             f"(ignore_index={ignore_index})")
        if p.min() < 0 or p.max() >= num_classes:
            bad = p[(p < 0) | (p >= num_classes)][0]
            raise ValueError(f"prediction has class id {bad} outside 0..{num_classes - 1}")
        conf += np.bincount(g * num_classes + p, minlength=num_classes * num_classes).reshape(num_classes, num_classes)
    return conf


def miou(conf: np.ndarray, classes: Sequence[int] | None = None) -> tuple[float, np.ndarray]:
    """Mean IoU and per-class IoU (float64, NaN for classes absent from both gt and prediction).

    The mean is over the classes with a defined IoU (only those of ``classes`` when given, e.g.
    the object classes without the background); NaN when none has any pixel.

    >>> m, per = miou(np.array([[2, 1], [0, 1]]))
    >>> round(m, 4), per.round(4).tolist()
    (0.5833, [0.6667, 0.5])
    """
    conf = np.asarray(conf, dtype=np.float64)
    if conf.ndim != 2 or conf.shape[0] != conf.shape[1]:
        raise ValueError(f"conf must be a square (C, C) matrix, got {conf.shape}")
    tp = np.diag(conf)
    union = conf.sum(axis=0) + conf.sum(axis=1) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(union > 0, tp / union, np.nan)
    valid = ~np.isnan(iou)
    if classes is not None:
        chosen = np.zeros_like(valid)
        chosen[list(classes)] = True
        valid &= chosen
    return (float(iou[valid].mean()) if valid.any() else float("nan")), iou


def pixel_accuracy(conf: np.ndarray) -> float:
    """Fraction of counted pixels whose prediction equals the ground truth (NaN when none)."""
    conf = np.asarray(conf, dtype=np.float64)
    total = conf.sum()
    return float(np.trace(conf) / total) if total > 0 else float("nan")


def paired_bootstrap_miou(confs_a: np.ndarray, confs_b: np.ndarray, classes: Sequence[int] | None = None, *,
                          resamples: int = 500, seed: int = 0) -> dict[str, float]:
    """How sure is "B segments better than A"? Paired image bootstrap of ``miou(B) - miou(A)``
    (:func:`ivif_fusion.metrics.bootstrap.paired_bootstrap_difference`).

    ``confs_a`` and ``confs_b`` are per-image confusion matrices (N, C, C) of the same N images;
    mIoU is taken over ``classes`` of the summed matrix, as a dataset mIoU is.
    """
    a = np.asarray(confs_a, dtype=np.float64)
    b = np.asarray(confs_b, dtype=np.float64)
    if a.ndim != 3 or a.shape != b.shape or a.shape[1] != a.shape[2]:
        raise ValueError(f"paired_bootstrap_miou: need two (N, C, C) stacks of one shape, got {a.shape}, {b.shape}")

    def difference(idx: np.ndarray) -> float:
        return miou(b[idx].sum(0), classes)[0] - miou(a[idx].sum(0), classes)[0]

    return paired_bootstrap_difference(a.shape[0], difference, resamples=resamples, seed=seed)
