"""deploy/: both Dockerfiles pass hadolint, the systemd unit verifies, the entry point builds the engine first.

Images are not built here (no container registry is reachable); what can be checked without
one is: lint, the unit file as systemd parses it, and the entry point's behaviour with stub
`ivif` and ROS setup scripts.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
DOCKERFILES = [DEPLOY / "Dockerfile", DEPLOY / "Dockerfile.jetson"]
UNIT = DEPLOY / "ivif-fusion.service"
LAUNCH = "ros2 launch ivif_fusion multitask.launch.py"


def _hadolint() -> str:
    exe = shutil.which("hadolint") or str(Path(sys.executable).with_name("hadolint"))
    if not Path(exe).is_file():
        pytest.skip("hadolint not installed (pip install -r requirements-tools.txt)")
    return exe


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_hadolint_passes(dockerfile: Path) -> None:
    proc = subprocess.run([_hadolint(), "--failure-threshold", "info", str(dockerfile)], cwd=ROOT,
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_hadolint_catches_a_bad_dockerfile(tmp_path: Path) -> None:
    """The lint above can fail: hadolint rejects an unpinned base and a `cd` in RUN."""
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM ubuntu:latest\nRUN cd /tmp && apt-get install -y curl\n")
    proc = subprocess.run([_hadolint(), str(bad)], capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode != 0
    assert "DL3007" in proc.stdout and "DL3003" in proc.stdout


def test_dockerfiles_bases_and_commands() -> None:
    jet, x86 = (DEPLOY / "Dockerfile.jetson").read_text(), (DEPLOY / "Dockerfile").read_text()
    assert re.search(r"^ARG L4T_IMAGE=nvcr\.io/nvidia/l4t-jetpack:r36\.\d+\.\d+$", jet, re.M)
    assert "ros-humble-ros-base" in jet and "python3-libnvinfer" in jet and "ENV" in jet and "IVIF_TENSORRT=1" in jet
    assert re.search(r"^ARG ROS_IMAGE=ros:jazzy-ros-base-noble$", x86, re.M) and "IVIF_TENSORRT=0" in x86
    for text in (jet, x86):
        assert 'CMD ["ros2", "launch", "ivif_fusion", "multitask.launch.py"]' in text
        assert "colcon build --packages-select ivif_fusion" in text
        assert text.index("colcon build") < text.index("ivif export onnx")  # graphs baked in at build time
        assert "USER 1000:1000" in text and "/home/ivif/.cache/ivif_fusion/engines" in text
    # every path the images COPY is let through by their .dockerignore
    for df in DOCKERFILES:
        allowed = {ln[1:] for ln in Path(f"{df}.dockerignore").read_text().splitlines() if ln.startswith("!")}
        for line in df.read_text().splitlines():
            if line.startswith("COPY "):
                for src in line.split()[1:-1]:
                    assert src in allowed, f"{df.name} copies {src}, excluded by its .dockerignore"


def test_jetson_requirements_cover_the_project_requirements() -> None:
    def names(path: Path) -> set[str]:
        return {ln.split("==")[0] for ln in path.read_text().splitlines() if ln.strip() and not ln.startswith("#")}

    needed = names(ROOT / "requirements.txt") - {"pytest", "pytest-timeout"}
    assert names(DEPLOY / "requirements-jetson.txt") == needed


def test_engine_cache_matches_the_runtime_default() -> None:
    """The unit mounts the host cache where the node looks for engines (PipelineConfig default, user ivif)."""
    from ivif_fusion.config import PipelineConfig

    default = PipelineConfig().engine_cache_dir
    assert default.startswith("~/")
    assert f":/home/ivif/{default[2:]}" in UNIT.read_text()


def test_unit_settings() -> None:
    text = UNIT.read_text()
    sections: dict[str, dict[str, list[str]]] = {}
    current = ""
    for line in text.replace("\\\n", " ").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            current = line.strip("[]")
            sections[current] = {}
            continue
        key, value = line.split("=", 1)
        sections[current].setdefault(key, []).append(value)
    svc = sections["Service"]
    assert svc["Restart"] == ["on-failure"]
    assert sections["Install"]["WantedBy"] == ["multi-user.target"]
    assert "network-online.target" in sections["Unit"]["After"][0]
    exec_start = " ".join(svc["ExecStart"][0].split())
    assert LAUNCH in exec_start and "--runtime nvidia" in exec_start and "${IVIF_IMAGE}" in exec_start


def test_systemd_analyze_verify(tmp_path: Path) -> None:
    """systemd parses the unit without complaint (docker replaced by a stub, as no docker is here)."""
    exe = shutil.which("systemd-analyze")
    if exe is None:
        pytest.skip("systemd-analyze not available")
    docker = tmp_path / "docker"
    docker.write_text("#!/bin/sh\nexit 0\n")
    docker.chmod(0o755)
    (tmp_path / "docker.service").write_text("[Unit]\nDescription=stub\n[Service]\nExecStart=/bin/true\n")
    unit = tmp_path / "ivif-fusion.service"
    unit.write_text(UNIT.read_text().replace("/usr/bin/docker", str(docker)))
    proc = subprocess.run([exe, "verify", str(unit)], cwd=tmp_path, capture_output=True, text=True, timeout=60,
                          check=False)
    assert proc.returncode == 0 and proc.stderr.strip() == "", proc.stderr
    broken = tmp_path / "broken.service"
    broken.write_text(unit.read_text().replace("ExecStart=", "ExecStrt="))
    proc = subprocess.run([exe, "verify", str(broken)], cwd=tmp_path, capture_output=True, text=True, timeout=60,
                          check=False)
    assert proc.returncode != 0 and "ExecStrt" in proc.stderr


# --------------------------------------------------------------------------- entry point


def _stub_env(tmp_path: Path, export_rc: int = 0) -> dict[str, str]:
    """Stub ROS/workspace setup files and an `ivif` that logs its arguments."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "calls.log"
    ivif = bin_dir / "ivif"
    ivif.write_text(f'#!/bin/sh\necho "ivif $*" >> {log}\nexit {export_rc}\n')
    ivif.chmod(ivif.stat().st_mode | stat.S_IEXEC)
    (tmp_path / "ros.bash").write_text(f'echo "ros sourced" >> {log}\n')
    (tmp_path / "ws.bash").write_text(f'echo "ws sourced" >> {log}\n')
    return dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}", IVIF_ROS_SETUP=str(tmp_path / "ros.bash"),
                IVIF_WS_SETUP=str(tmp_path / "ws.bash"), IVIF_EXPORT_ARGS="--precision fp16")


def _entry(tmp_path: Path, env: dict[str, str]) -> tuple[subprocess.CompletedProcess, list[str]]:
    proc = subprocess.run(["bash", str(DEPLOY / "entrypoint.sh"), "sh", "-c", f"echo launched >> {tmp_path}/calls.log"],
                          env=env, capture_output=True, text=True, timeout=60, check=False)
    log = tmp_path / "calls.log"
    return proc, log.read_text().splitlines() if log.exists() else []


def test_entrypoint_builds_engine_then_runs_command(tmp_path: Path) -> None:
    proc, calls = _entry(tmp_path, {**_stub_env(tmp_path), "IVIF_TENSORRT": "1"})
    assert proc.returncode == 0, proc.stderr
    assert calls == ["ros sourced", "ws sourced", "ivif export tensorrt --precision fp16", "launched"]


def test_entrypoint_without_tensorrt_only_runs_command(tmp_path: Path) -> None:
    proc, calls = _entry(tmp_path, {**_stub_env(tmp_path), "IVIF_TENSORRT": "0"})
    assert proc.returncode == 0 and calls == ["ros sourced", "ws sourced", "launched"]


def test_entrypoint_engine_failure_falls_back_unless_required(tmp_path: Path) -> None:
    env = {**_stub_env(tmp_path, export_rc=3), "IVIF_TENSORRT": "1"}
    proc, calls = _entry(tmp_path, env)
    assert proc.returncode == 0 and calls[-1] == "launched"
    assert "starting with the backend fallback" in proc.stderr
    (tmp_path / "calls.log").unlink()
    proc, calls = _entry(tmp_path, {**env, "IVIF_ENGINE_REQUIRED": "1"})
    assert proc.returncode == 1 and "launched" not in calls
