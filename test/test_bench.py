"""`ivif bench` smoke test: tiny inputs, every section, report structure and summary ratios."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("onnxruntime")


@pytest.mark.slow
def test_bench_all_tiny(tmp_path: Path, capsys) -> None:  # noqa: ANN001
    from ivif_fusion.cli import main

    rc = main(["bench", "all", "--frames", "2", "--warmup", "1", "--size", "64x48", "--no-task-networks",
               "--out", str(tmp_path), "--name", "tiny"])
    assert rc == 0
    out = capsys.readouterr().out
    assert f"json: {tmp_path / 'tiny.json'}" in out
    r = json.loads((tmp_path / "tiny.json").read_text())
    assert r["options"]["width"] == 64 and r["options"]["height"] == 48 and r["options"]["threads"] == 2
    assert {"cpu_model", "logical_cpus", "torch", "onnxruntime", "date", "loadavg_start", "loadavg_end"} <= set(r["machine"])
    f = r["fusion"]
    assert f["torch_backbone_ms"]["n"] == 2 and f["ort_backbone_ms"]["n"] == 2
    assert max(f["parity_max_abs_diff"].values()) <= 1e-4
    p = r["pipeline"]
    assert sorted(p) == sorted(f"{b}/{d}/{k}" for b in ("torch", "onnxruntime") for d, k in
                               [("shared", 1), ("shared", 2), ("shared", 3), ("separate", 2), ("separate", 3)])
    torch3 = p["torch/shared/3"]["stages_ms"]
    assert {"preprocess", "backbone", "head:detection", "head:segmentation", "head:fusion", "postprocess",
            "total"} == set(torch3)
    assert set(p["onnxruntime/shared/3"]["stages_ms"]) == {"preprocess", "backbone+heads", "postprocess", "total"}
    assert {"net:detection", "net:segmentation", "net:fusion"} <= set(p["torch/separate/3"]["stages_ms"])
    s = r["summary"]
    expect = p["torch/shared/3"]["stages_ms"]["total"]["median"] / p["torch/shared/1"]["stages_ms"]["total"]["median"]
    assert s["torch_shared_3_over_1"] == pytest.approx(expect)
    assert s["ort_backbone_over_torch"] == pytest.approx(f["ratio_ort_over_torch"]["median_of_per_frame"])
    md = (tmp_path / "tiny.md").read_text()
    assert "| ORT backbone / eager torch backbone" in md and "| torch/separate/3 | 3 |" in md
    assert "randomly initialised" in md


def test_bench_fusion_reports_backbone_over_seafusion_twin(tmp_path: Path, capsys) -> None:  # noqa: ANN001
    """One run times backbone and twin; the printed, JSON and markdown ratios are the same number."""
    from ivif_fusion.cli import main

    rc = main(["bench", "fusion", "--frames", "3", "--warmup", "0", "--size", "40x32", "--out", str(tmp_path),
               "--name", "tiny"])
    assert rc == 0
    out = capsys.readouterr().out
    f = json.loads((tmp_path / "tiny.json").read_text())["fusion"]
    assert f["ort_backbone_ms"]["n"] == f["ort_seafusion_twin_ms"]["n"] == f["torch_backbone_ms"]["n"] == 3
    r = f["ratio_backbone_over_seafusion_twin"]
    assert r["of_medians"] == pytest.approx(f["ort_backbone_ms"]["median"] / f["ort_seafusion_twin_ms"]["median"])
    assert f["seafusion_twin"]["paper_parameters"] == 166_657 and f["seafusion_twin"]["parameters"] == 164_929
    assert max(f["seafusion_twin"]["parity_max_abs_diff"].values()) <= 1e-4
    assert (f"backbone ORT {f['ort_backbone_ms']['median']:.1f} ms, SeAFusion twin ORT "
            f"{f['ort_seafusion_twin_ms']['median']:.1f} ms (medians, 40x32, 2 threads): "
            f"backbone/twin {r['median_of_per_frame']:.3f}") in out
    assert f"load average (1/5/15 min): {f['loadavg']['start']} at start, {f['loadavg']['end']} at end" in out
    assert f"ort_backbone_over_seafusion_twin: {r['median_of_per_frame']:.3f}" in out
    md = (tmp_path / "tiny.md").read_text()
    assert f"| ORT backbone / ORT SeAFusion twin (median of per-frame ratios) | {r['median_of_per_frame']:.3f} |" in md
    assert "| SeAFusion twin, ONNX Runtime (random weights) |" in md


def test_bench_bad_size_is_a_user_error(capsys) -> None:  # noqa: ANN001
    from ivif_fusion.cli import main

    assert main(["bench", "fusion", "--size", "640"]) == 1
    assert "ERROR: --size expects WxH" in capsys.readouterr().err


def test_load_note_tells_quiet_from_shared_machines():
    from ivif_fusion.bench import load_note

    assert "quiet" in load_note({"loadavg_start": [0.6, 0.9, 0.7], "usable_cpus": 2})
    assert "inflated" in load_note({"loadavg_start": [3.8, 3.7, 4.0], "usable_cpus": 2})
