"""Box-supervised pseudo-masks: hand-made cases with exact pixel values, and a real MSRS pair."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from ivif_fusion.cli import main
from ivif_fusion.data import pseudo_masks as pm
from ivif_fusion.data.pseudo_mask_folder import FolderSummary, night_from_name, summarize_boxes, summarize_masks
from ivif_fusion.data.readers import open_dataset

PAIR = "00392D"  # an MSRS day pair with persons, bicycles and cars in its fusion box set


def _bright_rectangle() -> tuple[np.ndarray, np.ndarray]:
    """128x128, dark (0.1) with a bright (0.9) rectangle at rows 36..91, columns 32..63, in both streams."""
    thermal = np.full((128, 128), 0.1, np.float32)
    thermal[36:92, 32:64] = 0.9
    return thermal, np.dstack([thermal] * 3)


def _expected_bright_rectangle(class_id: int) -> np.ndarray:
    """Box columns 16..79, rows 16..111 (short side 64: GrabCut runs unscaled)."""
    exp = np.zeros((128, 128), np.uint8)
    exp[35:93, 31:65] = pm.IGNORE  # outline band: 1 px each side of the rectangle's edge
    exp[37:91, 33:63] = class_id  # the rectangle minus its 1 px inner band
    for ring in (np.s_[16:18, 16:80], np.s_[110:112, 16:80], np.s_[16:112, 16:18], np.s_[16:112, 78:80]):
        exp[ring] = pm.IGNORE  # 2 px ring inside the box border
    return exp


@pytest.mark.parametrize("class_id", [pm.CAR, pm.PERSON, pm.BIKE])
@pytest.mark.parametrize("night", [False, True, None])
def test_bright_rectangle_exact_labels(class_id: int, night: bool | None) -> None:
    thermal, visible = _bright_rectangle()
    mask, fills = pm.pseudo_mask(thermal, visible, np.array([[16, 16, 80, 112]]), [class_id], night=night)
    np.testing.assert_array_equal(mask, _expected_bright_rectangle(class_id))
    (b,) = fills
    assert (b.x0, b.y0, b.x1, b.y1, b.status) == (16, 16, 80, 112, "ok")
    assert b.fill == pytest.approx(30 * 54 / (64 * 96))  # 0.2637
    assert b.ignore == pytest.approx((64 * 96 - 60 * 92 + 34 * 58 - 30 * 54) / (64 * 96))  # ring + band


def test_uint8_inputs_give_the_same_mask() -> None:
    thermal, visible = _bright_rectangle()
    as8 = (np.rint(thermal * 255).astype(np.uint8), np.rint(visible * 255).astype(np.uint8))
    a, _ = pm.pseudo_mask(thermal, visible, np.array([[16, 16, 80, 112]]), [pm.PERSON])
    b, _ = pm.pseudo_mask(*as8, np.array([[16, 16, 80, 112]]), [pm.PERSON])
    np.testing.assert_array_equal(a, b)


def test_full_box_object_and_tiny_box_are_all_ignore() -> None:
    thermal = np.full((80, 80), 0.1, np.float32)
    thermal[10:60, 10:60] = 0.9  # the object fills its box: nothing inside says where it ends
    boxes = np.array([[10, 10, 60, 60], [70, 70, 78, 78]])  # second: 8 px, interior 4 px < min_side 6
    mask, fills = pm.pseudo_mask(thermal, np.dstack([thermal] * 3), boxes, [pm.CAR, pm.PERSON], night=False)
    assert [f.status for f in fills] == ["degenerate", "small"]
    assert (mask[10:60, 10:60] == pm.IGNORE).all() and (mask[70:78, 70:78] == pm.IGNORE).all()
    outside = np.ones_like(mask, bool)
    outside[10:60, 10:60] = outside[70:78, 70:78] = False
    assert (mask[outside] == 0).all()
    assert [(f.fill, f.ignore) for f in fills] == [(0.0, 1.0), (0.0, 1.0)]


def test_box_without_margin_fails_cleanly_and_box_outside_the_image_is_skipped() -> None:
    thermal = np.full((40, 40), 0.1, np.float32)
    thermal[10:30, 10:30] = 0.9
    boxes = np.array([[0, 0, 40, 40], [-5, -5, 0.4, 0.4]])  # no background left to model; rounds to 0 px
    mask, fills = pm.pseudo_mask(thermal, np.dstack([thermal] * 3), boxes, [pm.CAR, pm.PERSON], night=False)
    assert [f.status for f in fills] == ["grabcut_failed", "small"]
    assert (mask == pm.IGNORE).all()
    assert (fills[1].x0, fills[1].x1, fills[1].fill, fills[1].ignore) == (0, 0, 0.0, 0.0)


def test_overlap_of_two_classes_is_ignore() -> None:
    thermal = np.full((128, 128), 0.1, np.float32)
    thermal[20:100, 20:60] = thermal[20:100, 70:110] = 0.9
    boxes = np.array([[10, 10, 66, 110], [62, 10, 120, 110]])  # columns 62..65 in both
    mask, fills = pm.pseudo_mask(thermal, np.dstack([thermal] * 3), boxes, [pm.CAR, pm.PERSON], night=False)
    assert (mask[10:110, 62:66] == pm.IGNORE).all()
    assert set(np.unique(mask[30:90, 30:50])) == {pm.CAR} and set(np.unique(mask[30:90, 80:100])) == {pm.PERSON}
    assert [f.status for f in fills] == ["ok", "ok"]


def test_bad_inputs_raise_user_errors() -> None:
    thermal, visible = _bright_rectangle()
    with pytest.raises(pm.PseudoMaskError, match="one size"):
        pm.pseudo_mask(thermal[:64], visible, np.zeros((0, 4)), [])
    with pytest.raises(pm.PseudoMaskError, match="class id"):
        pm.pseudo_mask(thermal, visible, np.array([[0, 0, 10, 10]]), [0])
    with pytest.raises(pm.PseudoMaskError, match="'truck'"):
        pm.seg_ids(["person", "truck"])
    with pytest.raises(pm.PseudoMaskError, match="hot_prior"):
        pm.PseudoMaskOptions(hot_prior="sometimes")


def test_ids_are_the_msrs_segmentation_ids() -> None:
    from ivif_fusion.tasks.segmentation import MSRS_SEG_CLASSES

    assert pm.seg_ids(["person", "bicycle", "car"]) == [MSRS_SEG_CLASSES.index(n) for n in ("person", "bike", "car")]
    assert pm.seg_ids(["person", "bicycle", "car"]) == [2, 3, 1]


def test_night_from_name_and_luminance() -> None:
    assert (night_from_name("00028N"), night_from_name("00392D"), night_from_name("010001")) == (True, False, None)
    assert pm.is_night(np.full((4, 4, 3), 0.1), 0.21) and not pm.is_night(np.full((4, 4, 3), 0.4), 0.21)


def test_box_summary_means_per_class_and_day_night() -> None:
    rows = [{"name": "00001D", "class_id": "2", "status": "ok", "fill": "0.5", "ignore": "0.1"},
            {"name": "00002N", "class_id": "2", "status": "ok", "fill": "0.3", "ignore": "0.3"},
            {"name": "010001", "class_id": "1", "status": "small", "fill": "0", "ignore": "1"}]
    s = FolderSummary()
    summarize_boxes(rows, s)
    assert s.boxes == {2: 2, 1: 1} and s.statuses == {"ok": 2, "small": 1}
    assert s.fill == pytest.approx({2: 0.4, 1: 0.0}) and s.box_ignore == pytest.approx({2: 0.2, 1: 1.0})
    assert s.by_time == {(2, "day"): (1, 0.5, 0.1), (2, "night"): (1, 0.3, 0.3)}  # 010001: no day/night in the name
    assert "  person: 2 boxes, mean fill 0.400, mean ignore 0.200 (day 1 boxes, fill 0.500, ignore 0.100; " \
           "night 1 boxes, fill 0.300, ignore 0.300)" in s.lines()


# --------------------------------------------------------------------------- a real MSRS pair


@pytest.fixture(scope="module")
def msrs_pair(data_root: Path):  # noqa: ANN201
    reader = open_dataset(data_root / "MSRS", "flat")
    (item,) = [it for it in reader.items if it.name == PAIR]
    return reader, reader.record(item)


def test_real_pair_classes_ring_background_determinism(msrs_pair) -> None:  # noqa: ANN001
    from ivif_fusion.data.pseudo_mask_folder import load_pair

    reader, rec = msrs_pair
    ids = [pm.seg_ids(reader.classes)[c] for c in rec.class_ids]
    thermal, visible = load_pair(rec)
    mask, fills = pm.pseudo_mask(thermal, visible, rec.boxes, ids, night=False)
    again, _ = pm.pseudo_mask(thermal, visible, rec.boxes, ids, night=False)
    assert mask.tobytes() == again.tobytes()
    # the classes present are exactly the boxes' classes (this pair has all three)
    assert set(np.unique(mask)) - {0, pm.IGNORE} == set(ids) == {pm.CAR, pm.PERSON, pm.BIKE}
    covered = np.zeros(mask.shape, bool)
    for f in fills:
        covered[f.y0:f.y1, f.x0:f.x1] = True
        ring = np.ones((f.y1 - f.y0, f.x1 - f.x0), bool)
        ring[2:-2, 2:-2] = False
        assert (mask[f.y0:f.y1, f.x0:f.x1][ring] == pm.IGNORE).all(), f
    assert (mask[~covered] == 0).all()
    assert covered.sum() < mask.size / 5  # the boxes are a small part of the image, so the check above bites
    ok = [f for f in fills if f.status == "ok"]
    assert len(ok) >= len(fills) - 1 and all(0 < f.fill < 1 for f in ok)


def test_cli_writes_identical_bytes_and_check_reads_them(msrs_pair, tmp_path: Path, capsys) -> None:  # noqa: ANN001
    reader, rec = msrs_pair
    data = tmp_path / "flat"  # a two-pair copy of the shared layout (tests never write into the data root)
    for sub in ("ir", "vi", "labels_det/fusion"):
        (data / sub).mkdir(parents=True)
    shutil.copy(reader.root / "labels_det" / "classes.txt", data / "labels_det")
    for name in (PAIR, "00028N"):
        for sub in ("ir", "vi"):
            shutil.copy(reader.root / sub / f"{name}.png", data / sub)
        shutil.copy(reader.root / "labels_det" / "fusion" / f"{name}.txt", data / "labels_det" / "fusion")
    outs = [tmp_path / "a", tmp_path / "b"]
    for out in outs:
        assert main(["data", "masks", "--dataset", str(data), "--out", str(out), "--no-progress"]) == 0
    files = sorted(p.name for p in outs[0].iterdir())
    assert files == ["00028N.png", f"{PAIR}.png", "boxes.csv", "summary.json"]
    for name in files:
        assert (outs[0] / name).read_bytes() == (outs[1] / name).read_bytes(), name
    rows = (outs[0] / "boxes.csv").read_text().splitlines()
    n_boxes = sum(len((data / "labels_det" / "fusion" / f"{n}.txt").read_text().split()) // 5 for n in (PAIR, "00028N"))
    assert rows[0].startswith("name,box,class_id,class,") and len(rows) - 1 == n_boxes
    capsys.readouterr()
    assert main(["data", "check", "--masks", str(outs[0])]) == 0
    text = capsys.readouterr().out
    assert "pseudo-masks: 2" in text and "person:" in text and "mean fill" in text and "; night " in text
    s = summarize_masks(outs[0])
    assert sum(s.pixels.values()) == 2 * 640 * 480 and s.masks == 2


def test_cli_refuses_output_inside_the_data_root(data_root: Path, capsys) -> None:  # noqa: ANN001
    assert main(["data", "masks", "--out", str(data_root / "MSRS" / "masks")]) == 1
    assert "inside" in capsys.readouterr().err
    assert not (data_root / "MSRS" / "masks").exists()


def test_figure_pairs_cover_day_night_and_every_class(msrs_pair) -> None:  # noqa: ANN001
    from ivif_fusion.data.pseudo_mask_figure import pick_pairs
    from ivif_fusion.data.splits import frame_number

    reader, _ = msrs_pair
    ids = pm.seg_ids(reader.classes)
    chosen = pick_pairs([reader.record(it) for it in reader.items], ids)
    assert [r.name[-1] for r in chosen] == ["D"] * 6 + ["N"] * 6
    for half in (chosen[:6], chosen[6:]):
        assert {ids[c] for r in half for c in r.class_ids} == {pm.CAR, pm.PERSON, pm.BIKE}
    frames = sorted(frame_number(r.name) for r in chosen)
    assert min(b - a for a, b in zip(frames, frames[1:])) >= 20


def test_figure_overlay_draws_in_the_one_mask_palette() -> None:
    """The figure's overlay of a real pseudo-mask on a dark (night-like) image: hand-computed blends with
    the palette's car and ignore colours, background untouched, the box outline in the car colour."""
    from ivif_fusion.data.mask_palette import CLASS_COLOURS, IGNORE_COLOUR
    from ivif_fusion.data.pseudo_mask_figure import overlay

    thermal, visible = _bright_rectangle()
    mask, fills = pm.pseudo_mask(thermal, visible, np.array([[16, 16, 80, 112]]), [pm.CAR], night=True)
    assert (mask[50, 40], mask[17, 40], mask[5, 5]) == (pm.CAR, pm.IGNORE, pm.BACKGROUND)
    dark = np.full((128, 128, 3), 40, np.uint8)
    out = overlay(dark, mask, [(b.x0, b.y0, b.x1, b.y1, b.class_id) for b in fills])
    assert CLASS_COLOURS["car"] == (0, 170, 255) and IGNORE_COLOUR == (200, 0, 255)
    assert out[50, 40].tolist() == [20, 105, 148]   # car, alpha 0.5: (40 + c) / 2, 147.5 rounded half to even
    assert out[17, 40].tolist() == [112, 22, 137]   # ignore ring, alpha 0.45: 0.55 * 40 + 0.45 * c
    assert out[5, 5].tolist() == [40, 40, 40]       # background
    assert out[16, 40].tolist() == list(CLASS_COLOURS["car"]) == out[111, 79].tolist()  # box outline
