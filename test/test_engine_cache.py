"""Engine cache: key, reuse, rebuild on mismatch, recovery from corrupt entries (no TensorRT needed)."""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import replace
from pathlib import Path

import pytest

from ivif_fusion.runtime import engine_cache as ec
from ivif_fusion.runtime import tensorrt_engine as trt_engine
from ivif_fusion.runtime.onnx_export import ExportError
from ivif_fusion.runtime.backends import BackendUnavailable

KEY = ec.EngineKey(onnx_sha256="a" * 64, tensorrt_version="10.3.0", gpu_name="Orin (nvgpu)",
                   compute_capability="8.7", precision="fp16", profile=ec.Profile())


class FakeBuilder:
    """Counts builds and returns distinct engine bytes each time."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self) -> bytes:
        self.calls += 1
        return f"ENGINE-{self.calls}".encode() * 64


def test_profile_validation_and_parse() -> None:
    p = ec.Profile((1, 64, 64), (1, 480, 640), (2, 1088, 1920))
    assert p.shapes() == {"min": (1, 1, 64, 64), "opt": (1, 1, 480, 640), "max": (2, 1, 1088, 1920)}
    assert p.covers(2, 480, 640) and not p.covers(3, 480, 640) and not p.covers(1, 32, 640)
    assert ec.Profile.parse("1x480x640") == (1, 480, 640)
    with pytest.raises(ExportError, match="NxHxW"):
        ec.Profile.parse("480x640")
    with pytest.raises(ExportError, match="min <= opt <= max"):
        ec.Profile((1, 500, 64), (1, 480, 640), (1, 1088, 1920))
    with pytest.raises(ExportError, match="positive"):
        ec.Profile((0, 64, 64))
    with pytest.raises(ExportError, match="precision"):
        replace(KEY, precision="int8")


def test_key_digest_stable_and_sensitive_to_every_field() -> None:
    assert KEY.digest() == replace(KEY).digest() and len(KEY.digest()) == 16
    assert ec.EngineKey.from_dict(json.loads(json.dumps(KEY.to_dict()))) == KEY
    variants = [replace(KEY, onnx_sha256="b" * 64), replace(KEY, tensorrt_version="10.0.1"),
                replace(KEY, gpu_name="NVIDIA H100"), replace(KEY, compute_capability="9.0"),
                replace(KEY, precision="fp32"), replace(KEY, profile=ec.Profile(max=(1, 720, 1280)))]
    digests = {v.digest() for v in variants} | {KEY.digest()}
    assert len(digests) == 7
    assert replace(KEY, precision="fp32").differences(KEY) == ["precision fp16 -> fp32"]


def test_reuse_matching_engine(tmp_path: Path) -> None:
    cache, build = ec.EngineCache(tmp_path), FakeBuilder()
    first = cache.get_or_build(KEY, build)
    assert first.status == "built" and build.calls == 1
    assert first.path == tmp_path / f"fusion-{KEY.digest()}.engine"
    side = json.loads(first.path.with_suffix(".json").read_text())
    assert side["key"] == KEY.to_dict() and side["bytes"] == first.path.stat().st_size
    second = cache.get_or_build(KEY, build)
    assert second.status == "hit" and second.path == first.path and build.calls == 1
    assert second.path.read_bytes() == b"ENGINE-1" * 64


@pytest.mark.parametrize("change", [{"tensorrt_version": "10.4.0"}, {"precision": "fp32"},
                                    {"gpu_name": "NVIDIA H100"}, {"compute_capability": "7.2"},
                                    {"onnx_sha256": "c" * 64}, {"profile": ec.Profile(opt=(1, 512, 640))}])
def test_mismatch_rebuilds_and_says_why(tmp_path: Path, change: dict) -> None:
    cache, build = ec.EngineCache(tmp_path), FakeBuilder()
    cache.get_or_build(KEY, build)
    other = replace(KEY, **change)
    res = cache.get_or_build(other, build)
    assert res.status == "built" and build.calls == 2 and res.path != cache.paths(KEY)[0]
    field_name = next(iter(change))
    assert len(res.notes) == 1 and f"differs: {field_name} " in res.notes[0]
    # both engines stay cached and are reused
    assert cache.get_or_build(KEY, build).status == "hit"
    assert cache.get_or_build(other, build).status == "hit" and build.calls == 2


def _corrupt_engine(cache: ec.EngineCache) -> None:
    engine, _ = cache.paths(KEY)
    engine.write_bytes(engine.read_bytes()[:10])  # truncated write


def _corrupt_sidecar(cache: ec.EngineCache) -> None:
    cache.paths(KEY)[1].write_text("{not json")


def _drop_engine(cache: ec.EngineCache) -> None:
    cache.paths(KEY)[0].unlink()


def _sidecar_other_key(cache: ec.EngineCache) -> None:
    side = cache.paths(KEY)[1]
    info = json.loads(side.read_text())
    info["key"]["precision"] = "fp32"
    side.write_text(json.dumps(info))


@pytest.mark.parametrize("damage,reason", [(_corrupt_engine, "does not match its recorded sha256"),
                                           (_corrupt_sidecar, "unreadable"),
                                           (_drop_engine, "missing next to its sidecar"),
                                           (_sidecar_other_key, "holds another key")])
def test_corrupt_entry_deleted_and_rebuilt(tmp_path: Path, caplog, damage, reason: str) -> None:  # noqa: ANN001
    cache, build = ec.EngineCache(tmp_path), FakeBuilder()
    cache.get_or_build(KEY, build)
    damage(cache)
    with caplog.at_level(logging.WARNING, logger="ivif_fusion.engine_cache"):
        res = cache.get_or_build(KEY, build)
    assert res.status == "rebuilt-corrupt" and build.calls == 2
    assert reason in res.notes[0]
    assert any("corrupt entry" in r.getMessage() and "deleting" in r.getMessage() for r in caplog.records)
    assert res.path.read_bytes() == b"ENGINE-2" * 64
    assert cache.get_or_build(KEY, build).status == "hit"


def test_engine_refused_by_runtime_is_rebuilt(tmp_path: Path) -> None:
    cache, build = ec.EngineCache(tmp_path), FakeBuilder()
    cache.get_or_build(KEY, build)
    refused = []

    def validate(data: bytes) -> None:
        if data.startswith(b"ENGINE-1"):
            refused.append(data)
            raise RuntimeError("serialization version mismatch")

    res = cache.get_or_build(KEY, build, validate=validate)
    assert res.status == "rebuilt-corrupt" and build.calls == 2 and len(refused) == 1
    assert "cannot be deserialized (RuntimeError: serialization version mismatch)" in res.notes[0]
    assert cache.get_or_build(KEY, build, validate=validate).status == "hit"


def test_empty_build_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="no data"):
        ec.EngineCache(tmp_path).get_or_build(KEY, lambda: b"")
    assert list(tmp_path.iterdir()) == []


def test_graph_names_have_separate_entries(tmp_path: Path) -> None:
    cache, build = ec.EngineCache(tmp_path), FakeBuilder()
    a = cache.get_or_build(KEY, build, name="fusion")
    b = cache.get_or_build(KEY, build, name="detection")
    assert a.path != b.path and build.calls == 2 and b.notes == []


def test_engine_key_for_uses_onnx_file_checksum(tmp_path: Path) -> None:
    onnx_file = tmp_path / "fusion.onnx"
    onnx_file.write_bytes(b"graph bytes")
    key = trt_engine.engine_key_for(onnx_file, "fp32", ec.Profile(), gpu=trt_engine.GpuInfo("Orin", "8.7"), trt_version="10.3.0")
    assert key.onnx_sha256 == hashlib.sha256(b"graph bytes").hexdigest()
    assert (key.gpu_name, key.compute_capability, key.precision, key.tensorrt_version) == ("Orin", "8.7", "fp32", "10.3.0")
    onnx_file.write_bytes(b"graph bytes, re-exported")
    key2 = trt_engine.engine_key_for(onnx_file, "fp32", ec.Profile(), gpu=trt_engine.GpuInfo("Orin", "8.7"), trt_version="10.3.0")
    assert key2.digest() != key.digest() and key2.differences(key)[0].startswith("onnx_sha256 ")


def test_without_tensorrt_build_and_cli_fail_clearly(tmp_path: Path, capsys) -> None:  # noqa: ANN001
    try:
        import tensorrt  # noqa: F401
        pytest.skip("tensorrt is installed here")
    except ImportError:
        pass
    onnx_file = tmp_path / "fusion.onnx"
    onnx_file.write_bytes(b"x")
    with pytest.raises(BackendUnavailable, match="'tensorrt' Python package is not installed"):
        trt_engine.build_trt_engine(onnx_file)
    from ivif_fusion.cli import main

    rc = main(["export", "tensorrt", "--onnx", str(onnx_file), "--cache", str(tmp_path / "cache")])
    assert rc == 1
    assert "ERROR: the 'tensorrt' Python package is not installed" in capsys.readouterr().err
    assert not (tmp_path / "cache").exists()
