"""`ivif train task --task segmentation` and segmentation in `ivif eval tasks`: real pairs, hand-computed mIoU."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from mini_data import mini_msrs

from ivif_fusion.paths import resolve
from ivif_fusion.tasks.segmentation import SegmenterConfig, SmallSegmenter

TRAIN_PAIRS = ("00131D", "00139D")  # MSRS train range: persons and cars
VAL_PAIRS = ("01405D",)  # val range: a car


def test_segmenter_round_trip_on_real_pairs_with_pseudo_masks(tmp_path: Path) -> None:
    from ivif_fusion.cli import main
    from ivif_fusion.train_config import TrainTaskConfig
    from ivif_fusion.models import checkpoint
    from ivif_fusion.tasks import load_task
    from ivif_fusion.tasks.inputs import make_fuser
    from ivif_fusion.training.segmentation import SEG_CLASSES, train_segmenter

    root = mini_msrs(tmp_path, TRAIN_PAIRS + VAL_PAIRS)
    masks = tmp_path / "masks"
    assert main(["data", "masks", "--dataset", str(root / "MSRS"), "--out", str(masks), "--no-progress"]) == 0
    assert sorted(p.stem for p in masks.glob("*.png")) == sorted(TRAIN_PAIRS + VAL_PAIRS)
    backbone = resolve("models/vfn2_msrs.pt")
    assert checkpoint.load(backbone)["config"]["arch"] == "vfn2"
    cfg = TrainTaskConfig(task="segmentation", data_root=str(root), fusion="vfn", fusion_weights=str(backbone),
                          masks_dir=str(masks), seg_width=4, seg_crop=64, batch_size=2, epochs=2, threads=1,
                          cache_dir=str(tmp_path / "cache"), out=str(tmp_path / "run"))
    path = train_segmenter(cfg, progress=False)
    assert path == tmp_path / "run" / "unet_seg.pt"
    seg = load_task(path)
    assert isinstance(seg, SmallSegmenter) and seg.classes == SEG_CLASSES == ["unlabelled", "car", "person", "bike"]
    meta = seg.meta()
    assert meta["task"] == "segmentation" and meta["data"]["MSRS"]["train"] == 2 and meta["data"]["MSRS"]["val"] == 1
    val = meta["metrics"]["MSRS val"]
    assert val["images"] == 1 and 0.0 <= val["mIoU_objects"] <= 1.0 and set(val["IoU"]) == set(SEG_CLASSES)
    assert meta["train_config"]["masks_dir"] == str(masks) and "command" in meta
    assert meta["class_weights"]["person"] > meta["class_weights"]["unlabelled"] > 0  # rare classes weigh more
    with open(tmp_path / "run" / "log.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["epoch"] for r in rows] == ["1", "2"] and all(0 <= float(r["val_mIoU_objects"]) <= 1 for r in rows)
    # an interrupted run (stopped after epoch 1) resumed from its last_state.pt ends with the same weights
    import dataclasses

    import torch

    part = dataclasses.replace(cfg, out=str(tmp_path / "part"))
    train_segmenter(part, progress=False, max_steps=1)
    resumed = train_segmenter(dataclasses.replace(part, resume=str(tmp_path / "part" / "last_state.pt")),
                              progress=False)
    a, b = checkpoint.load(path)["state_dict"], checkpoint.load(resumed)["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    with open(tmp_path / "part" / "log.csv") as f:
        assert [r["epoch"] for r in csv.DictReader(f)] == ["1", "2"]

    from ivif_fusion.training.segmentation import model_card

    card = model_card(path)
    assert "box-supervised pseudo-masks" in card and "not MSRS segmentation mIoU" in card
    assert f"| MSRS val | 1 | {100 * val['mIoU_objects']:.1f} |" in card
    # the loaded network predicts a mask of the input size with ids of the MSRS label set
    from ivif_fusion.data.readers import FlatReader

    reader = FlatReader(root / "MSRS")
    sample = reader.load(next(it for it in reader.items if it.name == VAL_PAIRS[0]))
    fused = make_fuser("vfn", backbone)(sample.thermal, sample.visible)
    mask = seg.predict(fused)[0]
    assert mask.dtype == np.uint8 and mask.shape == sample.thermal.shape
    assert set(np.unique(mask).tolist()) <= {0, 1, 2, 3}


@pytest.mark.parametrize("masks_dir, message", [("", "masks_dir is empty"), ("missing", "does not exist"),
                                                ("empty", "holds no masks")])
def test_segmentation_training_refuses_without_masks(tmp_path: Path, capsys: pytest.CaptureFixture,
                                                      masks_dir: str, message: str) -> None:
    from ivif_fusion.cli import main

    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "boxes.csv").write_text("name\n")
    sets = ["--set", f"masks_dir={tmp_path / masks_dir}"] if masks_dir else []  # none: the shipped config's ''
    rc = main(["train", "task", "--task", "segmentation", *sets, "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert rc == 1 and message in err and "ivif data masks" in err
    assert not (tmp_path / "o").exists()


# confusion case computed by hand (rows: ground truth 0..3, columns: prediction); 255 is ignored
GT = np.array([[0, 0, 1, 1], [2, 2, 1, 255], [3, 0, 255, 2]], dtype=np.uint8)
PRED = np.array([[0, 1, 1, 1], [2, 0, 1, 3], [3, 0, 2, 2]], dtype=np.uint8)
# counted pixels: gt0 -> pred [2, 1, 0, 0]; gt1 -> [0, 3, 0, 0]; gt2 -> [1, 0, 2, 0]; gt3 -> [0, 0, 0, 1]
# IoU = TP / (row + column - TP): 0: 2/4, 1: 3/4, 2: 2/3, 3: 1/1
IOU = {"unlabelled": 0.5, "car": 0.75, "person": 2 / 3, "bike": 1.0}


def test_miou_of_a_hand_computed_confusion_case() -> None:
    from ivif_fusion.metrics.segmentation import confusion_matrix, miou, pixel_accuracy

    conf = confusion_matrix(PRED, GT, 4)
    assert conf.tolist() == [[2, 1, 0, 0], [0, 3, 0, 0], [1, 0, 2, 0], [0, 0, 0, 1]]
    m_all, per = miou(conf)
    np.testing.assert_allclose(per, list(IOU.values()))
    assert m_all == pytest.approx((0.5 + 0.75 + 2 / 3 + 1) / 4)
    assert miou(conf, [1, 2, 3])[0] == pytest.approx((0.75 + 2 / 3 + 1) / 3)
    assert pixel_accuracy(conf) == pytest.approx(8 / 10)


class _FixedSegmenter(SmallSegmenter):
    """A segmenter that predicts PRED whatever the image (to test the evaluation around it)."""

    def predict(self, images):  # noqa: ANN001, ANN201
        return [PRED.copy()]


def test_eval_tasks_reports_miou_per_class_and_na_for_inputs_without_the_task() -> None:
    from ivif_fusion.tasks.evaluation import EvalSet, evaluate_tasks, results_markdown
    from ivif_fusion.tasks.inputs import InputError

    seg = _FixedSegmenter(SegmenterConfig(classes=list(IOU), width=4))
    ir = [np.zeros(GT.shape, np.float32)]
    vi = [np.zeros((*GT.shape, 3), np.float32)]
    data = EvalSet("hand", ["a"], ir, vi, {"segmentation": [GT]})

    def no_branch(i, v, task):  # noqa: ANN001, ANN202
        raise InputError(f"RSC has no branch for task '{task}'")

    res = evaluate_tasks({"segmentation": seg}, {"visible only": lambda i, v, t: v, "rsc": no_branch}, data,
                         with_fusion_metrics=False, progress=False)
    row = res["tasks"]["segmentation"]["rows"]["visible only"]
    assert row["mIoU_objects"] == pytest.approx((0.75 + 2 / 3 + 1) / 3)
    assert row["mIoU"] == pytest.approx((0.5 + 0.75 + 2 / 3 + 1) / 4)
    assert row["IoU"] == pytest.approx(IOU)
    assert res["tasks"]["segmentation"]["rows"]["rsc"]["mIoU_objects"] is None
    md = results_markdown(res)
    assert "| visible only | 80.6 | 72.9 | 50.0 | 75.0 | 66.7 | 100.0 |" in md
    assert "mIoU car/person/bike (%)" in md and "IoU person (%)" in md
    assert "| rsc | n/a | n/a |" in md and "no branch for task 'segmentation'" in md


def test_eval_tasks_reads_masks_by_pair_name_and_names_a_missing_one(tmp_path: Path) -> None:
    import cv2

    from ivif_fusion.data.pseudo_masks import PseudoMaskError
    from ivif_fusion.tasks.evaluation import EvalSet, mask_targets

    cv2.imwrite(str(tmp_path / "00004N.png"), GT)
    data = EvalSet("x", ["00004N.png"], [np.zeros(GT.shape, np.float32)], [np.zeros((*GT.shape, 3), np.float32)])
    np.testing.assert_array_equal(mask_targets(tmp_path, data)[0], GT)
    data.names.append("00008N.png")
    data.thermal.append(np.zeros(GT.shape, np.float32))
    data.visible.append(np.zeros((*GT.shape, 3), np.float32))
    with pytest.raises(PseudoMaskError, match="00008N.png"):
        mask_targets(tmp_path, data)
