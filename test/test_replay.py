"""Replay: generated bags (sqlite3 / MCAP) -> pairing -> pipeline -> output bag + report, every frame accounted."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from ivif_fusion.config import TaskConfig, runtime_defaults
from ivif_fusion.io import bags, fault_bag
from ivif_fusion.io.messages import stamp_ns
from ivif_fusion.replay import replay
from ivif_fusion.report import write_report
from ivif_fusion.runtime.pipeline import PairSizeMismatch
from ivif_fusion.types import Detection, Result, TaskOutput

from test_bags import H, W, write_pairs

FAULTS = dict(drop=0.15, duplicate=0.15, reorder=0.15, corrupt=0.15)
N = 16


@pytest.fixture(scope="module")
def pairs_dir(tmp_path_factory) -> Path:  # noqa: ANN001
    return write_pairs(tmp_path_factory.mktemp("pairs"), N, seed=1)


def _cfg(ckpt: Path, **over):  # noqa: ANN001, ANN202
    """Replay config; repeated and late stamps are dropped on arrival (``sync.reject_late``), the
    semantics under which the sidecar predicts the accounting exactly."""
    o = {"pipeline.backbone_weights": str(ckpt), "replay.metrics_pairs": 2, "replay.sample_frames": 3,
         "sync.reject_late": True}
    o.update(over)
    return runtime_defaults(o)


def _affected(side: dict) -> set[int]:
    return {f["index"] for f in side["faults"] if f["kind"] in ("drop", "reorder", "corrupt")}


@pytest.mark.parametrize("storage,variant", [("sqlite3", {}), ("mcap", {}),
                                             ("mcap", {"compressed_visible": True, "thermal_encoding": "mono16"})])
def test_replay_accounts_for_every_frame_and_copies_headers(pairs_dir, tmp_path, random_vfn_ckpt, storage, variant):
    opts = fault_bag.MakeBagOptions(storage=storage, seed=11, jitter_ms=4, **FAULTS, **variant)
    made = fault_bag.make_bag(pairs_dir, tmp_path / "in", opts, progress=False)
    side = fault_bag.load_sidecar(made.sidecar)
    assert {f["kind"] for f in side["faults"]} >= {"drop", "duplicate"} or len(side["faults"]) >= 3
    cfg = _cfg(random_vfn_ckpt, **{"replay.storage": storage})
    s = replay(made.bag, cfg, tmp_path / "out", progress=False)

    expected = fault_bag.expected_accounting(side, "approximate", 0.05)
    assert expected is not None
    # exact accounting, per stream and per reason, equal to what make-bag injected
    for st in ("thermal", "visible"):
        a = s.accounting[st]
        assert a["received"] == expected["received"][st] == side["messages"][side["topics"][st]]
        assert a["dropped"] == expected["dropped"][st]
        assert a["received"] == a["paired"] + a["dropped_total"] == a["fused"] + a["dropped_total"]
        assert a["balanced"]
    assert s.pairs_emitted == s.pairs_fused == expected["pairs"]
    assert s.matches_injected is True
    assert s.image_size == [W, H]
    assert set(s.fusion_metrics["fusion"]) >= {"EN", "SSIM", "Qabf"} and s.metrics_pairs == 2

    # output bag: one fused image per fused pair, header = the thermal input's stamp and frame_id
    out = bags.read_all(s.output_bag)
    assert {m.topic for m in out} == {"/ivif/fused/fusion"}
    want = [side["frames"][i]["thermal_stamp_ns"] for i in range(N - 1) if i not in _affected(side)]
    got = [stamp_ns(m.msg.header) for m in out]
    assert got == want
    assert {m.msg.header.frame_id for m in out} == {"thermal_optical_frame"}
    m0 = out[0].msg
    assert (m0.encoding, m0.width, m0.height, len(m0.data)) == ("rgb8", W, H, W * H * 3)
    with bags.BagReader(s.output_bag) as r:  # storage as configured
        assert next(r.path.glob("*.mcap" if storage == "mcap" else "*.db3"), None) is not None

    if variant:
        return  # the report is checked once per storage format
    paths = write_report(s)
    md = paths["markdown"].read_text()
    assert "every frame accounted for" in md and "matches the faults recorded" in md
    for key in ("accounting", "latency", "samples"):
        assert paths[key].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "<table>" in paths["html"].read_text()
    assert len(s.samples) == 3


def test_rgb_reference_and_exact_mode(pairs_dir, tmp_path, random_vfn_ckpt):
    made = fault_bag.make_bag(pairs_dir, tmp_path / "in", fault_bag.MakeBagOptions(jitter_ms=0, seed=2, drop=0.3),
                         progress=False)
    side = fault_bag.load_sidecar(made.sidecar)
    cfg = _cfg(random_vfn_ckpt, **{"sync.mode": "exact", "sync.reference": "visible", "replay.metrics_pairs": 0})
    s = replay(made.bag, cfg, tmp_path / "out", progress=False)
    exp = fault_bag.expected_accounting(side, "exact")
    assert exp is not None and exp["pairs"] == N - len(side["faults"])  # exact: the last pair is emitted too
    assert s.pairs_fused == exp["pairs"] and s.matches_injected
    out = bags.read_all(s.output_bag)
    assert [stamp_ns(m.msg.header) for m in out] == [
        f["visible_stamp_ns"] for f in side["frames"] if f["index"] not in _affected(side)]
    assert {m.msg.header.frame_id for m in out} == {"rgb_optical_frame"}


# ----------------------------------------------------------------------------- detection outputs and mAP


class PerfectDetector:
    """A stand-in pipeline whose detection task returns the sidecar's ground truth (score 0.9)."""

    def __init__(self, side: dict, fail_every: int = 0) -> None:
        self.gt = {f["thermal_stamp_ns"]: f["boxes"] for f in side["frames"]}
        self.classes = side["classes"]
        self.backend = SimpleNamespace(name="stub")
        self.backend_notes: list[str] = []
        self.plans = [SimpleNamespace(cfg=TaskConfig(name="det", kind="detection", classes=self.classes))]
        self.fail_every = fail_every
        self.calls = 0

    def task_config(self, name: str) -> TaskConfig:
        return self.plans[0].cfg

    def preprocess(self, ir, rgb):  # noqa: ANN001, ANN201
        return ir, rgb

    def run(self, pair) -> Result:  # noqa: ANN001
        self.calls += 1
        if self.fail_every and self.calls % self.fail_every == 0:
            raise RuntimeError("injected pipeline failure")
        fused = (np.clip(pair.visible.image, 0, 1) * 255).astype(np.uint8)
        dets = [Detection(int(b[0]), self.classes[int(b[0])], 0.9, *b[1:]) for b in self.gt[pair.thermal.stamp_ns]]
        return Result(pair, {"det": TaskOutput(fused, dets)}, {"total": 1.0})


def test_detections_written_and_map_from_sidecar(msrs_root, tmp_path):
    names = ["00004N.png", "00008N.png", "00012N.png", "00016N.png", "00020N.png", "00024N.png"]
    made = fault_bag.make_bag(msrs_root, tmp_path / "in", fault_bag.MakeBagOptions(max_side=160, storage="mcap"), names=names,
                         labels_dir=msrs_root / "labels_det" / "fusion", progress=False)
    side = fault_bag.load_sidecar(made.sidecar)
    cfg = runtime_defaults({"replay.metrics_pairs": 0})
    s = replay(made.bag, cfg, tmp_path / "out", pipeline=PerfectDetector(side), progress=False)
    assert s.pairs_fused == len(names) - 1  # the last pair is still waiting at end of stream
    r = s.detection_map["det"]
    assert r["mAP50"] == pytest.approx(1.0) and r["mAP50-95"] == pytest.approx(1.0)
    assert r["images"] == len(names) - 1
    out = [m for m in bags.read_all(s.output_bag) if m.topic == "/ivif/detections/det"]
    assert len(out) == len(names) - 1
    from ivif_fusion.io.messages import msg_to_detections

    f0 = side["frames"][0]
    assert stamp_ns(out[0].msg.header) == f0["thermal_stamp_ns"]
    dets = msg_to_detections(out[0].msg, side["classes"])
    assert [d.class_id for d in dets] == [b[0] for b in f0["boxes"]]
    assert dets[0].x1 == pytest.approx(f0["boxes"][0][1]) and dets[0].y2 == pytest.approx(f0["boxes"][0][4])
    paths = write_report(s)
    assert "mAP50" in paths["markdown"].read_text()


def test_pipeline_errors_and_size_mismatch_are_accounted(pairs_dir, tmp_path, random_vfn_ckpt):
    made = fault_bag.make_bag(pairs_dir, tmp_path / "in", fault_bag.MakeBagOptions(), progress=False)
    side = fault_bag.load_sidecar(made.sidecar)
    for f in side["frames"]:
        f["boxes"] = []
    side["classes"] = ["person"]
    s = replay(made.bag, runtime_defaults({"replay.metrics_pairs": 0}), tmp_path / "o1",
               pipeline=PerfectDetector(side, fail_every=3), progress=False)
    fails = (N - 1) // 3
    for st in ("thermal", "visible"):
        a = s.accounting[st]
        assert a["dropped"] == {"pipeline_error": fails, "unflushed": 1}
        assert a["received"] == N and a["fused"] == N - 1 - fails and a["balanced"]
    assert s.pairs_emitted == N - 1 and s.pairs_fused == N - 1 - fails

    # RGB at another size than thermal: every pair is a size_mismatch drop (resize disabled); equal
    # stamps make every pair provably optimal at once, so even the last one is emitted
    ts = bags.typestore().types
    from ivif_fusion.io.messages import array_to_image_msg

    with bags.BagWriter(tmp_path / "mm", "sqlite3") as w:
        for k in range(5):
            t = 1_000_000_000 + k * 100_000_000
            w.write(bags.THERMAL_TOPIC, t, array_to_image_msg(ts[bags.IMAGE], fault_bag.bag_header(t, "th"),
                                                              np.full((H, W), 100, np.uint8), "mono8"))
            w.write(bags.RGB_TOPIC, t + 1, array_to_image_msg(ts[bags.IMAGE], fault_bag.bag_header(t, "visible"),
                                                              np.full((H // 2, W // 2, 3), 90, np.uint8), "rgb8"))
    s = replay(tmp_path / "mm", _cfg(random_vfn_ckpt, **{"replay.metrics_pairs": 0}), tmp_path / "o2", progress=False)
    for st in ("thermal", "visible"):
        assert s.accounting[st]["dropped"] == {"size_mismatch": 5}
        assert s.accounting[st]["balanced"]
    assert s.pairs_fused == 0 and "differ" in s.drops[0]["detail"]
    assert isinstance(PairSizeMismatch("x"), Exception)
    write_report(s)  # a report with nothing fused still renders


def test_undecodable_message_is_an_accounted_drop(tmp_path, random_vfn_ckpt):
    """Garbage CDR bytes on the thermal topic: a decode_error drop stamped with the log time."""
    ts = bags.typestore().types
    from ivif_fusion.io.messages import array_to_image_msg

    with bags.BagWriter(tmp_path / "g", "mcap") as w:
        for k in range(4):
            t = 2_000_000_000 + k * 100_000_000
            if k == 1:
                w.write_raw(bags.THERMAL_TOPIC, t, b"\x00\x01\x00\x00garbage")
            else:
                w.write(bags.THERMAL_TOPIC, t, array_to_image_msg(ts[bags.IMAGE], fault_bag.bag_header(t, "th"),
                                                                  np.full((H, W), 80, np.uint8), "mono8"))
            w.write(bags.RGB_TOPIC, t + 1, array_to_image_msg(ts[bags.IMAGE], fault_bag.bag_header(t, "visible"),
                                                              np.full((H, W, 3), 90, np.uint8), "rgb8"))
    s = replay(tmp_path / "g", _cfg(random_vfn_ckpt, **{"replay.metrics_pairs": 0}), tmp_path / "o", progress=False)
    assert s.accounting["thermal"]["dropped"] == {"decode_error": 1}
    assert s.accounting["visible"]["dropped"] == {"no_partner": 1}
    assert s.pairs_fused == 3 and s.balanced
    bad = next(d for d in s.drops if d["reason"] == "decode_error")
    assert bad["stamp_ns"] == 2_100_000_000 and "cannot deserialize" in bad["detail"]
    # a single storage file works as well as the bag folder
    s2 = replay(next((tmp_path / "g").glob("*.mcap")), _cfg(random_vfn_ckpt, **{"replay.metrics_pairs": 0}),
                tmp_path / "o2", progress=False)
    assert s2.accounting == s.accounting


# ----------------------------------------------------------------------------- segmentation masks


def test_cli_replay_with_segmentation_writes_counts_and_reports_masks(pairs_dir, tmp_path, random_vfn_ckpt,
                                                                      random_segmenter_ckpt, capsys):
    """`ivif replay` with fusion + segmentation: one mono8 mask per fused pair in the bag, with the thermal
    header; the summary counts them and its per-class pixel fractions equal those of the bag's masks."""
    import json

    from ivif_fusion.config import dump_yaml
    from ivif_fusion.io.messages import image_msg_to_array
    from ivif_fusion.tasks.segmentation import MSRS_SEG_CLASSES

    made = fault_bag.make_bag(pairs_dir, tmp_path / "b", fault_bag.MakeBagOptions(storage="mcap", seed=4, drop=0.2),
                              progress=False)
    side = fault_bag.load_sidecar(made.sidecar)
    cfg = runtime_defaults({"pipeline.backbone_weights": str(random_vfn_ckpt), "pipeline.threads": 1,
                            "pipeline.tasks": [{"name": "fusion", "kind": "fusion"},
                                               {"name": "seg", "kind": "segmentation",
                                                "weights": str(random_segmenter_ckpt)}],
                            "replay.metrics_pairs": 0, "replay.sample_frames": 2})
    (tmp_path / "seg.yaml").write_text(dump_yaml(cfg) + "\n")
    rc, out, err = _cli(["replay", str(made.bag), "--config", str(tmp_path / "seg.yaml"), "--out",
                         str(tmp_path / "o"), "--no-progress"], capsys)
    assert rc == 0, err
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())
    fused = summary["pairs_fused"]
    assert fused == N - 1 - len(_affected(side)) and fused > 5

    msgs = bags.read_all(tmp_path / "o" / "bag")
    masks = [m.msg for m in msgs if m.topic == "/ivif/mask/seg"]
    images = [m.msg for m in msgs if m.topic == "/ivif/fused/seg"]
    assert len(masks) == len(images) == fused == summary["output_counts"]["/ivif/mask/seg"]
    want = [side["frames"][i]["thermal_stamp_ns"] for i in range(N - 1) if i not in _affected(side)]
    assert [stamp_ns(m.header) for m in masks] == [stamp_ns(m.header) for m in images] == want
    assert {m.header.frame_id for m in masks} == {"thermal_optical_frame"}
    arrays = [image_msg_to_array(m)[0] for m in masks]
    assert all(m.encoding == "mono8" and a.shape == (H, W) and a.dtype == np.uint8 for m, a in zip(masks, arrays))
    pixels = np.bincount(np.concatenate([a.ravel() for a in arrays]), minlength=len(MSRS_SEG_CLASSES))
    assert pixels.size == len(MSRS_SEG_CLASSES)  # only the network's class ids

    seg = summary["segmentation"]["seg"]
    assert (seg["masks"], seg["pixels"], seg["classes"]) == (fused, fused * W * H, list(MSRS_SEG_CLASSES))
    assert seg["pixel_fraction"] == pytest.approx({c: pixels[k] / pixels.sum() for k, c in enumerate(MSRS_SEG_CLASSES)})
    assert "segmentation 'seg': " + f"{fused} mask(s)" in out

    md = (tmp_path / "o" / "report.md").read_text()
    section = md.split("## Segmentation", 1)[1].split("\n## ", 1)[0]
    top = max(seg["pixel_fraction"], key=seg["pixel_fraction"].get)
    assert f"| seg | {fused} | {fused * W * H} |" in section and f"{top} {seg['pixel_fraction'][top]:.3f}" in section
    assert "figures/segmentation.png" in section
    assert (tmp_path / "o" / "figures" / "segmentation.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "<img src='figures/segmentation.png'" in (tmp_path / "o" / "report.html").read_text()


def test_mask_overlay_colours_and_statistics():
    """Hand-computed blend in the one mask palette: car/person/bike keep their colours at any id, ignore is
    violet at its own alpha, background and uncoloured values stay as they were."""
    from ivif_fusion.data import mask_palette
    from ivif_fusion.data.mask_palette import CLASS_COLOURS, IGNORE_COLOUR, mask_colours, overlay_mask
    from ivif_fusion.replay.evidence import mask_statistics
    from ivif_fusion.report import figures
    from ivif_fusion.tasks.segmentation import MSRS_SEG_CLASSES

    assert figures.mask_colours is mask_colours and figures.overlay_mask is overlay_mask  # the report draws with it
    classes = ["unlabelled", "person", "car", "bike", "curve"]
    colours = mask_colours(classes)
    assert 0 not in colours and colours[255] == IGNORE_COLOUR == (200, 0, 255)
    assert [colours[1], colours[2], colours[3]] == [CLASS_COLOURS[c] for c in ("person", "car", "bike")]
    assert CLASS_COLOURS == {"car": (0, 170, 255), "person": (255, 48, 48), "bike": (255, 210, 0)}
    assert colours[4] == mask_palette.OTHER_COLOURS[0] and len({*colours.values()}) == 5
    assert mask_colours(["background", "bicycle"])[1] == CLASS_COLOURS["bike"]  # detection name, same colour
    assert len(set(mask_colours(list(MSRS_SEG_CLASSES)).values())) == len(MSRS_SEG_CLASSES)  # 8 classes + ignore
    img = np.full((2, 4, 3), 100, np.uint8)
    mask = np.array([[0, 1, 2, 3], [4, 255, 7, 0]], np.uint8)
    out = overlay_mask(img, mask, colours)
    assert out[0, 0].tolist() == [100, 100, 100] and out[1, 2].tolist() == [100, 100, 100]  # background, no colour
    # alpha 0.5: (100 + c) / 2, rounded half to even
    assert out[0, 2].tolist() == [50, 135, 178]     # car (0, 170, 255)
    assert out[0, 1].tolist() == [178, 74, 74]      # person (255, 48, 48)
    assert out[0, 3].tolist() == [178, 155, 50]     # bike (255, 210, 0)
    assert out[1, 0].tolist() == [50, 155, 105]     # curve: first other colour (0, 210, 110)
    assert out[1, 1].tolist() == [145, 55, 170]     # ignore (200, 0, 255), alpha 0.45: 0.55 * 100 + 0.45 * c
    with pytest.raises(ValueError, match="does not match"):
        overlay_mask(img, mask[:1], colours)

    pixels = np.bincount(np.array([0, 0, 1, 2, 2, 2, 7], np.uint8), minlength=256)
    stats = mask_statistics(pixels, 1, classes)
    assert stats["pixels"] == 7 and stats["masks"] == 1
    assert stats["pixel_fraction"] == pytest.approx({"unlabelled": 2 / 7, "person": 1 / 7, "car": 3 / 7, "bike": 0.0,
                                                     "curve": 0.0, "id 7": 1 / 7})


# ----------------------------------------------------------------------------- CLI: one ERROR line, no traceback


def _cli(argv, capsys):  # noqa: ANN001, ANN202
    from ivif_fusion.cli import main

    rc = main(argv)
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def test_cli_make_bag_and_replay(pairs_dir, tmp_path, random_vfn_ckpt, capsys):
    rc, out, _ = _cli(["make-bag", "--pairs", str(pairs_dir), "--out", str(tmp_path / "b"), "--storage", "mcap",
                       "--drop", "0.2", "--seed", "5", "--no-progress"], capsys)
    assert rc == 0 and "sidecar ->" in out
    rc, out, err = _cli(["replay", str(tmp_path / "b"), "--out", str(tmp_path / "o"), "--weights", str(random_vfn_ckpt),
                         "--set", "replay.metrics_pairs=0", "--no-progress"], capsys)
    assert rc == 0, err
    assert f"report -> {tmp_path / 'o' / 'report.html'}" in out
    assert (tmp_path / "o" / "report.md").is_file() and (tmp_path / "o" / "summary.json").is_file()
    assert "WARNING" not in err


@pytest.mark.parametrize("case", ["missing_topic", "wrong_type", "truncated", "not_a_bag", "out_exists"])
def test_cli_bad_bags(case, pairs_dir, tmp_path, random_vfn_ckpt, capsys):
    bag = tmp_path / "b"
    extra: list[str] = []
    if case == "wrong_type":
        with bags.BagWriter(bag, "sqlite3") as w:
            w.write(bags.THERMAL_TOPIC, 1, bags.typestore().types["std_msgs/msg/String"](data="x"))
            w.write(bags.RGB_TOPIC, 2, bags.typestore().types["std_msgs/msg/String"](data="y"))
    elif case == "not_a_bag":
        bag.mkdir()
        (bag / "readme.txt").write_text("hello")
    else:
        made = fault_bag.make_bag(pairs_dir, bag, fault_bag.MakeBagOptions(storage="mcap"), progress=False)
        if case == "missing_topic":
            extra = ["--set", "replay.visible_topic=/camera/color"]
        elif case == "truncated":
            data = next(made.bag.glob("*.mcap"))
            data.write_bytes(data.read_bytes()[: data.stat().st_size // 3])
        elif case == "out_exists":
            (tmp_path / "o" / "bag").mkdir(parents=True)
    rc, out, err = _cli(["replay", str(bag), "--out", str(tmp_path / "o"), "--weights", str(random_vfn_ckpt),
                         "--no-progress", *extra], capsys)
    assert rc == 1
    lines = [ln for ln in err.strip().splitlines() if ln]
    assert len(lines) == 1 and lines[0].startswith("ERROR: "), err
    assert "Traceback" not in err + out
    want = {"missing_topic": "visible topic '/camera/color' not in bag", "wrong_type": "carries std_msgs/msg/String",
            "truncated": "truncated or corrupt", "not_a_bag": "no metadata.yaml", "out_exists": "exists already"}[case]
    assert want in lines[0]


def test_bag_damaged_mid_file_keeps_partial_report(pairs_dir, tmp_path, random_vfn_ckpt, capsys):
    """A sqlite3 bag whose data pages are damaged: what could be read is reported, then ERROR and exit 1."""
    made = fault_bag.make_bag(pairs_dir, tmp_path / "b", fault_bag.MakeBagOptions(), progress=False)
    db = next(made.bag.glob("*.db3"))
    raw = bytearray(db.read_bytes())
    start = (len(raw) * 6 // 10) // 4096 * 4096
    raw[start:start + 8192] = b"\xff" * 8192
    db.write_bytes(bytes(raw))
    rc, out, err = _cli(["replay", str(made.bag), "--out", str(tmp_path / "o"), "--weights", str(random_vfn_ckpt),
                         "--set", "replay.metrics_pairs=0", "--no-progress"], capsys)
    assert "Traceback" not in err + out
    assert rc == 1
    errors = [ln for ln in err.splitlines() if ln.startswith("ERROR: ")]
    assert len(errors) == 1 and "unreadable after" in errors[0] and "were not read" in errors[0]
    import json

    summ = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert summ["truncated"] and summ["balanced"]
    assert summ["matches_injected"] is None
    assert 0 < sum(a["received"] for a in summ["accounting"].values()) < 2 * N
