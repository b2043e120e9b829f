"""COCO-style detection mAP (pycocotools ``COCOeval``) from in-memory per-image box lists.

Inputs are per image, in pixels, corners (x1, y1, x2, y2):

- ground truth: an (N, 5) array-like ``[class_id, x1, y1, x2, y2]`` per image (the output of
  :func:`ivif_fusion.data.labels.yolo_to_xyxy`);
- predictions: an (M, 6) array-like ``[class_id, x1, y1, x2, y2, score]`` per image, or a list of
  objects with ``class_id, score, x1, y1, x2, y2`` attributes (:class:`ivif_fusion.types.Detection`).

``gt`` and ``preds`` are either sequences of the same length (image i of one is image i of the
other) or dicts keyed by image name with the same keys. Images without ground truth are still
evaluated (their detections are false positives). Class ids are 0-based indices into
``class_names``. COCO's rules apply: 101-point interpolated precision, IoU thresholds
0.50:0.05:0.95, a detection matches at threshold t when IoU >= t, up to ``max_dets`` detections
per image (highest scores), all areas.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .bootstrap import paired_bootstrap_difference


def _rows(item: Any, width: int, what: str) -> np.ndarray:
    """Per-image boxes -> (K, width) float64 array."""
    if item is None:
        return np.zeros((0, width))
    if isinstance(item, (list, tuple)) and item and hasattr(item[0], "x1"):
        if width != 6:
            raise ValueError(f"{what}: Detection objects are only accepted as predictions")
        return np.array([[d.class_id, d.x1, d.y1, d.x2, d.y2, d.score] for d in item], dtype=np.float64)
    a = np.asarray(item, dtype=np.float64)
    if a.size == 0:
        return np.zeros((0, width))
    if a.ndim != 2 or a.shape[1] != width:
        cols = "class, x1, y1, x2, y2" + (", score" if width == 6 else "")
        raise ValueError(f"{what}: expected an (N, {width}) array [{cols}], got shape {a.shape}")
    if not np.isfinite(a).all():
        raise ValueError(f"{what}: contains NaN or inf")
    return a


def _align(gt: Sequence | Mapping, preds: Sequence | Mapping) -> tuple[list[str], list[Any], list[Any]]:
    if isinstance(gt, Mapping) or isinstance(preds, Mapping):
        if not (isinstance(gt, Mapping) and isinstance(preds, Mapping)):
            raise ValueError("gt and preds must both be sequences or both be dicts keyed by image name")
        extra = sorted(set(preds) - set(gt), key=str)
        if extra:
            raise ValueError(f"predictions for {len(extra)} image(s) without ground-truth entry, first: {extra[0]!r}")
        names = list(gt)
        return [str(n) for n in names], [gt[n] for n in names], [preds.get(n) for n in names]
    if len(gt) != len(preds):
        raise ValueError(f"gt has {len(gt)} images but preds has {len(preds)}")
    return [str(i) for i in range(len(gt))], list(gt), list(preds)


def coco_map(gt: Sequence | Mapping, preds: Sequence | Mapping, class_names: Sequence[str], *,
             max_dets: int = 100) -> dict[str, Any]:
    """COCO mAP of ``preds`` against ``gt``.

    Returns:
        ``{"mAP50": float, "mAP50-95": float, "mAP75": float, "AP50": {class_name: float},
        "AP50-95": {class_name: float}, "images": int, "gt_boxes": int, "pred_boxes": int}``.
        Means run over the classes that have ground truth (COCO ignores the others; their
        per-class entries are NaN). With no predictions at all every AP is 0.0 (NaN for classes
        without ground truth); with no ground truth at all the means are NaN.

    Raises:
        ValueError: malformed boxes, class ids outside ``class_names``, or mismatched inputs.
    """
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    names, gts, dts = _align(gt, preds)
    nc = len(class_names)
    if nc == 0:
        raise ValueError("class_names is empty")
    images, anns, dets = [], [], []
    for i, (name, g, d) in enumerate(zip(names, gts, dts, strict=True), start=1):
        g = _rows(g, 5, f"gt[{name}]")
        d = _rows(d, 6, f"preds[{name}]")
        for arr, what in ((g, "gt"), (d, "preds")):
            if len(arr) and (np.any(arr[:, 0] < 0) or np.any(arr[:, 0] >= nc) or np.any(arr[:, 0] % 1)):
                raise ValueError(f"{what}[{name}]: class ids must be integers in 0..{nc - 1}, got {arr[:, 0].tolist()}")
            if len(arr) and (np.any(arr[:, 3] < arr[:, 1]) or np.any(arr[:, 4] < arr[:, 2])):
                raise ValueError(f"{what}[{name}]: boxes must be x1 <= x2, y1 <= y2 (pixels, xyxy)")
        # COCO wants an image size; only areas matter here and they come from the boxes
        images.append({"id": i, "file_name": name, "width": 0, "height": 0})
        for c, x1, y1, x2, y2 in g:
            w, h = x2 - x1, y2 - y1
            # ids start at 1: COCOeval treats a matched gt id of 0 as "unmatched"
            anns.append({"id": len(anns) + 1, "image_id": i, "category_id": int(c) + 1,
                         "bbox": [x1, y1, w, h], "area": w * h, "iscrowd": 0})
        for c, x1, y1, x2, y2, s in d:
            dets.append({"image_id": i, "category_id": int(c) + 1, "bbox": [x1, y1, x2 - x1, y2 - y1],
                         "score": float(s)})
    out: dict[str, Any] = {"images": len(images), "gt_boxes": len(anns), "pred_boxes": len(dets)}
    has_gt = np.zeros(nc, dtype=bool)
    for a in anns:
        has_gt[a["category_id"] - 1] = True

    if not dets or not anns:
        # COCO cannot load an empty result list; the answer is known: 0 where there is gt
        per = {n: (0.0 if has_gt[k] else float("nan")) for k, n in enumerate(class_names)}
        m = 0.0 if anns else float("nan")
        out.update({"mAP50": m, "mAP50-95": m, "mAP75": m, "AP50": dict(per), "AP50-95": dict(per)})
        return out

    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
        coco_gt = COCO()
        coco_gt.dataset = {"images": images, "annotations": anns,
                           "categories": [{"id": k + 1, "name": n} for k, n in enumerate(class_names)]}
        coco_gt.createIndex()
        coco_dt = coco_gt.loadRes(dets)
        ev = COCOeval(coco_gt, coco_dt, iouType="bbox")
        ev.params.imgIds = [im["id"] for im in images]
        ev.params.catIds = list(range(1, nc + 1))
        ev.params.maxDets = [1, 10, max_dets]
        ev.evaluate()
        ev.accumulate()
    prec = ev.eval["precision"]  # [T iou, R recall, K class, A area, M maxdets]; -1 = no gt
    iou = ev.params.iouThrs
    t50, t75 = int(np.argmin(np.abs(iou - 0.5))), int(np.argmin(np.abs(iou - 0.75)))
    a_all = ev.params.areaRngLbl.index("all")
    p = prec[:, :, :, a_all, -1]

    def _mean(x: np.ndarray) -> float:
        v = x[x > -1]
        return float(v.mean()) if v.size else float("nan")

    out["mAP50"] = _mean(p[t50])
    out["mAP75"] = _mean(p[t75])
    out["mAP50-95"] = _mean(p)
    out["AP50"] = {n: _mean(p[t50, :, k]) for k, n in enumerate(class_names)}
    out["AP50-95"] = {n: _mean(p[:, :, k]) for k, n in enumerate(class_names)}
    return out


def paired_bootstrap(gt: Sequence, preds_a: Sequence, preds_b: Sequence, class_names: Sequence[str], *,
                     key: str = "mAP50", resamples: int = 500, seed: int = 0) -> dict[str, float]:
    """How sure is "B beats A"? Paired image bootstrap of ``coco_map(B)[key] - coco_map(A)[key]``
    (:func:`ivif_fusion.metrics.bootstrap.paired_bootstrap_difference`: ``delta``, ``low``, ``high``,
    ``p_b_not_better``, ``resamples``); NaN resamples (no ground truth drawn) are dropped.
    """
    if not (len(gt) == len(preds_a) == len(preds_b)):
        raise ValueError(f"paired_bootstrap: {len(gt)} gt, {len(preds_a)} and {len(preds_b)} prediction lists")

    def difference(idx: np.ndarray) -> float:
        g = [gt[i] for i in idx]
        return coco_map(g, [preds_b[i] for i in idx], class_names)[key] - coco_map(g, [preds_a[i] for i in idx],
                                                                                 class_names)[key]

    return paired_bootstrap_difference(len(gt), difference, resamples=resamples, seed=seed)
