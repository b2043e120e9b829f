"""Dataset readers for the MSRS, M3FD, LLVIP and flat layouts, and `ivif data check`.

Every layout is built as a tiny fixture in tmp_path (32x24 PNGs + YOLO txt / VOC xml),
including a missing label file and an unpaired image; the real shared data is checked
against the counts its README states (skipped when absent).
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from ivif_fusion.cli import main
from ivif_fusion.data import check as C
from ivif_fusion.data import classes as K
from ivif_fusion.data import readers as R
from ivif_fusion.data import records as E

W, H = 32, 24


def _png(path: Path, w: int = W, h: int = H, channels: int = 1) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    shape = (h, w) if channels == 1 else (h, w, channels)
    cv2.imwrite(str(path), np.full(shape, 100, np.uint8))
    return path


def _txt(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def _voc(path: Path, objects: list[tuple[str, tuple[float, float, float, float]]], w: int = W, h: int = H) -> None:
    objs = "".join(f"<object><name>{n}</name><difficult>0</difficult><bndbox><xmin>{b[0]}</xmin><ymin>{b[1]}</ymin>"
                   f"<xmax>{b[2]}</xmax><ymax>{b[3]}</ymax></bndbox></object>" for n, b in objects)
    _txt(path, f"<annotation><filename>{path.stem}.jpg</filename><size><width>{w}</width><height>{h}</height>"
               f"<depth>3</depth></size>{objs}</annotation>")


# YOLO "0 0.5 0.5 0.25 0.5" on 32x24 is centre (16, 12), size (8, 12) -> x1y1x2y2 (12, 6, 20, 18)
YOLO_LINE = "0 0.5 0.5 0.25 0.5\n"
YOLO_BOX = [12.0, 6.0, 20.0, 18.0]


def make_msrs(root: Path, *, missing_label: str | None = None, unpaired: bool = False) -> Path:
    """Official MSRS: train/test ir+vi, Segmentation_labels, Lele-3 style labels_det/<set>/<split>/."""
    for split, names in (("train", ["00556D", "00633D"]), ("test", ["00004N"])):
        for n in names:
            _png(root / split / "ir" / f"{n}.png")
            _png(root / split / "vi" / f"{n}.png", channels=3)
            _png(root / split / "Segmentation_labels" / f"{n}.png")
            for s, text in (("fusion", YOLO_LINE + "2 0.25 0.25 0.5 0.5\n"), ("infrared", YOLO_LINE)):
                if n != missing_label:
                    _txt(root / "labels_det" / s / split / f"{n}.txt", text)
    _txt(root / "labels_det" / "classes.txt", "0 person\n1 bicycle\n2 car\n")
    if unpaired:
        _png(root / "train" / "ir" / "00999N.png")
    return root


def make_m3fd(root: Path, *, missing_label: str | None = None, unpaired: bool = False) -> Path:
    for n, objs in (("00000", [("People", (1, 2, 10, 20)), ("Lamp", (5, 5, 8, 9))]),
                    ("00001", [("Truck", (0, 0, 31, 23)), ("Motorcycle", (3, 4, 6, 8))])):
        _png(root / "Ir" / f"{n}.png")
        _png(root / "Vis" / f"{n}.png", channels=3)
        if n != missing_label:
            _voc(root / "Annotation" / f"{n}.xml", objs)
    if unpaired:
        _png(root / "Vis" / "00002.png", channels=3)
    return root


def make_llvip(root: Path, *, missing_label: str | None = None, unpaired: bool = False) -> Path:
    for split, names in (("train", ["010001", "010002"]), ("test", ["190001"])):
        for n in names:
            _png(root / "infrared" / split / f"{n}.jpg", channels=3)
            _png(root / "visible" / split / f"{n}.jpg", channels=3)
            if n != missing_label:
                _voc(root / "Annotations" / f"{n}.xml", [("person", (2, 3, 12, 20))])
    if unpaired:
        _png(root / "infrared" / "test" / "190002.jpg", channels=3)
    return root


def make_flat(root: Path, *, missing_label: str | None = None, unpaired: bool = False, sets: bool = False) -> Path:
    for n in ("010001", "010002"):
        _png(root / "ir" / f"{n}.jpg", channels=3)
        _png(root / "vi" / f"{n}.jpg", channels=3)
        if n != missing_label:
            if sets:
                for s in ("infrared", "visible"):
                    _txt(root / "labels_det" / s / f"{n}.txt", YOLO_LINE)
            else:
                _txt(root / "labels_det" / f"{n}.txt", YOLO_LINE)
    _txt(root / "labels_det" / "classes.txt", "person\n")
    if unpaired:
        _png(root / "ir" / "010003.jpg", channels=3)
    return root


MAKERS = {"msrs": make_msrs, "m3fd": make_m3fd, "llvip": make_llvip, "flat": make_flat}
# (name whose label is removed, expected missing label path relative to root, unpaired file relative to root)
BROKEN = {
    "msrs": ("00633D", "labels_det/fusion/train/00633D.txt", "train/ir/00999N.png"),
    "m3fd": ("00001", "Annotation/00001.xml", "Vis/00002.png"),
    "llvip": ("010002", "Annotations/010002.xml", "infrared/test/190002.jpg"),
    "flat": ("010002", "labels_det/010002.txt", "ir/010003.jpg"),
}


# --------------------------------------------------------------------------- each layout, clean


def test_msrs_records_boxes_masks_and_sets(tmp_path: Path) -> None:
    root = make_msrs(tmp_path / "MSRS")
    rd = R.open_dataset(root, "msrs")
    assert rd.splits == ["train", "test"]
    assert rd.label_sets == ["fusion", "infrared"]
    assert rd.label_set == "fusion"
    assert rd.classes == ("person", "bicycle", "car")
    recs = list(rd)
    assert [(r.name, r.split) for r in recs] == [("00556D", "train"), ("00633D", "train"), ("00004N", "test")]
    r0 = recs[0]
    assert r0.thermal == root / "train/ir/00556D.png" and r0.visible == root / "train/vi/00556D.png"
    assert r0.mask == root / "train/Segmentation_labels/00556D.png"
    np.testing.assert_allclose(r0.boxes, [YOLO_BOX, [0, 0, 16, 12]])
    assert r0.class_ids.tolist() == [0, 2] and r0.labelled and r0.size == (W, H)
    ir_only = R.open_dataset(root, "msrs", label_set="infrared", splits=["test"])
    assert [r.name for r in ir_only] == ["00004N"]
    assert next(iter(ir_only)).class_ids.tolist() == [0]


def test_msrs_split_labels_folder_is_one_default_set(tmp_path: Path) -> None:
    root = tmp_path / "MSRS"
    _png(root / "train/ir/a.png")
    _png(root / "train/vi/a.png", channels=3)
    _txt(root / "train/labels/a.txt", "1 0.5 0.5 0.25 0.5\n")
    rd = R.MsrsReader(root)
    assert rd.label_sets == [E.DEFAULT_SET]
    rec = next(iter(rd))
    assert rec.class_ids.tolist() == [1] and rec.mask is None
    np.testing.assert_allclose(rec.boxes, [YOLO_BOX])


def test_m3fd_class_maps(tmp_path: Path) -> None:
    root = make_m3fd(tmp_path / "M3FD")
    kept = list(R.open_dataset(root, "m3fd"))
    assert kept[0].class_ids.tolist() == [0, 4]  # People, Lamp in the 6-class M3FD map
    np.testing.assert_allclose(kept[0].boxes, [[1, 2, 10, 20], [5, 5, 8, 9]])
    assert kept[1].class_ids.tolist() == [5, 3]  # Truck, Motorcycle
    merged = list(R.open_dataset(root, "m3fd", class_map="m3fd_to_msrs"))
    assert merged[0].class_ids.tolist() == [0]  # Lamp dropped
    np.testing.assert_allclose(merged[0].boxes, [[1, 2, 10, 20]])
    assert merged[1].class_ids.tolist() == [2, 1]  # Truck -> car, Motorcycle -> bicycle
    assert merged[0].size is None  # VOC boxes need no image read


def test_llvip_splits_and_voc_boxes(tmp_path: Path) -> None:
    root = make_llvip(tmp_path / "LLVIP")
    rd = R.open_dataset(root, "llvip")
    recs = list(rd)
    assert [(r.name, r.split) for r in recs] == [("010001", "train"), ("010002", "train"), ("190001", "test")]
    assert rd.classes == ("person",)
    np.testing.assert_allclose(recs[2].boxes, [[2, 3, 12, 20]])
    assert recs[2].thermal == root / "infrared/test/190001.jpg"
    assert [r.name for r in R.open_dataset(root, "llvip", splits=["test"])] == ["190001"]


def test_flat_single_and_named_sets(tmp_path: Path) -> None:
    single = R.open_dataset(make_flat(tmp_path / "a"), "flat")
    assert single.label_sets == [E.DEFAULT_SET] and single.classes == ("person",)
    recs = list(single)
    assert [r.name for r in recs] == ["010001", "010002"]
    np.testing.assert_allclose(recs[1].boxes, [YOLO_BOX])
    named = R.open_dataset(make_flat(tmp_path / "b", sets=True), "flat")
    assert named.label_sets == ["infrared", "visible"] and named.label_set == "infrared"
    with pytest.raises(E.LayoutError, match="box set 'fusion' not found.*infrared, visible"):
        R.open_dataset(tmp_path / "b", "flat", label_set="fusion")


def test_shared_view_skips_unpaired_maps_classes_and_raises_on_labels(tmp_path: Path,
                                                                       caplog: pytest.LogCaptureFixture) -> None:
    from ivif_fusion.data.shared import class_boxes, labelled_pairs, open_shared, split_items

    make_flat(tmp_path / "LLVIP", unpaired=True, missing_label="010002")
    with caplog.at_level("WARNING"):
        reader = open_shared(tmp_path, "LLVIP", label_set="fusion", classes=["car", "person"])
    # the unpaired 010003.jpg is left out, counted and logged; no 'fusion' set here: the single set is used
    assert [it.file for it in reader.items] == ["010001.jpg", "010002.jpg"]
    assert [p.name for p in reader.unpaired] == ["010003.jpg"] and "1 unpaired image(s) left out" in caplog.text
    assert reader.label_set == E.DEFAULT_SET
    # person is class 1 of the network's classes
    rec = reader.record(reader.items[0])
    np.testing.assert_allclose(class_boxes(rec), [[1, *YOLO_BOX]])
    np.testing.assert_allclose(reader.yolo_rows(reader.items[0]), [[1, *map(float, YOLO_LINE.split()[1:])]])
    # non-MSRS datasets only train; the pair without a label file is not "labelled"
    assert [it.file for it in split_items(reader, "LLVIP", "train")] == ["010001.jpg", "010002.jpg"]
    assert split_items(reader, "LLVIP", "val") == []
    assert [it.file for it in labelled_pairs(tmp_path, "LLVIP", "train")[1]] == ["010001.jpg"]
    # a missing label file asked for raises, naming it
    with pytest.raises(E.MissingLabelError, match="010002.txt"):
        reader.record(reader.items[1])
    with pytest.raises(E.LayoutError, match="none of its classes"):
        open_shared(tmp_path, "LLVIP", classes=["car"])
    with pytest.raises(E.LayoutError, match="dataset 'TNO' not found"):
        open_shared(tmp_path, "TNO")
    (tmp_path / "LLVIP" / "labels_det" / "010001.txt").write_text("3 0.5 0.5 0.1 0.1\n")
    with pytest.raises(E.BadLabelError, match="class id 3"):
        reader.yolo_rows(reader.items[0])


def test_flat_without_classes_txt_is_an_error(tmp_path: Path) -> None:
    root = make_flat(tmp_path / "a")
    (root / "labels_det/classes.txt").unlink()
    with pytest.raises(E.LayoutError, match="no classes.txt"):
        R.FlatReader(root)


def test_readers_stream_lazily(tmp_path: Path) -> None:
    """Building a reader opens no label file: a broken one only fails when its record is produced."""
    root = make_flat(tmp_path / "a")
    _txt(root / "labels_det/010002.txt", "0 0.5 oops 0.1 0.1\n")
    it = iter(R.FlatReader(root))
    assert next(it).name == "010001"
    with pytest.raises(E.BadLabelError, match=r"010002.txt:1"):
        next(it)


@pytest.mark.parametrize("layout", ["msrs", "m3fd", "llvip", "flat"])
def test_detect_layout(tmp_path: Path, layout: str) -> None:
    root = MAKERS[layout](tmp_path / layout)
    assert R.detect_layout(root) == layout
    assert R.open_dataset(root).layout == layout


def test_detect_layout_unknown(tmp_path: Path) -> None:
    with pytest.raises(E.LayoutError, match="cannot tell the layout"):
        R.detect_layout(tmp_path)


# --------------------------------------------------------------------------- broken fixtures


@pytest.mark.parametrize("layout", ["msrs", "m3fd", "llvip", "flat"])
def test_missing_label_names_the_file(tmp_path: Path, layout: str) -> None:
    name, rel, _ = BROKEN[layout]
    root = MAKERS[layout](tmp_path / layout, missing_label=name)
    with pytest.raises(E.MissingLabelError, match=str(root / rel)):
        list(R.open_dataset(root, layout))
    lenient = R.open_dataset(root, layout, strict=False)
    recs = {r.name: r for r in lenient}
    assert not recs[name].labelled and len(recs[name].boxes) == 0
    assert all(r.labelled for n, r in recs.items() if n != name)
    assert [(p.kind, p.path) for p in lenient.problems] == [("missing_label", root / rel)]


@pytest.mark.parametrize("layout", ["msrs", "m3fd", "llvip", "flat"])
def test_unpaired_image_names_the_file(tmp_path: Path, layout: str) -> None:
    _, _, rel = BROKEN[layout]
    root = MAKERS[layout](tmp_path / layout, unpaired=True)
    with pytest.raises(E.UnpairedFileError, match=f"unpaired image {root / rel}"):
        R.open_dataset(root, layout)
    lenient = R.open_dataset(root, layout, strict=False)
    assert lenient.unpaired == [root / rel]
    assert [p.kind for p in lenient.problems] == ["unpaired"]
    assert Path(rel).stem not in [r.name for r in lenient]


def test_unknown_class_and_bad_class_id(tmp_path: Path) -> None:
    root = make_m3fd(tmp_path / "M3FD")
    _voc(root / "Annotation/00001.xml", [("Dog", (1, 1, 4, 4))])
    with pytest.raises(E.BadLabelError, match="class 'Dog' is not in the class map"):
        list(R.M3fdReader(root))
    flat = make_flat(tmp_path / "flat")
    _txt(flat / "labels_det/010001.txt", "3 0.5 0.5 0.1 0.1\n")
    with pytest.raises(E.BadLabelError, match=r"class id 3 is not one of 0..0 \(person\)"):
        list(R.FlatReader(flat))


def test_missing_mask_is_reported(tmp_path: Path) -> None:
    root = make_msrs(tmp_path / "MSRS")
    (root / "test/Segmentation_labels/00004N.png").unlink()
    with pytest.raises(E.MissingMaskError, match="00004N.png missing"):
        list(R.MsrsReader(root))


def test_class_map_yaml(tmp_path: Path) -> None:
    f = tmp_path / "map.yaml"
    f.write_text("classes: [person, vehicle]\nmap: {People: person, Car: vehicle, Bus: vehicle, Truck: vehicle, "
                 "Motorcycle: vehicle, Lamp: null}\n")
    cm = K.load_class_map(f)
    assert cm.classes == ("person", "vehicle")
    assert (cm.target("Bus"), cm.target("Lamp"), cm.target("People")) == (1, None, 0)
    recs = list(R.M3fdReader(make_m3fd(tmp_path / "M3FD"), class_map=f))
    assert recs[1].class_ids.tolist() == [1, 1]
    f.write_text("classes: [person]\nmap: {Car: car}\n")
    with pytest.raises(E.LayoutError, match="sends boxes to 'car'"):
        K.load_class_map(f)
    with pytest.raises(E.LayoutError, match="neither a built-in"):
        K.load_class_map(tmp_path / "nope.yaml")


# --------------------------------------------------------------------------- check + CLI


def test_check_counts_problems_and_warnings(tmp_path: Path) -> None:
    root = make_flat(tmp_path / "MSRS", sets=True, unpaired=True)
    # an MSRS name from the misaligned list, a truncated image and a size mismatch
    _png(root / "ir/00036N.png")
    _png(root / "vi/00036N.png", w=40, channels=3)
    for s in ("infrared", "visible"):
        _txt(root / f"labels_det/{s}/00036N.txt", "")
    (root / "vi/010002.jpg").write_bytes((root / "vi/010002.jpg").read_bytes()[:40])
    rep = C.check(R.FlatReader(root, strict=False))
    assert rep.pairs == 3
    assert rep.sets["infrared"].boxes == 2 and rep.sets["infrared"].empty == 1 and rep.sets["infrared"].files == 3
    assert dict(rep.sets["visible"].classes) == {"person": 2}
    assert dict(rep.problem_counts()) == {"unpaired": 1, "unreadable": 1, "size_mismatch": 1}
    assert any("00036N" in w and "MSRS_MISALIGNED" in w for w in rep.warnings)
    assert dict(rep.sizes) == {(W, H): 2}  # a pair with an unreadable image has no size


def test_cli_data_check(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    root = make_m3fd(tmp_path / "M3FD")
    out = tmp_path / "rep.json"
    assert main(["data", "check", str(root), "--layout", "m3fd", "--class-map", "m3fd_to_msrs",
                 "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "pairs: 2;" in text and "32x24 2" in text
    assert "default: 3 boxes in 2 label files (0 empty)" in text
    assert "(1 dropped)" in text and "problems: none" in text
    rep = json.loads(out.read_text())
    assert rep["sets"]["default"]["classes"] == {"person": 1, "car": 1, "bicycle": 1}
    assert rep["sets"]["default"]["source_classes"]["Lamp"] == 1
    broken = make_llvip(tmp_path / "LLVIP", missing_label="010001", unpaired=True)
    assert main(["data", "check", str(broken), "--layout", "llvip", "--quick"]) == 1
    text = capsys.readouterr().out
    assert "problems: 2 (missing_label 1, unpaired 1)" in text
    assert f"[missing_label] label file {broken / 'Annotations/010001.xml'} missing" in text
    assert main(["data", "check", str(tmp_path / "none"), "--layout", "flat"]) == 1
    assert "ERROR: dataset folder" in capsys.readouterr().err


def test_cli_literals_match_readers() -> None:
    from ivif_fusion.cli import data_check

    assert data_check.LAYOUTS == R.LAYOUTS
    assert set(data_check.CLASS_MAP_NAMES) == set(K.CLASS_MAPS)


# --------------------------------------------------------------------------- real shared data


@pytest.mark.data
def test_shared_msrs_counts(data_root: Path, capsys: pytest.CaptureFixture) -> None:
    rep = C.check(R.open_dataset(data_root / "MSRS", "flat", strict=False), decode=False)
    assert rep.pairs == 365 and dict(rep.sizes) == {(640, 480): 365} and rep.problems == []
    assert sorted(rep.sets) == ["fusion", "infrared", "visible"]
    counts = {s: (st.boxes, st.empty, dict(st.classes)) for s, st in rep.sets.items()}
    assert counts["infrared"] == (1815, 18, {"person": 1189, "bicycle": 245, "car": 381})
    assert counts["visible"] == (1013, 90, {"person": 473, "bicycle": 143, "car": 397})
    # The MSRS README says 1170 (710/99/361) for 'fusion': 332 of its files lack a final newline,
    # so a `cat | wc -l` count merges 331 boxes into their neighbours. Per file there are 1501.
    assert counts["fusion"] == (1501, 33, {"person": 906, "bicycle": 130, "car": 465})
    assert len(rep.warnings) == 1
    assert all(n in rep.warnings[0] for n in R.MSRS_MISALIGNED)
    assert main(["data", "check", str(data_root / "MSRS"), "--layout", "flat", "--quick"]) == 0
    out = capsys.readouterr().out
    assert "pairs: 365;" in out and "box sets: 3 (fusion, infrared, visible)" in out
    assert "WARNING: 5 known-misaligned MSRS pair(s)" in out and "00036N, 00237D, 00571D, 01148N, 01344N" in out


@pytest.mark.data
def test_shared_llvip_counts(data_root: Path, capsys: pytest.CaptureFixture) -> None:
    if not (data_root / "LLVIP" / "ir").is_dir():
        pytest.skip(f"LLVIP not found under {data_root}")
    assert main(["data", "check", str(data_root / "LLVIP"), "--layout", "flat"]) == 0  # full decode
    out = capsys.readouterr().out
    assert "pairs: 50;" in out and "1280x1024 50" in out
    assert "default: 222 boxes in 50 label files (0 empty): person 222" in out
    rd = R.FlatReader(data_root / "LLVIP", class_map="llvip_to_msrs")
    assert sum(len(r.boxes) for r in rd) == 222 and rd.classes == K.MSRS_CLASSES
