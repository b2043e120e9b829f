"""Task adapters (detection, segmentation), task training helpers and `ivif eval tasks` pieces.

Interface tests use a randomly initialised YOLO nano on tiny images; the shipped-model test
runs on two real MSRS eval-20 pairs and skips when the model or the shared data is absent.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ivif_fusion.models.checkpoint import CheckpointError
from ivif_fusion.paths import MODELS_DIR, data_root
from ivif_fusion.types import Detection
from ivif_fusion.tasks import ADAPTERS, TaskInputError, as_batch, load_task
from ivif_fusion.tasks.detection import DetectorConfig, Letterbox, YoloDetector, _targets_tensor, letterbox
from ivif_fusion.tasks.segmentation import SegmenterConfig, SmallSegmenter

SHIPPED = MODELS_DIR / "yolo_det_msrs.pt"


@pytest.fixture(scope="module")
def det() -> YoloDetector:
    # score threshold 0 so that a random network still returns boxes to check
    return YoloDetector(DetectorConfig(imgsz=128, score_threshold=0.0, max_det=50), seed=0).freeze()


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    return torch.rand(2, 3, 60, 80, generator=g)


# ----------------------------------------------------------------------------- detection


def test_letterbox_geometry_and_pad_value() -> None:
    x = torch.ones(1, 3, 60, 80)
    y, lb = letterbox(x, 128, 32)
    # 80 -> 128 (scale 1.6), 60 -> 96; already multiples of 32: no padding
    assert tuple(y.shape) == (1, 3, 96, 128)
    assert (lb.scale, lb.left, lb.top, lb.in_hw, lb.net_hw) == (1.6, 0, 0, (60, 80), (96, 128))
    y, lb = letterbox(torch.ones(1, 3, 480, 640), 320, 32)
    # 640x480 -> 320x240, padded to 320x256 with 8 rows above and below
    assert tuple(y.shape) == (1, 3, 256, 320) and (lb.top, lb.left, lb.scale) == (8, 0, 0.5)
    assert torch.allclose(y[0, :, :8], torch.full((3, 8, 320), 114 / 255))
    assert torch.allclose(y[0, :, 8:248], torch.ones(3, 240, 320))


def test_targets_are_mapped_into_the_letterboxed_frame() -> None:
    lb = Letterbox(scale=0.5, left=0, top=8, in_hw=(480, 640), net_hw=(256, 320))
    b = _targets_tensor([np.array([[2, 100, 40, 300, 200]]), np.zeros((0, 5))], lb, 2, torch.device("cpu"))
    # x: 50..150 of 320 -> cx 100/320, w 100/320; y: 28..108 of 256 -> cy 68/256, h 80/256
    assert b["batch_idx"].tolist() == [0.0] and b["cls"].tolist() == [[2.0]]
    assert torch.allclose(b["bboxes"], torch.tensor([[100 / 320, 68 / 256, 100 / 320, 80 / 256]]))
    with pytest.raises(TaskInputError, match="2 images but 1"):
        _targets_tensor([np.zeros((0, 5))], lb, 2, torch.device("cpu"))


def test_predict_returns_detections_inside_the_image(det: YoloDetector, images: torch.Tensor) -> None:
    out = det.predict(images)
    assert len(out) == 2
    assert all(len(d) > 0 for d in out)  # threshold 0: a random net still scores anchors
    for dets in out:
        assert len(dets) <= 50
        scores = [d.score for d in dets]
        assert scores == sorted(scores, reverse=True)
        for d in dets:
            assert isinstance(d, Detection) and d.label == det.classes[d.class_id]
            assert 0 <= d.x1 <= d.x2 <= 80 and 0 <= d.y1 <= d.y2 <= 60


def test_predict_maps_network_boxes_back_to_input_pixels(monkeypatch: pytest.MonkeyPatch) -> None:
    det = YoloDetector(DetectorConfig(imgsz=320, score_threshold=0.5), seed=0)
    # one anchor with a box at net xywh (100, 68, 100, 80) and class 2 score 0.9; all others 0
    a = 10

    def fake_raw(x: torch.Tensor) -> torch.Tensor:
        assert tuple(x.shape[-2:]) == (256, 320)
        y = torch.zeros(x.shape[0], 4 + 3, a)
        y[:, :4, 0] = torch.tensor([100.0, 68.0, 100.0, 80.0])
        y[:, 4 + 2, 0] = 0.9
        return y

    monkeypatch.setattr(det, "_raw", fake_raw)
    (d,), = det.predict(torch.zeros(1, 3, 480, 640))
    assert (d.class_id, d.label) == (2, "car")
    assert d.score == pytest.approx(0.9)
    assert (d.x1, d.y1, d.x2, d.y2) == pytest.approx((100.0, 40.0, 300.0, 200.0))


def test_predict_is_deterministic(det: YoloDetector, images: torch.Tensor) -> None:
    a, b = det.predict(images), det.predict(images.clone())
    assert a == b


def test_loss_is_differentiable_wrt_the_image(det: YoloDetector, images: torch.Tensor) -> None:
    x = images.clone().requires_grad_(True)
    targets = [np.array([[0, 10, 10, 30, 50], [2, 40, 20, 75, 45]], dtype=np.float32), np.zeros((0, 5))]
    loss = det.loss(x, targets)
    assert loss.ndim == 0 and torch.isfinite(loss) and loss.item() > 0
    loss.backward()
    assert x.grad is not None and x.grad.abs().sum().item() > 0
    # the task network itself is frozen
    assert all(p.grad is None for p in det.model.parameters())


def test_features_shape_and_graph(det: YoloDetector, images: torch.Tensor) -> None:
    x = images.clone().requires_grad_(True)
    f = det.features(x)
    # SPPF of yolov8n: 256 channels at stride 32 of the 96x128 letterboxed input
    assert tuple(f.shape) == (2, 256, 3, 4)
    assert det.feature_channels == 256
    f.mean().backward()
    assert x.grad.abs().sum().item() > 0


def test_checkpoint_round_trip_gives_identical_predictions(det: YoloDetector, images: torch.Tensor,
                                                           tmp_path) -> None:  # noqa: ANN001
    path = det.save(tmp_path / "det.pt", {"note": "unit test"})
    back = YoloDetector.from_checkpoint(path)
    assert back.meta()["note"] == "unit test"
    assert back.cfg.to_dict() == det.cfg.to_dict()
    assert back.predict(images) == det.predict(images)
    assert isinstance(load_task(path), YoloDetector)
    assert not any(p.requires_grad for p in back.model.parameters())


def test_wrong_kind_checkpoint_is_a_clear_error(tmp_path) -> None:  # noqa: ANN001
    seg = SmallSegmenter(SegmenterConfig(classes=["a", "b"], width=4))
    path = seg.save(tmp_path / "seg.pt")
    with pytest.raises(CheckpointError, match="holds a 'task-segmentation' model, expected 'task-detection'"):
        YoloDetector.from_checkpoint(path)
    from ivif_fusion.models import checkpoint

    other = checkpoint.save(tmp_path / "vfn.pt", "vfn", {}, {})
    with pytest.raises(CheckpointError, match="'vfn' model, not a task network"):
        load_task(other)
    assert set(ADAPTERS) == {"task-detection", "task-segmentation"}


def test_pt_arch_and_bad_images_are_rejected() -> None:
    with pytest.raises(TaskInputError, match="yaml"):
        YoloDetector(DetectorConfig(arch="yolov8n.pt"))
    with pytest.raises(TaskInputError, match=r"\(N, 3, H, W\)"):
        as_batch(torch.zeros(1, 1, 8, 8))
    with pytest.raises(TaskInputError, match="one size"):
        as_batch([np.zeros((4, 4, 3)), np.zeros((5, 4, 3))])
    x = as_batch([np.full((2, 3, 3), 255, np.uint8), np.zeros((2, 3), np.float32)])
    assert tuple(x.shape) == (2, 3, 2, 3) and x[0].min().item() == 1.0 and x[1].max().item() == 0.0


def test_evaluate_uses_coco_map(det: YoloDetector, images: torch.Tensor) -> None:
    # ground truth = the detector's own top boxes: every such box is matched at IoU 1
    preds = det.predict(images)
    gts = [np.array([[d.class_id, d.x1, d.y1, d.x2, d.y2] for d in p[:1]]) for p in preds]
    res = det.evaluate(list(images.permute(0, 2, 3, 1).numpy()), gts)
    assert set(res) >= {"mAP50", "mAP50-95"}
    assert res["gt_boxes"] == 2 and 0 < res["mAP50"] <= 1


# ----------------------------------------------------------------------------- segmentation


def _synthetic_masks(n: int = 2, h: int = 21, w: int = 30) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    masks = torch.zeros(n, h, w, dtype=torch.long)
    masks[:, :, w // 2:] = 1
    masks[:, h // 2:, : w // 3] = 2
    colours = torch.tensor([[0.1, 0.2, 0.3], [0.8, 0.1, 0.1], [0.2, 0.9, 0.4]])
    img = colours[masks].permute(0, 3, 1, 2) + 0.05 * torch.randn(n, 3, h, w, generator=g)
    return img.clamp(0, 1), masks


def test_segmenter_predicts_uint8_masks_of_input_size() -> None:
    seg = SmallSegmenter(SegmenterConfig(classes=["a", "b", "c"], width=4))
    img, _ = _synthetic_masks(h=21, w=30)  # not multiples of 8
    out = seg.predict(img)
    assert len(out) == 2 and all(m.dtype == np.uint8 and m.shape == (21, 30) for m in out)
    assert all(m.max() < 3 for m in out)
    assert tuple(seg.features(img).shape) == (2, 16, 3, 4)
    assert seg.predict(img)[0].tolist() == out[0].tolist()  # deterministic


def test_segmenter_overfits_a_tiny_case_and_scores_miou() -> None:
    seg = SmallSegmenter(SegmenterConfig(classes=["a", "b", "c"], width=6), seed=0)
    img, masks = _synthetic_masks()
    seg.train()
    opt = torch.optim.Adam(seg.model.parameters(), lr=1e-2)
    losses = []
    for _ in range(40):
        opt.zero_grad()
        loss = seg.loss(img, masks)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
    seg.eval()
    res = seg.evaluate(list(img), list(masks.numpy()))
    assert res["mIoU"] > 0.9 and res["images"] == 2
    # perfect prediction -> mIoU exactly 1
    pred = seg.predict(img)
    assert seg.evaluate(list(img), pred)["mIoU"] == 1.0


def test_segmenter_loss_reaches_the_image_and_ignores_255() -> None:
    seg = SmallSegmenter(SegmenterConfig(classes=["a", "b"], width=4)).freeze()
    x = torch.rand(1, 3, 16, 16, requires_grad=True)
    t = torch.full((1, 16, 16), 255)
    t[0, :4] = 1
    seg.loss(x, t).backward()
    assert x.grad.abs().sum().item() > 0
    with pytest.raises(TaskInputError, match="masks must be"):
        seg.loss(x, torch.zeros(1, 8, 8))


# ----------------------------------------------------------------------------- training helpers / evaluation


def test_fusers_and_class_map() -> None:
    from ivif_fusion.colour import luminance, recombine
    from ivif_fusion.data.classes import ClassMap
    from ivif_fusion.data.records import LayoutError
    from ivif_fusion.tasks.inputs import InputError, make_fuser

    rng = np.random.default_rng(0)
    ir, vi = rng.random((6, 7), dtype=np.float32), rng.random((6, 7, 3), dtype=np.float32)
    np.testing.assert_array_equal(make_fuser("max")(ir, vi), recombine(np.maximum(ir, luminance(vi)), vi))
    np.testing.assert_array_equal(make_fuser("ir")(ir, vi), np.repeat(ir[..., None], 3, 2))
    np.testing.assert_array_equal(make_fuser("visible")(ir, vi), vi)
    with pytest.raises(InputError, match="backbone checkpoint"):
        make_fuser("vfn", "/nonexistent/vfn.pt")
    llvip = ClassMap.onto(["person"], ["person", "bicycle", "car"], "LLVIP")
    assert llvip.target("person") == 0
    assert ClassMap.onto(["person", "dog"], ["car", "person"]).target("dog") is None
    with pytest.raises(LayoutError, match="none of its classes"):
        ClassMap.onto(["dog"], ["person"], "X")


def test_evaluate_tasks_table_with_extra_column(det: YoloDetector) -> None:
    from ivif_fusion.tasks.evaluation import EvalSet, evaluate_tasks, results_markdown

    rng = np.random.default_rng(0)
    ir = [rng.random((48, 64), dtype=np.float32) for _ in range(2)]
    vi = [rng.random((48, 64, 3), dtype=np.float32) for _ in range(2)]
    gts = [np.array([[0, 5, 5, 20, 30]]), np.zeros((0, 5))]
    seen = []

    def custom(i: np.ndarray, v: np.ndarray, task: str) -> np.ndarray:
        seen.append(task)
        return v * 0.5

    data = EvalSet("synthetic", ["a", "b"], ir, vi, {"detection": gts})
    res = evaluate_tasks({"detection": det, "segmentation": SmallSegmenter(SegmenterConfig(["a", "b"], 4))},
                         {"visible only": lambda i, v, t: v, "rsc": custom}, data, progress=False)
    assert seen == ["detection", "detection"]
    rows = res["tasks"]["detection"]["rows"]
    assert list(rows) == ["visible only", "rsc"]
    assert set(rows["rsc"]["fusion"]) >= {"EN", "Qabf", "VIF"}
    assert "segmentation" in res["skipped"]
    md = results_markdown(res)
    assert "| rsc |" in md and "mAP50 (%)" in md and "Qabf" in md and "skipped" in md


def test_unknown_input_kind_is_a_clear_error(tmp_path) -> None:  # noqa: ANN001
    from ivif_fusion.models import checkpoint
    from ivif_fusion.tasks.inputs import InputError, input_from_checkpoint

    p = checkpoint.save(tmp_path / "x.pt", "mystery", {}, {})
    with pytest.raises(InputError, match="'mystery' checkpoint"):
        input_from_checkpoint(p)


# ----------------------------------------------------------------------------- real data


@pytest.fixture(scope="module")
def msrs_root():  # noqa: ANN201
    root = data_root()
    if not (root / "MSRS" / "labels_det").is_dir():
        pytest.skip(f"shared data not found at {root}")
    return root


def test_training_splits_never_contain_eval_pairs(msrs_root) -> None:  # noqa: ANN001
    from ivif_fusion.data.splits import frame_number
    from ivif_fusion.data.shared import labelled_pairs

    train = [it.file for it in labelled_pairs(msrs_root, "MSRS", "train")[1]]
    val = [it.file for it in labelled_pairs(msrs_root, "MSRS", "val")[1]]
    ev = [it.file for it in labelled_pairs(msrs_root, "MSRS", "eval")[1]]
    assert len(ev) == 20 and ev[0] == "00004N.png" and ev[-1] == "00107D.png"
    assert min(frame_number(n) for n in train) > 130 and min(frame_number(n) for n in val) >= 1400
    assert not set(ev) & (set(train) | set(val))


def test_shipped_detector_on_real_pairs(msrs_root) -> None:  # noqa: ANN001
    if not SHIPPED.is_file():
        pytest.skip(f"{SHIPPED} not shipped yet")
    from ivif_fusion.data.shared import class_boxes, labelled_pairs
    from ivif_fusion.tasks.inputs import make_fuser

    det = YoloDetector.from_checkpoint(SHIPPED)
    assert det.classes == ["person", "bicycle", "car"]
    meta = det.meta()
    assert meta["metrics"]["MSRS eval-20"]["images"] == 20
    reader, items = labelled_pairs(msrs_root, "MSRS", "eval")
    fuse = make_fuser(meta["train_config"]["fusion"], meta["train_config"]["fusion_weights"])
    samples = [reader.load(it) for it in items[:2]]
    imgs = [fuse(s.thermal, s.visible) for s in samples]
    out = det.predict(imgs)
    assert out == det.predict(imgs)
    for dets in out:
        assert all(0 <= d.x1 <= d.x2 <= 640 and 0 <= d.y1 <= d.y2 <= 480 for d in dets)
    gts = [class_boxes(reader.record(it)) for it in items[:2]]
    x = torch.from_numpy(np.stack(imgs)).permute(0, 3, 1, 2).requires_grad_(True)
    det.loss(x, gts).backward()
    assert x.grad.abs().sum().item() > 0


def test_model_card_is_generated_from_checkpoint_meta(tmp_path) -> None:  # noqa: ANN001
    from ivif_fusion.config import to_dict
    from ivif_fusion.train_config import TrainTaskConfig
    from ivif_fusion.training.task import model_card

    det = YoloDetector(DetectorConfig(imgsz=320))
    m = {"mAP50": 0.4123, "mAP50-95": 0.2, "mAP75": 0.15, "AP50": {"person": 0.5, "bicycle": 0.1, "car": 0.6},
         "images": 20, "gt_boxes": 78}
    meta = {"train_config": to_dict(TrainTaskConfig(fusion="max", epochs=3)), "data": {"MSRS": {"train": 293, "val": 47}},
            "metrics": {"MSRS eval-20": m}, "train_seconds": 600.0, "prepare_seconds": 30.0,
            "command": "ivif train task --task detection", "ultralytics_version": "x", "metric_note": "note"}
    card = model_card(det.save(tmp_path / "d.pt", meta))
    assert card.startswith("## Detection: yolo_det_msrs.pt")
    assert "| MSRS eval-20 | 20 | 78 | 41.2 | 20.0 | 15.0 | 50.0 | 10.0 | 60.0 |" in card
    assert "293 train pairs" in card and "demonstration model" in card and "10.0 min" in card


def _fake_root(tmp_path):  # noqa: ANN001, ANN202
    """A tiny data root: MSRS-like names in the eval, guard, train and val ranges, and an LLVIP-like set."""
    import cv2

    root = tmp_path / "data"
    for ds, names, classes in (("MSRS", ["00004N", "00120D", "00200D", "00300N", "01500D"], "0 person\n1 bicycle\n2 car\n"),
                               ("LLVIP", [f"0100{i:02d}" for i in range(1, 6)], "0 person\n")):
        lab = root / ds / "labels_det" / ("fusion" if ds == "MSRS" else "")
        for sub in ("ir", "vi"):
            (root / ds / sub).mkdir(parents=True)
        lab.mkdir(parents=True, exist_ok=True)
        (root / ds / "labels_det" / "classes.txt").write_text(classes)
        for i, n in enumerate(names):
            cv2.imwrite(str(root / ds / "ir" / f"{n}.png"), np.full((48, 64), 40 * i, np.uint8))
            cv2.imwrite(str(root / ds / "vi" / f"{n}.png"), np.full((48, 64, 3), 30, np.uint8))
            (lab / f"{n}.txt").write_text("0 0.5 0.5 0.25 0.5\n" + ("2 0.2 0.2 0.1 0.1\n" if ds == "MSRS" else ""))
    return root


def test_yolo_dataset_folder_respects_splits_and_maps_classes(tmp_path) -> None:  # noqa: ANN001
    import yaml

    from ivif_fusion.train_config import TrainTaskConfig
    from ivif_fusion.training.fused_images import TaskTrainingError, build_yolo_dataset

    root = _fake_root(tmp_path)
    cfg = TrainTaskConfig(data_root=str(root), datasets=["MSRS", "LLVIP"], fusion="max",
                          cache_dir=str(tmp_path / "cache"))
    data_yaml = build_yolo_dataset(cfg, ["person", "bicycle", "car"], progress=False)
    d = yaml.safe_load(data_yaml.read_text())
    assert d["names"] == {0: "person", 1: "bicycle", 2: "car"}
    base = data_yaml.parent
    train = sorted(p.stem for p in (base / "images" / "train").iterdir())
    val = sorted(p.stem for p in (base / "images" / "val").iterdir())
    # eval (00004N) and guard (00120D) frames never appear; LLVIP only trains
    assert train == ["LLVIP_010001", "LLVIP_010002", "LLVIP_010003", "LLVIP_010004", "LLVIP_010005",
                     "MSRS_00200D", "MSRS_00300N"]
    assert val == ["MSRS_01500D"]
    assert (base / "labels" / "train" / "LLVIP_010001.txt").read_text() == "0 0.500000 0.500000 0.250000 0.500000\n"
    assert (base / "labels" / "val" / "MSRS_01500D.txt").read_text().splitlines()[1].startswith("2 ")
    # pixel-max fusion of IR level 40*i and visible 30, written as RGB PNG
    import cv2

    img = cv2.imread(str(base / "images" / "train" / "MSRS_00300N.png"))
    assert img.shape == (48, 64, 3) and int(img[0, 0, 0]) == 120
    # cross-fitting: holding out fold 0 of 2 drops frame 200 (block 2) from training; val frame 1500 (block 15)
    # is in fold 1 and stays
    cfg3 = TrainTaskConfig(data_root=str(root), datasets=["MSRS"], fusion="max", holdout_fold="0/2",
                           cache_dir=str(tmp_path / "c3"))
    base3 = build_yolo_dataset(cfg3, ["person", "bicycle", "car"], progress=False).parent
    assert sorted(p.stem for p in (base3 / "images" / "train").iterdir()) == ["MSRS_00300N"]
    assert sorted(p.stem for p in (base3 / "images" / "val").iterdir()) == ["MSRS_01500D"]
    # fold 1 holds frames 300 and 1500: the held-out fold selects no epoch either, so no val pair is left
    cfg4 = TrainTaskConfig(data_root=str(root), datasets=["MSRS"], fusion="max", holdout_fold="1/2",
                           cache_dir=str(tmp_path / "c4"))
    with pytest.raises(TaskTrainingError, match="need labelled pairs for training and validation"):
        build_yolo_dataset(cfg4, ["person", "bicycle", "car"], progress=False)
    # LLVIP alone has no val range: its last 20 % of frames validate
    cfg2 = TrainTaskConfig(data_root=str(root), datasets=["LLVIP"], fusion="visible", cache_dir=str(tmp_path / "c2"))
    base2 = build_yolo_dataset(cfg2, ["person"], progress=False).parent
    assert sorted(p.stem for p in (base2 / "images" / "val").iterdir()) == ["LLVIP_010005"]


def test_eval_tasks_cli_reports_a_missing_checkpoint(tmp_path, capsys: pytest.CaptureFixture) -> None:  # noqa: ANN001
    from ivif_fusion.cli import main

    rc = main(["eval", "tasks", "--task", f"detection={tmp_path / 'none.pt'}", "--out", str(tmp_path / "r.md")])
    assert rc == 1
    err = capsys.readouterr().err
    assert "none.pt not found" in err and "ivif train task" in err
    assert not (tmp_path / "r.md").exists()


def test_eval_tasks_default_rsc_column_names_the_shipped_checkpoint() -> None:
    """The default task-customized column must point at a file that is shipped (it once named a missing one)."""
    from ivif_fusion.cli.eval_tasks import SHIPPED_RSC
    from ivif_fusion.models import checkpoint
    from ivif_fusion.paths import resolve

    assert resolve(SHIPPED_RSC).is_file(), SHIPPED_RSC
    assert checkpoint.load(resolve(SHIPPED_RSC)).get("kind") == "rsc"
