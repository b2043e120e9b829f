"""Pipeline: backbone once, per-task outputs, colour, timings, errors; `ivif fuse` end to end."""

import logging

import cv2
import numpy as np
import pytest
import torch

from ivif_fusion.cli import main
from ivif_fusion.colour import luminance, rgb_to_ycbcr, ycbcr_to_rgb
from ivif_fusion.config import runtime_defaults
from ivif_fusion.models import checkpoint
from ivif_fusion.runtime.pipeline import PairSizeMismatch, Pipeline, PipelineConfigError
from ivif_fusion.types import Frame, Pair


def _cfg(ckpt, **over):
    o = {"pipeline.backbone_weights": str(ckpt), "pipeline.threads": 1}
    o.update(over)
    return runtime_defaults(o)


def _pair(h=24, w=32, seed=0):
    rng = np.random.default_rng(seed)
    ir = rng.random((h, w)).astype(np.float32)
    rgb = rng.random((h, w, 3)).astype(np.float32)
    return Pair(Frame(10, "thermal", ir, "mono8", "thermal"), Frame(11, "visible", rgb, "rgb8", "visible"))


def test_one_task_output_matches_backbone_and_keeps_visible_colour(random_vfn_ckpt):
    pipe = Pipeline.from_config(_cfg(random_vfn_ckpt))
    pair = _pair()
    res = pipe.run(pair)
    out = res.outputs["fusion"].fused_rgb
    assert out.dtype == np.uint8 and out.shape == (24, 32, 3)
    m = checkpoint.load_vfn(random_vfn_ckpt)
    with torch.no_grad():
        fy = m(torch.from_numpy(pair.thermal.image)[None, None],
               torch.from_numpy(luminance(pair.visible.image))[None, None])[0, 0].numpy()
    # Definition: fused Y with the visible CbCr, back to RGB (clipped), rounded to uint8.
    ycc = rgb_to_ycbcr(pair.visible.image)
    ycc[..., 0] = fy
    expected = np.clip(np.rint(ycbcr_to_rgb(ycc) * 255), 0, 255)
    assert np.abs(out.astype(int) - expected).max() <= 1
    for stage in ("preprocess", "backbone", "head:generic", "postprocess", "total"):
        assert res.timings_ms[stage] >= 0
    assert res.pair is pair


def test_two_generic_tasks_share_one_backbone_run(random_vfn_ckpt):
    cfg = _cfg(random_vfn_ckpt, **{"pipeline.tasks": [{"name": "a", "kind": "fusion"}, {"name": "b", "kind": "fusion"}]})
    pipe = Pipeline.from_config(cfg)
    calls = []
    bb = pipe.graph.backbone
    orig = bb.shared_features
    bb.shared_features = lambda *a: calls.append(1) or orig(*a)
    res = pipe.run(_pair())
    assert sorted(res.outputs) == ["a", "b"] and len(calls) == 1
    np.testing.assert_array_equal(res.outputs["a"].fused_rgb, res.outputs["b"].fused_rgb)


def test_size_mismatch_and_resize_option(random_vfn_ckpt):
    pair = _pair()
    pair.visible.image = np.zeros((20, 30, 3), np.float32)
    with pytest.raises(PairSizeMismatch, match="differ"):
        Pipeline.from_config(_cfg(random_vfn_ckpt)).run(pair)
    res = Pipeline.from_config(_cfg(random_vfn_ckpt, **{"pipeline.resize_mismatched": True})).run(pair)
    assert res.outputs["fusion"].fused_rgb.shape == (24, 32, 3)


def test_max_side_downscales(random_vfn_ckpt):
    res = Pipeline.from_config(_cfg(random_vfn_ckpt, **{"pipeline.max_side": 16})).run(_pair())
    assert res.outputs["fusion"].fused_rgb.shape == (12, 16, 3)


def test_config_errors_are_clear(random_vfn_ckpt, tmp_path, caplog):
    with pytest.raises(checkpoint.CheckpointError, match="not found"):
        Pipeline.from_config(_cfg(tmp_path / "none.pt"))
    with pytest.raises(PipelineConfigError, match="needs 'weights'"):
        Pipeline.from_config(_cfg(random_vfn_ckpt, **{"pipeline.tasks": [{"name": "d", "kind": "detection"}]}))
    with pytest.raises(PipelineConfigError, match="vifa_weights is empty"):
        Pipeline.from_config(_cfg(random_vfn_ckpt, **{"pipeline.tasks": [{"name": "d", "kind": "fusion",
                                                                           "customization": "vifa"}]}))
    with pytest.raises(PipelineConfigError, match="unique"):
        Pipeline.from_config(_cfg(random_vfn_ckpt, **{"pipeline.tasks": [{"name": "a"}, {"name": "a"}]}))
    with caplog.at_level(logging.WARNING):
        pipe = Pipeline.from_config(_cfg(random_vfn_ckpt, **{"pipeline.backends": ["nosuch", "torch"]}))
    assert pipe.backend.name == "torch" and any("nosuch" in n for n in pipe.backend_notes)


def test_fuse_cli_on_real_pairs(msrs_root, shipped_backbone, tmp_path):
    from ivif_fusion.metrics.fusion import fusion_metrics

    rc = main(["fuse", "--pairs", str(msrs_root), "--out", str(tmp_path), "--names", "00004N.png", "00055D.png",
               "--task", "fusion", "--set", "pipeline.threads=2"])
    assert rc == 0
    for name in ("00004N", "00055D"):
        out = cv2.imread(str(tmp_path / f"{name}.png"))[..., ::-1]
        assert out.shape == (480, 640, 3)
        assert out.mean() > 20, "fused image is (nearly) black"
        ycc = rgb_to_ycbcr(out / 255.0)
        assert np.abs(ycc[..., 1:] - 0.5).max() > 0.05, "fused image lost the visible colour"
        ir = cv2.imread(str(msrs_root / "ir" / f"{name}.png"), cv2.IMREAD_UNCHANGED)
        vi = cv2.imread(str(msrs_root / "vi" / f"{name}.png"))[..., ::-1]
        m = fusion_metrics(ir, vi, out)
        assert all(np.isfinite(v) for v in m.values())


def test_fuse_cli_errors(tmp_path, capsys):
    assert main(["fuse", "--pairs", str(tmp_path), "--out", str(tmp_path / "o")]) == 1
    assert "no 'ir/' folder" in capsys.readouterr().err
    assert main(["fuse", "--pairs", str(tmp_path), "--out", str(tmp_path / "o"), "--task", "nope"]) == 1
    assert "unknown task(s) ['nope']" in capsys.readouterr().err


def test_detection_task_runs_on_the_fused_image(random_vfn_ckpt, tmp_path):
    from ivif_fusion.tasks import YoloDetector

    det = tmp_path / "det.pt"
    YoloDetector().save(det)
    tasks = [{"name": "det", "kind": "detection", "weights": str(det), "score_threshold": 0.0, "image_size": 64},
             {"name": "view", "kind": "fusion"}]
    pipe = Pipeline.from_config(_cfg(random_vfn_ckpt, **{"pipeline.tasks": tasks}))
    res = pipe.run(_pair(48, 64))
    dets = res.outputs["det"].detections
    assert dets, "score_threshold 0 keeps the untrained detector's boxes"
    for d in dets:
        assert 0 <= d.x1 <= d.x2 <= 64 and 0 <= d.y1 <= d.y2 <= 48 and d.label in ("person", "bicycle", "car")
    assert res.outputs["view"].detections is None and "task:det" in res.timings_ms
    with pytest.raises(PipelineConfigError, match="classes"):
        bad = [{"name": "det", "kind": "detection", "weights": str(det), "classes": ["dog"]}]
        Pipeline.from_config(_cfg(random_vfn_ckpt, **{"pipeline.tasks": bad}))
    with pytest.raises(checkpoint.CheckpointError, match="'vfn' model"):
        bad = [{"name": "det", "kind": "detection", "weights": str(random_vfn_ckpt)}]
        Pipeline.from_config(_cfg(random_vfn_ckpt, **{"pipeline.tasks": bad}))


def test_shipped_backbone_beats_pixel_mean_on_eval_pairs(msrs_root, shipped_backbone):
    """Must-show of the foundation: Qabf and VIF above the pixel-mean rule (4 of the MSRS eval-20 pairs)."""
    from ivif_fusion.colour import recombine
    from ivif_fusion.data.paired import PairedFolder
    from ivif_fusion.imageops import to_uint8
    from ivif_fusion.metrics.fusion import fusion_metrics

    pipe = Pipeline.from_config(runtime_defaults({"pipeline.backbone_weights": str(shipped_backbone)}))
    for s in PairedFolder(msrs_root, names=["00004N.png", "00020N.png", "00055D.png", "00099D.png"]):
        ir8, vi8 = to_uint8(s.thermal), to_uint8(s.visible)
        fused = pipe.run_arrays(s.thermal, s.visible)[0]["fusion"].fused_rgb
        mean = to_uint8(recombine((s.thermal + luminance(s.visible)) / 2, s.visible))
        mv, mm = fusion_metrics(ir8, vi8, fused), fusion_metrics(ir8, vi8, mean)
        assert mv["Qabf"] > mm["Qabf"] + 0.1, (s.name, mv["Qabf"], mm["Qabf"])
        assert mv["VIF"] > mm["VIF"], (s.name, mv["VIF"], mm["VIF"])
        assert np.isfinite(fused).all() and fused.mean() > 10


def test_shipped_config_uses_the_shipped_onnx_graph(shipped_backbone):
    """models/onnx/fusion.onnx must be re-exported whenever the shipped weights or heads change."""
    from ivif_fusion.config import load_runtime

    pipe = Pipeline.from_config(load_runtime())
    assert pipe.backend.name == "onnxruntime", pipe.backend_notes
    assert pipe.task_names == ["fusion", "detection", "segmentation"]


def test_shipped_rsc_config_customizes_each_task_image(msrs_root, shipped_backbone):
    """config/multitask_rsc.yaml: detection and segmentation each get their own image from the two-task RSC,
    fusion keeps the generic one; the segmenter's mask comes from its own image."""
    from ivif_fusion.config import load_runtime
    from ivif_fusion.data.paired import PairedFolder
    from ivif_fusion.paths import CONFIG_DIR

    pipe = Pipeline.from_config(load_runtime(CONFIG_DIR / "multitask_rsc.yaml"))
    assert pipe.task_names == ["fusion", "detection", "segmentation"]
    s = PairedFolder(msrs_root, names=["00004N.png"])[0]
    out, timings = pipe.run_arrays(s.thermal, s.visible)
    generic = out["fusion"].fused_rgb.astype(int)
    det, seg = out["detection"].fused_rgb.astype(int), out["segmentation"].fused_rgb.astype(int)
    for custom in (det, seg):
        assert 0.1 < np.abs(generic - custom).mean() < 20, "RSC must change the image, but only as a customization"
    assert np.abs(det - seg).mean() > 0.05, "the two tasks must get different images"
    assert {"rsc:detection", "task:detection", "rsc:segmentation", "task:segmentation"} <= set(timings)
    mask = out["segmentation"].mask
    assert mask.shape == s.thermal.shape[:2] and set(np.unique(mask)) <= {0, 1, 2, 3}
    again, _ = pipe.run_arrays(s.thermal, s.visible)
    np.testing.assert_array_equal(again["detection"].fused_rgb, out["detection"].fused_rgb)  # deterministic
    np.testing.assert_array_equal(again["segmentation"].mask, mask)


def test_shipped_vifa_config_runs_one_backbone_and_a_head_per_task(msrs_root, shipped_backbone):
    """config/multitask_vifa.yaml: shared VIFA backbone once, one head per task, distinct task images."""
    from ivif_fusion.config import load_runtime
    from ivif_fusion.data.paired import PairedFolder
    from ivif_fusion.paths import CONFIG_DIR

    pipe = Pipeline.from_config(load_runtime(CONFIG_DIR / "multitask_vifa.yaml"))
    assert pipe.graph.head_names == ["fusion", "detection", "segmentation"]
    s = PairedFolder(msrs_root, names=["00055D.png"])[0]
    out, timings = pipe.run_arrays(s.thermal, s.visible)
    assert {"backbone", "head:fusion", "head:detection", "head:segmentation"} <= set(timings)
    for task in ("detection", "segmentation"):
        diff = np.abs(out["fusion"].fused_rgb.astype(int) - out[task].fused_rgb.astype(int)).mean()
        assert 0.05 < diff < 20, task
    assert out["detection"].detections is not None and out["fusion"].detections is None
    assert out["segmentation"].mask.shape == s.thermal.shape[:2] and out["detection"].mask is None
