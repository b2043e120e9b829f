"""Task metrics: COCO mAP through pycocotools on hand-checkable cases, confusion matrix and mIoU."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ivif_fusion.metrics.detection import coco_map
from ivif_fusion.metrics.segmentation import confusion_matrix, miou, pixel_accuracy
from ivif_fusion.types import Detection

CLASSES = ["person", "bicycle", "car"]


def _gt():
    return [
        np.array([[0, 10, 10, 50, 90], [2, 100, 40, 220, 120]]),
        np.array([[1, 5, 5, 60, 45]]),
        np.zeros((0, 5)),  # an image without ground truth
    ]


def _perfect(gt):
    return [np.hstack([g, np.full((len(g), 1), 0.9)]) for g in gt]


# ---------------------------------------------------------------- detection


def test_perfect_predictions_give_map_one():
    r = coco_map(_gt(), _perfect(_gt()), CLASSES)
    assert r["mAP50"] == pytest.approx(1.0, abs=1e-9)
    assert r["mAP50-95"] == pytest.approx(1.0, abs=1e-9)
    assert r["AP50"] == pytest.approx({"person": 1.0, "bicycle": 1.0, "car": 1.0}, abs=1e-9)
    assert (r["images"], r["gt_boxes"], r["pred_boxes"]) == (3, 3, 3)


def test_single_box_iou_062_scores_three_of_ten_thresholds():
    # GT 10x10, prediction 10x6.2 inside it: IoU = 62/100 = 0.62. Matches at t = 0.50, 0.55, 0.60
    # (COCO matches when IoU >= t), not from 0.65 on: AP50 = 1, AP75 = 0, mAP50-95 = 3/10.
    gt = [np.array([[0, 0, 0, 10, 10]])]
    pred = [np.array([[0, 0, 0, 10, 6.2, 0.8]])]
    r = coco_map(gt, pred, ["person"])
    assert r["mAP50"] == pytest.approx(1.0, abs=1e-9)
    assert r["mAP75"] == 0.0
    assert r["mAP50-95"] == pytest.approx(0.3, abs=1e-9)


def test_iou_exactly_on_a_threshold_matches():
    # IoU = 60/100 = 0.6 exactly: the >= rule counts 0.60 as a match -> still 3/10
    r = coco_map([np.array([[0, 0, 0, 10, 10]])], [np.array([[0, 0, 0, 10, 6, 0.8]])], ["person"])
    assert r["mAP50-95"] == pytest.approx(0.3, abs=1e-9)
    # IoU 0.58 misses 0.60: 2/10
    r = coco_map([np.array([[0, 0, 0, 10, 10]])], [np.array([[0, 0, 0, 10, 5.8, 0.8]])], ["person"])
    assert r["mAP50-95"] == pytest.approx(0.2, abs=1e-9)


def test_false_positive_on_image_without_gt_counts():
    gt = [np.array([[0, 0, 0, 10, 10]]), np.zeros((0, 5))]
    tp = np.array([[0, 0, 0, 10, 10, 0.5]])
    # a higher-scored false positive on the empty image: precision 1/2 at recall 1 -> AP 0.5
    r = coco_map(gt, [tp, np.array([[0, 20, 20, 30, 30, 0.9]])], ["person"])
    assert r["mAP50"] == pytest.approx(0.5, abs=1e-9)
    # ranked below the true positive it costs nothing
    r = coco_map(gt, [tp, np.array([[0, 20, 20, 30, 30, 0.1]])], ["person"])
    assert r["mAP50"] == pytest.approx(1.0, abs=1e-9)


def test_no_predictions_is_zero_and_silent(capsys):
    r = coco_map(_gt(), [[], None, np.zeros((0, 6))], CLASSES)
    assert r["mAP50"] == 0.0 and r["mAP50-95"] == 0.0
    assert r["AP50"] == {"person": 0.0, "bicycle": 0.0, "car": 0.0}
    coco_map(_gt(), _perfect(_gt()), CLASSES)
    out = capsys.readouterr()
    assert out.out == ""  # pycocotools' prints are swallowed


def test_class_without_gt_is_nan_and_excluded_from_mean():
    gt = [np.array([[0, 0, 0, 10, 10]])]
    r = coco_map(gt, [np.array([[0, 0, 0, 10, 10, 0.9], [2, 50, 50, 60, 60, 0.7]])], CLASSES)
    assert math.isnan(r["AP50"]["car"]) and math.isnan(r["AP50"]["bicycle"])
    assert r["mAP50"] == pytest.approx(1.0, abs=1e-9)


def test_dict_inputs_and_detection_objects():
    gt = {"a.png": np.array([[2, 0, 0, 10, 10]]), "b.png": np.zeros((0, 5))}
    preds = {"a.png": [Detection(2, "car", 0.9, 0, 0, 10, 10)]}
    r = coco_map(gt, preds, CLASSES)
    assert r["AP50"]["car"] == pytest.approx(1.0, abs=1e-9)
    assert r["images"] == 2


def test_detection_bad_inputs_raise():
    with pytest.raises(ValueError, match="class ids"):
        coco_map([np.array([[3, 0, 0, 1, 1]])], [[]], CLASSES)
    with pytest.raises(ValueError, match=r"\(N, 6\)"):
        coco_map([np.array([[0, 0, 0, 1, 1]])], [np.array([[0, 0, 0, 1, 1]])], CLASSES)
    with pytest.raises(ValueError, match="x1 <= x2"):
        coco_map([np.array([[0, 5, 0, 1, 1]])], [[]], CLASSES)
    with pytest.raises(ValueError, match="gt has 1 images but preds has 2"):
        coco_map([[]], [[], []], CLASSES)


# ---------------------------------------------------------------- segmentation


def test_miou_2x2_by_hand():
    gt = np.array([[0, 0], [1, 1]])
    pred = np.array([[0, 1], [1, 1]])
    conf = confusion_matrix(pred, gt, num_classes=3)
    assert conf.tolist() == [[1, 1, 0], [0, 2, 0], [0, 0, 0]]
    m, per = miou(conf)
    # class 0: TP 1, FN 1 -> 1/2; class 1: TP 2, FP 1 -> 2/3; class 2 absent from both -> excluded
    assert per[0] == pytest.approx(0.5) and per[1] == pytest.approx(2 / 3) and math.isnan(per[2])
    assert m == pytest.approx((0.5 + 2 / 3) / 2, abs=1e-12)
    assert pixel_accuracy(conf) == pytest.approx(0.75)


def test_confusion_accumulates_and_ignores():
    conf = confusion_matrix(np.array([[0, 1]]), np.array([[0, 255]]), 2)
    assert conf.tolist() == [[1, 0], [0, 0]]
    out = confusion_matrix(np.array([[1, 1]]), np.array([[1, 0]]), 2, conf=conf)
    assert out is conf and conf.tolist() == [[1, 1], [0, 1]]
    # a class predicted but absent from the ground truth has IoU 0 and counts in the mean
    m, per = miou(confusion_matrix(np.array([1, 1]), np.array([0, 0]), 2))
    assert per.tolist() == [0.0, 0.0] and m == 0.0
    m, per = miou(np.zeros((3, 3), dtype=np.int64))
    assert math.isnan(m) and np.isnan(per).all()


def test_confusion_bad_inputs_raise():
    with pytest.raises(ValueError, match="shape"):
        confusion_matrix(np.zeros((2, 2)), np.zeros((2, 3)), 2)
    with pytest.raises(ValueError, match="ground truth has class id 5"):
        confusion_matrix(np.zeros(2, dtype=int), np.array([0, 5]), 2)
    with pytest.raises(ValueError, match="prediction has class id 7"):
        confusion_matrix(np.array([0, 7]), np.zeros(2, dtype=int), 2)


def test_paired_bootstrap_of_map_difference():
    from ivif_fusion.metrics.detection import paired_bootstrap

    names = ["person", "car"]
    gt = [np.array([[0, 10, 10, 50, 90]]), np.array([[1, 100, 100, 200, 160]]), np.array([[0, 5, 5, 30, 60]])]
    perfect = [np.c_[g, np.ones(len(g))] for g in gt]
    nothing = [np.zeros((0, 6)) for _ in gt]
    same = paired_bootstrap(gt, perfect, perfect, names, resamples=50)
    assert same == {"delta": 0.0, "low": 0.0, "high": 0.0, "p_b_not_better": 1.0, "resamples": 50}
    better = paired_bootstrap(gt, nothing, perfect, names, resamples=50, seed=1)
    # every resample holds some ground truth, all found by B and none by A: +1 in each
    assert better["delta"] == 1.0 and better["low"] == 1.0 and better["p_b_not_better"] == 0.0
    # one miss in B: the observed difference is exact, the interval brackets it, and it is seeded
    half = [perfect[0], nothing[1], perfect[2]]
    r = paired_bootstrap(gt, nothing, half, names, resamples=200, seed=2)
    assert r["delta"] == pytest.approx(0.5)  # person AP 1.0, car AP 0.0
    assert r["low"] <= 0.5 <= r["high"] and r == paired_bootstrap(gt, nothing, half, names, resamples=200, seed=2)
    with pytest.raises(ValueError, match="prediction lists"):
        paired_bootstrap(gt, nothing[:2], perfect, names)


def test_paired_bootstrap_miou_by_hand():
    """Image 1: object IoU 0.5 (A) vs 1.0 (B); image 2: 0.75 for both. Pooled: 5/8 vs 7/8, delta 0.25; a resample
    of image 2 only (a quarter of the draws of two) gives 0, none gives less; the most is 1.0 - 0.5."""
    from ivif_fusion.metrics.segmentation import paired_bootstrap_miou

    a = np.array([[[10, 0], [2, 2]], [[5, 1], [0, 3]]])
    b = np.array([[[10, 0], [0, 4]], [[5, 1], [0, 3]]])
    r = paired_bootstrap_miou(a, b, [1], resamples=400, seed=0)
    assert r["delta"] == pytest.approx(0.25)
    assert r["resamples"] == 400 and r["low"] == pytest.approx(0.0) and r["high"] <= 0.5 + 1e-12
    assert 0.18 < r["p_b_not_better"] < 0.32
    same = paired_bootstrap_miou(a, a, [1], resamples=50)
    assert (same["delta"], same["low"], same["high"], same["p_b_not_better"]) == (0.0, 0.0, 0.0, 1.0)
    with pytest.raises(ValueError, match="two \\(N, C, C\\) stacks"):
        paired_bootstrap_miou(a, b[:1], [1])
