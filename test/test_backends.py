"""Backends behind one interface: ONNX Runtime vs torch, selection with logged fallback, mismatches."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from ivif_fusion.config import PipelineConfig
from ivif_fusion.models import checkpoint
from ivif_fusion.models.heads import MultiHeadFusion
from ivif_fusion.models.vfn import VFN, VFNConfig
from ivif_fusion.runtime import backends
from ivif_fusion.runtime import onnx_export as ex
from ivif_fusion.runtime.backends import BackendUnavailable

pytest.importorskip("onnxruntime")

from graph_factory import HEADS, make_graph  # noqa: E402 - after the importorskip


@pytest.fixture(scope="module")
def onnx_dir(tmp_path_factory) -> Path:  # noqa: ANN001
    d = tmp_path_factory.mktemp("onnx")
    ex.export_onnx(make_graph(0), d, verify=False)
    return d


def pc_for(onnx_dir: Path, prefs: list[str], threads: int = 2) -> PipelineConfig:
    return PipelineConfig(backends=prefs, onnx_dir=str(onnx_dir), threads=threads)


def inputs(shape: tuple[int, ...], seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.random(shape, dtype=np.float32), rng.random(shape, dtype=np.float32)


def test_onnxruntime_selected_and_matches_torch(onnx_dir: Path) -> None:
    graph = make_graph(0)
    notes: list[str] = []
    ort_b = backends.select(["onnxruntime", "torch"], graph, pc_for(onnx_dir, ["onnxruntime", "torch"], 1), notes)
    assert ort_b.name == "onnxruntime" and notes == []
    assert ort_b.head_names == HEADS
    assert ort_b.session.get_session_options().intra_op_num_threads == 1
    torch_b = backends.select(["torch"], graph, pc_for(onnx_dir, ["torch"]))
    for shape in [(1, 1, 64, 96), (2, 1, 50, 70)]:
        ir, y = inputs(shape)
        got, t_ort = ort_b.run(ir, y)
        ref, t_torch = torch_b.run(ir, y)
        assert list(got) == list(ref) == HEADS
        for h in HEADS:
            assert got[h].shape == shape and got[h].dtype == np.float32
            assert np.abs(got[h] - ref[h]).max() <= 1e-4, h
        assert set(t_ort) == {"backbone+heads"} and t_ort["backbone+heads"] > 0
        assert set(t_torch) == {"backbone", *(f"head:{h}" for h in HEADS)}


def test_missing_onnx_falls_back_to_torch_logged(tmp_path: Path, caplog) -> None:  # noqa: ANN001
    notes: list[str] = []
    with caplog.at_level(logging.WARNING, logger="ivif_fusion.backends"):
        b = backends.select(["onnxruntime", "torch"], make_graph(0), pc_for(tmp_path, []), notes)
    assert b.name == "torch"
    assert len(notes) == 1 and notes[0].startswith("onnxruntime: no ONNX graph at")
    assert "ivif export onnx" in notes[0]
    assert any("backend onnxruntime unavailable" in r.getMessage() and "falling back" in r.getMessage()
               for r in caplog.records)
    out, _ = b.run(*inputs((1, 1, 32, 32)))
    assert list(out) == HEADS


def test_other_weights_fall_back_logged(onnx_dir: Path, caplog) -> None:  # noqa: ANN001
    notes: list[str] = []
    with caplog.at_level(logging.WARNING, logger="ivif_fusion.backends"):
        b = backends.select(["onnxruntime", "torch"], make_graph(seed=1), pc_for(onnx_dir, []), notes)
    assert b.name == "torch"
    assert "exported from other weights" in notes[0]
    assert any("exported from other weights" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("heads", [["generic", "det"], ["generic", "seg", "det"], ["generic", "det", "seg", "x"]])
def test_graph_with_other_heads_is_a_clear_error(onnx_dir: Path, heads: list[str]) -> None:
    with pytest.raises(BackendUnavailable) as e:
        backends.select(["onnxruntime"], make_graph(0, heads), pc_for(onnx_dir, []))
    msg = str(e.value)
    assert msg.startswith("no usable backend: onnxruntime:")
    assert "has heads ['generic', 'det', 'seg']" in msg and f"need heads {heads}" in msg
    assert "ivif export onnx" in msg


def test_onnx_without_ivif_metadata_refused(onnx_dir: Path, tmp_path: Path) -> None:
    import onnx

    m = onnx.load(str(onnx_dir / "fusion.onnx"))
    del m.metadata_props[:]
    onnx.save(m, str(tmp_path / "fusion.onnx"))
    with pytest.raises(BackendUnavailable, match="not written by `ivif export onnx`"):
        backends.select(["onnxruntime"], make_graph(0), pc_for(tmp_path, []))


def test_corrupt_onnx_falls_back(tmp_path: Path) -> None:
    (tmp_path / "fusion.onnx").write_bytes(b"garbage" * 100)
    notes: list[str] = []
    b = backends.select(["onnxruntime", "torch"], make_graph(0), pc_for(tmp_path, []), notes)
    assert b.name == "torch" and "not a readable ONNX file" in notes[0]


def test_tensorrt_absent_falls_back_in_order(onnx_dir: Path) -> None:
    try:
        import tensorrt  # noqa: F401
        pytest.skip("tensorrt is installed here")
    except ImportError:
        pass
    notes: list[str] = []
    b = backends.select(["tensorrt", "onnxruntime", "torch"], make_graph(0), pc_for(onnx_dir, []), notes)
    assert b.name == "onnxruntime"
    assert notes == ["tensorrt: the 'tensorrt' Python package is not installed (JetPack ships it; on x86 use "
                     "NVIDIA's wheels)"]


def test_pipeline_runs_on_onnxruntime(tmp_path: Path) -> None:
    from ivif_fusion.config import runtime_defaults
    from ivif_fusion.runtime.pipeline import Pipeline

    torch.manual_seed(2)
    ckpt = checkpoint.save(tmp_path / "vfn.pt", "vfn", VFNConfig().to_dict(), VFN().state_dict())
    ex.export_onnx(MultiHeadFusion(checkpoint.load_vfn(ckpt)), tmp_path / "onnx", verify=False)
    over = {"pipeline.backbone_weights": str(ckpt), "pipeline.onnx_dir": str(tmp_path / "onnx"),
            "pipeline.backends": ["onnxruntime", "torch"]}
    pipe = Pipeline(runtime_defaults(over))
    assert pipe.backend.name == "onnxruntime" and pipe.backend_notes == []
    rng = np.random.default_rng(0)
    ir = rng.random((48, 64), dtype=np.float32)
    rgb = rng.random((48, 64, 3), dtype=np.float32)
    outputs, timings = pipe.run_arrays(ir, rgb)
    assert {"preprocess", "backbone+heads", "postprocess", "total"} <= set(timings)
    ref = Pipeline(runtime_defaults({**over, "pipeline.backends": ["torch"]}))
    ref_out, _ = ref.run_arrays(ir, rgb)
    for name, o in outputs.items():
        assert o.fused_rgb.shape == (48, 64, 3) and o.fused_rgb.dtype == np.uint8
        # uint8 rounding of values within 1e-4 differs by at most one level
        assert np.abs(o.fused_rgb.astype(int) - ref_out[name].fused_rgb.astype(int)).max() <= 1


def test_tensorrt_without_gpu_falls_back(onnx_dir: Path, monkeypatch) -> None:  # noqa: ANN001
    """With the package importable but no GPU, the TensorRT backend steps aside with that reason."""
    import shutil
    import sys
    import types

    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is present")
    monkeypatch.setitem(sys.modules, "tensorrt", types.SimpleNamespace(__version__="10.3.0"))
    monkeypatch.setattr(shutil, "which", lambda name: None)  # no nvidia-smi either
    notes: list[str] = []
    b = backends.select(["tensorrt", "torch"], make_graph(0), pc_for(onnx_dir, []), notes)
    assert b.name == "torch"
    assert notes == ["tensorrt: no CUDA GPU found (torch.cuda unavailable and nvidia-smi gives no GPU)"]
