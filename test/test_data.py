"""Paired-folder reading: 8/16-bit thermal, gray/RGBA visible, and every documented error."""

from pathlib import Path

import cv2
import numpy as np
import pytest

from ivif_fusion.data.labels import LabelError, read_classes, read_yolo, yolo_to_xyxy
from ivif_fusion.data.paired import PairedFolder, SizeMismatchError, UnpairedError, UnreadableImageError
from ivif_fusion.data.splits import msrs_split, training_names
from ivif_fusion.imageops import ImageError, normalize_thermal, normalize_visible


def _write(root: Path, sub: str, name: str, img: np.ndarray) -> None:
    (root / sub).mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(root / sub / name), img)


def test_8bit_and_16bit_thermal_gray_and_rgba_visible(tmp_path):
    ir16 = np.zeros((6, 8), np.uint16)
    ir16[:, 4:] = 30000
    ir16[0, 0] = 29000
    _write(tmp_path, "ir", "a.png", ir16)
    _write(tmp_path, "vi", "a.png", np.full((6, 8), 128, np.uint8))  # grayscale visible
    _write(tmp_path, "ir", "b.png", np.full((6, 8), 51, np.uint8))
    rgba = np.zeros((6, 8, 4), np.uint8)
    rgba[..., 2] = 255  # OpenCV BGRA: red channel
    rgba[..., 3] = 7    # alpha is dropped
    _write(tmp_path, "vi", "b.png", rgba)
    ds = PairedFolder(tmp_path)
    assert ds.names == ["a.png", "b.png"]
    a, b = ds[0], ds[1]
    assert a.thermal.dtype == np.float32 and a.thermal.shape == (6, 8)
    # 16-bit: percentile stretch, so the hot half maps to 1 and the cold half to 0.
    assert a.thermal[:, 4:].min() == pytest.approx(1.0) and a.thermal[1:, :4].max() == pytest.approx(0.0)
    assert a.visible.shape == (6, 8, 3) and np.allclose(a.visible, 128 / 255)
    assert np.allclose(b.thermal, 51 / 255)
    np.testing.assert_allclose(b.visible[0, 0], [1.0, 0.0, 0.0])  # RGB order inside the core


def test_unpaired_names_raise_or_are_skipped(tmp_path):
    _write(tmp_path, "ir", "a.png", np.zeros((4, 4), np.uint8))
    _write(tmp_path, "vi", "a.png", np.zeros((4, 4, 3), np.uint8))
    _write(tmp_path, "ir", "lonely.png", np.zeros((4, 4), np.uint8))
    with pytest.raises(UnpairedError, match="lonely.png"):
        PairedFolder(tmp_path)
    ds = PairedFolder(tmp_path, strict=False)
    assert ds.names == ["a.png"] and ds.unpaired == ["lonely.png"]


def test_corrupt_png_and_size_mismatch(tmp_path):
    _write(tmp_path, "ir", "a.png", np.zeros((4, 4), np.uint8))
    (tmp_path / "vi").mkdir()
    (tmp_path / "vi" / "a.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    with pytest.raises(UnreadableImageError, match="a.png"):
        PairedFolder(tmp_path)[0]
    _write(tmp_path, "vi", "a.png", np.zeros((5, 4, 3), np.uint8))
    with pytest.raises(SizeMismatchError, match="4x4.*4x5"):
        PairedFolder(tmp_path)[0]
    s = PairedFolder(tmp_path, resize_mismatched=True)[0]
    assert s.visible.shape == (4, 4, 3)


def test_missing_subfolder(tmp_path):
    (tmp_path / "ir").mkdir()
    with pytest.raises(ValueError, match="vi/"):
        PairedFolder(tmp_path)


def test_normalize_errors():
    with pytest.raises(ImageError):
        normalize_thermal(np.array([[np.nan, 1.0]], np.float32))
    with pytest.raises(ImageError):
        normalize_visible(np.zeros((2, 2, 2), np.uint8))
    assert np.all(normalize_thermal(np.full((3, 3), 1000, np.uint16)) == 0)  # constant 16-bit -> 0


def test_msrs_split_ranges_keep_eval_out_of_training():
    names = ["00004N.png", "00107D.png", "00111D.png", "00131D.png", "01399N.png", "01400D.png"]
    assert msrs_split(names, "eval") == ["00004N.png", "00107D.png"]
    assert msrs_split(names, "train") == ["00131D.png", "01399N.png"]
    assert msrs_split(names, "val") == ["01400D.png"]
    assert training_names("MSRS", names) == ["00131D.png", "01399N.png"]
    assert training_names("TNO", ["b", "a"]) == ["a", "b"]


def test_real_msrs_eval_split_is_the_first_20(msrs_root):
    ds = PairedFolder(msrs_root)
    ev = msrs_split(ds.names, "eval")
    assert len(ds) == 365 and len(ev) == 20
    assert ev[0] == "00004N.png" and ev[-1] == "00107D.png" and ev == ds.names[:20]
    assert not set(ev) & set(training_names("MSRS", ds.names))


def test_yolo_labels(tmp_path, msrs_root):
    p = tmp_path / "x.txt"
    p.write_text("1 0.5 0.5 0.2 0.4\n\n")
    lab = read_yolo(p)
    np.testing.assert_allclose(yolo_to_xyxy(lab, 100, 50)[0], [1, 40, 15, 60, 35])
    p.write_text("1 0.5 0.5\n")
    with pytest.raises(LabelError, match="x.txt:1"):
        read_yolo(p)
    with pytest.raises(LabelError, match="missing"):
        read_yolo(tmp_path / "none.txt")
    assert read_classes(msrs_root / "labels_det" / "classes.txt") == ["person", "bicycle", "car"]


def test_fit_max_side_scales_the_long_side_and_keeps_small_images():
    from ivif_fusion.imageops import fit_max_side

    a, b = np.zeros((480, 640), np.float32), np.zeros((480, 640, 3), np.float32)
    (a2, b2), s = fit_max_side(320, a, b)
    assert a2.shape == (240, 320) and b2.shape == (240, 320, 3) and s == 0.5
    (a3,), s = fit_max_side(0, a)
    assert a3 is a and s == 1.0
    (a4,), s = fit_max_side(640, a)
    assert a4 is a and s == 1.0


def test_cross_fit_folds_are_blocks_of_frames():
    import zlib

    from ivif_fusion.data.splits import cross_fit_fold, parse_fold

    # blocks of 100 frame numbers, interleaved: frames 131..199 -> block 1, 200..299 -> block 2, ...
    assert [cross_fit_fold(n, 2) for n in ("00131D", "00199N", "00200D", "00299N", "00300D")] == [1, 1, 0, 0, 1]
    assert [cross_fit_fold(n, 3) for n in ("00131D", "00200D", "00300D", "00400D")] == [1, 2, 0, 1]
    assert cross_fit_fold("road_a.png", 2) == zlib.crc32(b"road_a.png") % 2
    assert parse_fold("1/2") == (1, 2) and parse_fold(" 0 / 3 ") == (0, 3)
    for bad in ("2/2", "0/1", "a/b", "1"):
        with pytest.raises(ValueError, match="k/n"):
            parse_fold(bad)


# ----------------------------------------------------------------------------- the jobs' view of the shared data

# Fingerprints of what the loaders of every job returned before the data layer was shared (computed with
# the previous per-job code): pairs, boxes, and a SHA-256 (first 16 hex digits) over, per pair, the file
# name, the (K, 4) float32 pixel boxes and the (K,) int64 class ids (MSRS classes person, bicycle, car).
# The same config and seed must give the same batches, so these must never change.
SPLIT_FINGERPRINTS = {
    ("MSRS", "train", "fusion"): (293, 1212, "61ed27fc0c84e8be", "ccce46b2f86dd3d1"),
    ("MSRS", "train", "infrared"): (293, 1448, "a704fa69f2e1066e", "a653ce8acf9e0a15"),
    ("MSRS", "train", "visible"): (293, 745, "b3ce962016b36885", "2156fec35a09954b"),
    ("MSRS", "val", "fusion"): (47, 203, "03662127b31f5e8a", "4e1385c53b3e0f89"),
    ("MSRS", "val", "infrared"): (47, 238, "69d8d5687e6f7fb9", "075f74d53e61881d"),
    ("MSRS", "val", "visible"): (47, 206, "47e27b02f80c3fcf", "c00baed03bd827d3"),
    ("MSRS", "eval", "fusion"): (20, 78, "edb61e465bdcd721", "0e2f8e015df1bcdd"),
    ("MSRS", "eval", "infrared"): (20, 113, "0b684fe90f6241bd", "2ed8280720bf06fd"),
    ("MSRS", "eval", "visible"): (20, 53, "206b02b3b43b8e53", "be62e7631f34719f"),
    ("LLVIP", "train", "fusion"): (50, 222, "7d6ce287f30e5211", "2d729ad04d65230d"),
    ("LLVIP", "val", "fusion"): (0, 0, "e3b0c44298fc1c14", "e3b0c44298fc1c14"),
}


def _digest(parts) -> str:  # noqa: ANN001
    import hashlib

    h = hashlib.sha256()
    for p in parts:
        h.update(p if isinstance(p, bytes) else str(p).encode())
    return h.hexdigest()[:16]


@pytest.mark.parametrize("key", sorted(SPLIT_FINGERPRINTS))
def test_shared_splits_give_the_same_pairs_boxes_and_classes(data_root, key) -> None:  # noqa: ANN001
    from ivif_fusion.data.shared import class_boxes, labelled_pairs
    from ivif_fusion.training.fused_images import yolo_lines

    dataset, split, label_set = key
    reader, items = labelled_pairs(data_root, dataset, split, label_set, ["person", "bicycle", "car"])
    parts, boxes, lines = [], 0, []
    for it in items:
        rec = reader.record(it)
        b = class_boxes(rec)
        assert b.dtype == np.float32 and np.array_equal(b[:, 0], rec.class_ids)
        boxes += len(b)
        parts += [it.file, np.ascontiguousarray(b[:, 1:]).tobytes(), rec.class_ids.tobytes()]
        lines += [it.file] + yolo_lines(reader, it)  # what `ivif train task` writes into its cache
    assert (len(items), boxes, _digest(parts), _digest(lines)) == SPLIT_FINGERPRINTS[key]


def test_rsc_and_fusion_jobs_read_the_same_pairs(data_root) -> None:  # noqa: ANN001
    from ivif_fusion.train_config import TrainFusionConfig, TrainRSCConfig
    from ivif_fusion.data.shared import class_boxes, open_shared, split_items
    from ivif_fusion.training.rsc import load_labelled_pairs

    reader = open_shared(data_root, "MSRS", label_set="fusion")
    train = split_items(reader, "MSRS", "train")
    assert [it.file for it in train[:2]] == ["00131D.png", "00135D.png"]
    rsc_boxes = [(it.file, class_boxes(reader.record(it))) for it in train]
    assert (len(train), sum(len(b) for _, b in rsc_boxes)) == (293, 1212)
    assert _digest([x for n, b in rsc_boxes for x in (n, b.tobytes())]) == "93b8a1a7e7370584"
    # the RSC job's own loader, pixels included (val range: 47 pairs, quick)
    cfg = TrainRSCConfig(data_root=str(data_root))
    val = load_labelled_pairs(cfg, progress=False, split="val")
    assert [p.name for p in val[:2]] == ["01401D.png", "01405D.png"]
    assert _digest([x for p in val for x in (p.name, p.boxes.tobytes())]) == "b2014d135c23afb9"
    assert _digest([x for p in val for x in (p.thermal.tobytes(), p.ycc.tobytes())]) == "58ac60cc0401861a"
    # a cross-fitted RSC leaves its fold out: blocks of 100 frames alternate, 1400-1499 and 1600+ are fold 0 of 2
    held = load_labelled_pairs(TrainRSCConfig(data_root=str(data_root), holdout_fold="0/2"), progress=False,
                               split="val")
    assert [p.name for p in held] == [p.name for p in val if 1500 <= int(p.name[:5]) < 1600] and len(held) == 23
    # fusion training: every dataset of the default config, MSRS restricted to its train range
    ids = [f"{ds}/{it.file}" for ds in TrainFusionConfig().datasets
           for it in split_items(open_shared(data_root, ds), ds, "train")]
    assert len(ids) == 389 and ids[:2] == ["MSRS/00131D.png", "MSRS/00135D.png"]
    assert _digest(ids) == "88b84737faf516f6"
