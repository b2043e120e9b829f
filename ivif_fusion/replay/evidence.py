"""Report material gathered while replaying: sample images, fusion metrics, detection mAP and mask statistics.

Which pairs are kept is decided up front from the expected number of pairs (spread evenly);
ground-truth boxes come from a make-bag sidecar and are scaled to the processed image size.
Segmentation tasks are summarised over every fused pair: how many masks, and the fraction of
their pixels per class id.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from ..imageops import to_uint8
from ..types import Detection, Pair, Result
from .summary import ReplaySummary, Sample

log = logging.getLogger("ivif_fusion.replay")


def spread(n_expected: int, k: int) -> set[int]:
    """k indices spread evenly over 0..n_expected-1."""
    if k <= 0 or n_expected <= 0:
        return set()
    return {int(round(x)) for x in np.linspace(0, n_expected - 1, min(k, n_expected))}


def gt_lookup(sidecar: dict | None) -> tuple[dict[int, list], list[str], list[int] | None]:
    """stamp (thermal and visible) -> boxes, class names, source image size."""
    if not sidecar or not sidecar.get("classes"):
        return {}, [], None
    table: dict[int, list] = {}
    for f in sidecar.get("frames", []):
        if "boxes" in f:
            table[int(f["thermal_stamp_ns"])] = f["boxes"]
            table.setdefault(int(f["visible_stamp_ns"]), f["boxes"])
    return table, list(sidecar["classes"]), sidecar.get("image_size")


def map_classes(gts: dict[int, list], gt_classes: list[str], task_classes: list[str]) -> tuple[dict, str]:
    """Ground-truth class ids -> the task's class ids (by name); boxes of other classes are left out."""
    if gt_classes == task_classes:
        return {i: np.asarray(b, dtype=np.float64).reshape(-1, 5) for i, b in gts.items()}, ""
    idx = {n: k for k, n in enumerate(task_classes)}
    missing = sorted({gt_classes[int(b[0])] for bs in gts.values() for b in bs} - set(idx))
    out = {}
    for i, bs in gts.items():
        rows = [[idx[gt_classes[int(b[0])]], *b[1:]] for b in bs if gt_classes[int(b[0])] in idx]
        out[i] = np.asarray(rows, dtype=np.float64).reshape(-1, 5)
    note = f"ground-truth classes not predicted by the task and left out: {missing}" if missing else ""
    return out, note


class Evidence:
    """Collects, per fused pair, what the report shows besides the counts.

    Args:
        pipe: the pipeline (``preprocess``, ``plans``, ``task_config``).
        sidecar: make-bag sidecar or None (ground-truth boxes).
        expected_pairs: how many pairs the replay should fuse (chooses which to keep).
        sample_frames: pairs kept as report samples.
        metrics_pairs: pairs on which fusion metrics are computed.
    """

    def __init__(self, pipe: Any, sidecar: dict | None, expected_pairs: int, sample_frames: int,
                 metrics_pairs: int) -> None:
        self.pipe = pipe
        self.sample_frames = sample_frames
        self.sample_at = spread(expected_pairs, sample_frames)
        self.metric_at = spread(expected_pairs, metrics_pairs)
        self.gt_table, self.gt_classes, self.gt_size = gt_lookup(sidecar)
        self.samples: list[Sample] = []
        self.metric_data: list[tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]] = []
        self.preds: dict[str, dict[int, list[Detection]]] = {p.cfg.name: {} for p in pipe.plans
                                                              if p.cfg.kind == "detection"}
        self.gts: dict[int, list] = {}
        self.seg_classes = {p.cfg.name: segmentation_classes(p) for p in pipe.plans if p.cfg.kind == "segmentation"}
        self.seg_pixels = {name: np.zeros(256, np.int64) for name in self.seg_classes}  # pixels per class id
        self.seg_masks = dict.fromkeys(self.seg_classes, 0)
        self.last: tuple[Pair, Result, int, list | None] | None = None  # a sample when fewer pairs came

    def add(self, index: int, result: Result, ref_stamp_ns: int) -> None:
        """Record fused pair number ``index`` (ground truth, predictions, samples, metric inputs)."""
        pair = result.pair
        gt = self._ground_truth(index, result)
        self.last = (pair, result, ref_stamp_ns, gt)
        self._count_masks(result)
        if index in self.sample_at or index in self.metric_at:
            ir8, rgb8 = self._inputs_uint8(pair)
            if index in self.metric_at:
                self.metric_data.append((ir8, rgb8, {k: o.fused_rgb for k, o in result.outputs.items()}))
            if index in self.sample_at:
                self.samples.append(_sample(ref_stamp_ns, ir8, rgb8, result, gt))

    def finish_samples(self) -> None:
        """Fewer pairs than expected: add the last fused pair as a sample if it is not one already."""
        if self.last is None or not 0 < len(self.samples) < self.sample_frames:
            return
        pair, result, stamp, gt = self.last
        if self.samples[-1].stamp_ns != stamp:
            self.samples.append(_sample(stamp, *self._inputs_uint8(pair), result, gt))

    def fill(self, summary: ReplaySummary) -> None:
        """Samples, fusion metrics and detection mAP into ``summary`` (after the timed part)."""
        summary.samples = self.samples
        self._fusion_metrics(summary)
        self._detection_map(summary)
        for name, classes in self.seg_classes.items():
            summary.segmentation[name] = mask_statistics(self.seg_pixels[name], self.seg_masks[name], classes)

    # ------------------------------------------------------------------ internals

    def _inputs_uint8(self, pair: Pair) -> tuple[np.ndarray, np.ndarray]:
        ir_p, rgb_p = self.pipe.preprocess(pair.thermal.image, pair.visible.image)
        return to_uint8(ir_p), to_uint8(rgb_p)

    def _ground_truth(self, index: int, result: Result) -> list | None:
        if not self.gt_table:
            return None
        pair = result.pair
        boxes = self.gt_table.get(pair.thermal.stamp_ns, self.gt_table.get(pair.visible.stamp_ns))
        if boxes is None or not self.gt_size:
            return None
        h, w = next(iter(result.outputs.values())).fused_rgb.shape[:2]
        sx, sy = w / self.gt_size[0], h / self.gt_size[1]
        gt = [[b[0], b[1] * sx, b[2] * sy, b[3] * sx, b[4] * sy] for b in boxes]
        self.gts[index] = gt
        for name in self.preds:
            self.preds[name][index] = result.outputs[name].detections or []
        return gt

    def _count_masks(self, result: Result) -> None:
        for name in self.seg_classes:
            mask = result.outputs[name].mask
            if mask is not None:
                self.seg_masks[name] += 1
                self.seg_pixels[name] += np.bincount(np.asarray(mask, np.uint8).ravel(), minlength=256)

    def _fusion_metrics(self, summary: ReplaySummary) -> None:
        if not self.metric_data:
            return
        from ..metrics.fusion import METRIC_NAMES, fusion_metrics

        per_task: dict[str, list[dict[str, float]]] = {}
        for ir8, rgb8, fused in self.metric_data:
            for name, f in fused.items():
                try:
                    per_task.setdefault(name, []).append(fusion_metrics(ir8, rgb8, f))
                except ValueError as e:  # e.g. images smaller than the metrics need
                    log.warning("fusion metrics skipped: %s", e)
                    break
        for name, rows in per_task.items():
            summary.fusion_metrics[name] = {m: float(np.nanmean([r[m] for r in rows])) for m in METRIC_NAMES}
        summary.metrics_pairs = len(self.metric_data)

    def _detection_map(self, summary: ReplaySummary) -> None:
        if not (self.gts and self.preds):
            return
        from ..metrics.detection import coco_map

        for name, pred in self.preds.items():
            task_classes = list(self.pipe.task_config(name).classes) or self.gt_classes
            gt_mapped, note = map_classes(self.gts, self.gt_classes, task_classes)
            res = coco_map(gt_mapped, {i: pred.get(i, []) for i in gt_mapped}, task_classes)
            res["note"] = note
            summary.detection_map[name] = res


def segmentation_classes(plan: Any) -> list[str]:
    """Class names of a segmentation task: its configured ones, else its network's."""
    return list(plan.cfg.classes) or list(getattr(plan.network, "classes", None) or [])


def mask_statistics(pixels: np.ndarray, masks: int, classes: list[str]) -> dict:
    """Masks counted and the fraction of their pixels per class (``id N`` for an id outside ``classes``)."""
    total = int(pixels.sum())
    fraction = {name: float(pixels[k]) / total if total else 0.0 for k, name in enumerate(classes)}
    fraction.update({f"id {k}": float(pixels[k]) / total for k in np.flatnonzero(pixels)
                     if k >= len(classes)})
    return {"masks": masks, "pixels": total, "classes": list(classes), "pixel_fraction": fraction}


def _sample(stamp: int, ir8: np.ndarray, rgb8: np.ndarray, result: Result, gt: list | None) -> Sample:
    return Sample(stamp, ir8, rgb8, {k: o.fused_rgb for k, o in result.outputs.items()},
                  {k: o.detections for k, o in result.outputs.items()}, gt,
                  {k: o.mask for k, o in result.outputs.items() if o.mask is not None})
