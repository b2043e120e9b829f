"""ONNX export of the deployment graph: metadata, dynamic axes, parity with torch, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from ivif_fusion.models import checkpoint
from ivif_fusion.models.heads import MultiHeadFusion
from ivif_fusion.models.vfn import VFN, VFNConfig
from ivif_fusion.runtime import graph_check as gc
from ivif_fusion.runtime import onnx_export as ex

ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")

from graph_factory import HEADS, make_graph  # noqa: E402 - after the importorskip


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> tuple[MultiHeadFusion, ex.OnnxExport]:  # noqa: ANN001
    graph = make_graph(0)
    res = ex.export_onnx(graph, tmp_path_factory.mktemp("onnx"))
    return graph, res


def _session(path: Path) -> "ort.InferenceSession":
    so = ort.SessionOptions()
    so.intra_op_num_threads = 2
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def _max_diff(graph: MultiHeadFusion, sess, ir: np.ndarray, y: np.ndarray) -> float:  # noqa: ANN001
    with torch.inference_mode():
        ref = graph(torch.from_numpy(ir), torch.from_numpy(y))
    got = sess.run(None, {"ir": ir, "y": y})
    assert len(got) == len(ref) == len(graph.head_names)
    return max(float(np.abs(g - r.numpy()).max()) for g, r in zip(got, ref))


def test_files_and_metadata(exported) -> None:  # noqa: ANN001
    graph, res = exported
    assert res.path.name == "fusion.onnx" and res.path.is_file()
    meta = gc.read_metadata(res.path)
    assert meta["ivif.format"] == "ivif-onnx/1"
    assert json.loads(meta["ivif.head_names"]) == HEADS
    assert meta["ivif.weights_sha256"] == gc.weights_digest(graph) == res.weights_sha256
    assert len(res.weights_sha256) == 64
    cfg = json.loads(meta["ivif.model_config"])
    assert cfg["vfn"] == VFNConfig().to_dict() and cfg["heads"] == HEADS
    side = json.loads(res.sidecar.read_text())
    assert side["onnx_sha256"] == checkpoint.file_sha256(res.path) == res.onnx_sha256
    assert side["outputs"] == HEADS and side["metadata"] == meta
    assert max(side["parity_max_abs_diff"].values()) <= 1e-4


def test_graph_structure_dynamic_axes_and_opset(exported) -> None:  # noqa: ANN001
    _, res = exported
    model = onnx.load(str(res.path))
    assert [i.name for i in model.graph.input] == ["ir", "y"]
    assert [o.name for o in model.graph.output] == HEADS
    for v in [*model.graph.input, *model.graph.output]:
        dims = v.type.tensor_type.shape.dim
        assert len(dims) == 4
        assert dims[1].dim_value == 1
        # batch, height and width stay symbolic
        assert all(d.dim_param and not d.dim_value for d in (dims[0], dims[2], dims[3])), v.name
    assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) >= 17
    assert model.producer_name == "ivif_fusion"


def test_parity_synthetic_two_sizes_and_batch(exported) -> None:  # noqa: ANN001
    graph, res = exported
    sess = _session(res.path)
    rng = np.random.default_rng(3)
    for shape in [(1, 1, 120, 160), (2, 1, 75, 98)]:
        ir = rng.random(shape, dtype=np.float32)
        y = rng.random(shape, dtype=np.float32)
        assert _max_diff(graph, sess, ir, y) <= 1e-4, shape


@pytest.mark.data
def test_parity_real_msrs_pairs_two_sizes(exported, msrs_root: Path) -> None:  # noqa: ANN001
    import cv2

    from ivif_fusion.colour import luminance
    from ivif_fusion.data.paired import PairedFolder

    graph, res = exported
    sess = _session(res.path)
    folder = PairedFolder(msrs_root)
    # two real pairs, two sizes through the same dynamic graph: full 640x480 and a 320x200 resize
    for name, size in zip(folder.names[:2], [None, (320, 200)]):
        s = folder.load(name)
        ir, y = s.thermal, luminance(s.visible).astype(np.float32)
        assert ir.shape == (480, 640)
        a = ir if size is None else cv2.resize(ir, size, interpolation=cv2.INTER_AREA)
        b = y if size is None else cv2.resize(y, size, interpolation=cv2.INTER_AREA)
        d = _max_diff(graph, sess, a[None, None].copy(), b[None, None].copy())
        assert d <= 1e-4, (name, size, d)


def test_weights_digest_tracks_every_tensor() -> None:
    a, b = make_graph(0), make_graph(0)
    assert gc.weights_digest(a) == gc.weights_digest(b)
    with torch.no_grad():
        b.heads["seg"].bias += 1e-6
    assert gc.weights_digest(a) != gc.weights_digest(b)
    assert gc.weights_digest(make_graph(1)) != gc.weights_digest(a)


def test_check_graph_matches_rules(exported) -> None:  # noqa: ANN001
    graph, res = exported
    meta = gc.read_metadata(res.path)
    outs = gc.graph_output_names(res.path)
    digest = gc.weights_digest(graph)
    gc.check_graph_matches(res.path, meta, outs, HEADS, digest)  # matches: no error
    with pytest.raises(gc.GraphMismatch, match=r"heads \['generic', 'det', 'seg'\].*need heads \['generic', 'det'\]"):
        gc.check_graph_matches(res.path, meta, outs, ["generic", "det"], digest)
    with pytest.raises(gc.GraphMismatch, match="need heads"):
        gc.check_graph_matches(res.path, meta, outs, ["generic", "seg", "det"], digest)
    with pytest.raises(gc.GraphMismatch, match="exported from other weights"):
        gc.check_graph_matches(res.path, meta, outs, HEADS, "0" * 64)
    with pytest.raises(gc.GraphMismatch, match="not written by `ivif export onnx`"):
        gc.check_graph_matches(res.path, {}, outs, HEADS, digest)


def test_unreadable_onnx_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "fusion.onnx"
    bad.write_bytes(b"\x00not an onnx file" * 10)
    with pytest.raises(gc.GraphMismatch, match="not a readable ONNX file"):
        gc.read_metadata(bad)


def test_old_opset_rejected(tmp_path: Path) -> None:
    with pytest.raises(ex.ExportError, match="opset 13"):
        ex.export_onnx(make_graph(0, ["generic"]), tmp_path, opset=13)


def test_cli_export_onnx(tmp_path: Path, capsys) -> None:  # noqa: ANN001
    from ivif_fusion.cli import main

    torch.manual_seed(5)
    ckpt = checkpoint.save(tmp_path / "vfn.pt", "vfn", VFNConfig().to_dict(), VFN().state_dict())
    out = tmp_path / "onnx"
    rc = main(["export", "onnx", "--out", str(out), "--no-verify", "--set", f"pipeline.backbone_weights={ckpt}"])
    assert rc == 0
    text = capsys.readouterr().out
    assert f"onnx: {out / 'fusion.onnx'}" in text
    meta = gc.read_metadata(out / "fusion.onnx")
    assert json.loads(meta["ivif.head_names"]) == ["generic"]
    assert json.loads(meta["ivif.source_files"]) == {str(ckpt): checkpoint.file_sha256(ckpt)}
    graph = MultiHeadFusion(checkpoint.load_vfn(ckpt))
    assert meta["ivif.weights_sha256"] == gc.weights_digest(graph)


def test_cli_export_onnx_missing_weights_is_one_error_line(tmp_path: Path, capsys) -> None:  # noqa: ANN001
    from ivif_fusion.cli import main

    rc = main(["export", "onnx", "--out", str(tmp_path), "--set", f"pipeline.backbone_weights={tmp_path / 'no.pt'}"])
    assert rc == 1
    assert "ERROR:" in capsys.readouterr().err


def test_task_network_export_parity_and_cli(tmp_path: Path, capsys) -> None:  # noqa: ANN001
    """A configured detection network is exported as its own graph (raw output), ORT == torch."""
    from ivif_fusion.cli import main
    from ivif_fusion.tasks.detection import YoloDetector

    det = YoloDetector()
    wpath = det.save(tmp_path / "det.pt")
    torch.manual_seed(5)
    ckpt = checkpoint.save(tmp_path / "vfn.pt", "vfn", VFNConfig().to_dict(), VFN().state_dict())
    out = tmp_path / "onnx"
    rc = main(["export", "onnx", "--out", str(out), "--no-verify", "--set", f"pipeline.backbone_weights={ckpt}",
               "--set", "pipeline.tasks=[{name: det, kind: detection, weights: '" + str(wpath) + "'}]"])
    assert rc == 0
    assert f"task network 'det' (detection, raw output before NMS/argmax): {out / 'task_det.onnx'}" in capsys.readouterr().out
    meta = gc.read_metadata(out / "task_det.onnx")
    assert meta["ivif.kind"] == "task-detection" and meta["ivif.task"] == "det"
    assert json.loads(meta["ivif.classes"]) == list(det.cfg.classes)
    assert meta["ivif.weights_sha256"] == gc.weights_digest(det.model)
    raw = ex.raw_task_graph(det.model)
    parity = ex.task_parity(raw, out / "task_det.onnx", [(1, 96, 128), (2, 64, 160)])
    assert max(parity.values()) <= 1e-4, parity
