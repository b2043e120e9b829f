"""`colcon build --packages-select ivif_fusion` in a temporary workspace (colcon and ament from pip).

The workspace's ``src/ivif_fusion`` holds symlinks to this checkout's package files, so the
build sees exactly what a ROS user clones. The test checks what ament_python installs (share
files, executables under lib/ivif_fusion, the ament index marker) and runs the installed
``ivif --help`` from the install space.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from glob import glob
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PKG = "ivif_fusion"
# what a source checkout contributes to the package (setup.py, package.xml and their data)
PACKAGE_ENTRIES = ("setup.py", "setup.cfg", "package.xml", "resource", PKG, "launch", "config", "models", "msg")
# share/ivif_fusion/<folder> patterns, as in setup.py's data_files
SHARE_GLOBS = {"launch": ["launch/*.py"], "config": ["config/*.yaml", "config/*.xml"],
               "models": ["models/*.pt", "models/*.md", "models/*.json"],
               "models/onnx": ["models/onnx/*.onnx", "models/onnx/*.json"], "msg": ["msg/*.msg"]}

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("colcon_core") is None or importlib.util.find_spec("colcon_ros") is None,
    reason="colcon-core / colcon-ros not importable (pip install -r requirements-tools.txt)")


@pytest.fixture(scope="module")
def install(tmp_path_factory: pytest.TempPathFactory) -> Path:
    ws = tmp_path_factory.mktemp("colcon_ws")
    src = ws / "src" / PKG
    src.mkdir(parents=True)
    for name in PACKAGE_ENTRIES:
        if (ROOT / name).exists():
            (src / name).symlink_to(ROOT / name)
    colcon = Path(sys.executable).with_name("colcon")
    env = dict(os.environ, COLCON_HOME=str(ws / ".colcon"), PYTHONDONTWRITEBYTECODE="1")
    proc = subprocess.run([str(colcon), "build", "--packages-select", PKG, "--base-paths", "src"], cwd=ws, env=env,
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, f"colcon build failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    assert f"Finished <<< {PKG}" in proc.stdout
    return ws / "install" / PKG


def _install_env(install: Path) -> dict[str, str]:
    """What `source install/setup.sh` sets for this package (PYTHONPATH, AMENT_PREFIX_PATH, PATH)."""
    site = install / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(site), *filter(None, [os.environ.get("PYTHONPATH")])])
    env["AMENT_PREFIX_PATH"] = os.pathsep.join([str(install), *filter(None, [os.environ.get("AMENT_PREFIX_PATH")])])
    return env


def test_share_files_and_ament_index(install: Path) -> None:
    share = install / "share" / PKG
    assert (install / "share/ament_index/resource_index/packages" / PKG).is_file()
    assert (share / "package.xml").read_text() == (ROOT / "package.xml").read_text()
    for folder, patterns in SHARE_GLOBS.items():
        expected = sorted(Path(p).name for pat in patterns for p in glob(str(ROOT / pat)))
        installed = sorted(p.name for p in (share / folder).glob("*") if p.is_file()) if (share / folder).is_dir() else []
        assert installed == expected, f"share/{PKG}/{folder}: installed {installed}, source has {expected}"
    assert "multitask.yaml" in os.listdir(share / "config")
    if (ROOT / "launch" / "multitask.launch.py").is_file():
        assert (share / "launch" / "multitask.launch.py").is_file()


def test_executables_under_lib(install: Path) -> None:
    for exe, target in (("ivif", "ivif_fusion.cli"), ("fusion_node", "ivif_fusion.ros.fusion_node")):
        path = install / "lib" / PKG / exe
        assert path.is_file() and os.access(path, os.X_OK), f"{path} missing or not executable"
        assert exe in path.read_text()
    site_pkg = install / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages" / PKG
    assert (site_pkg / "cli" / "__init__.py").is_file() and (site_pkg / "data" / "readers.py").is_file()


def test_installed_ivif_help_runs_from_the_install_space(install: Path, tmp_path: Path) -> None:
    env = _install_env(install)
    proc = subprocess.run([str(install / "lib" / PKG / "ivif"), "--help"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("usage: ivif") and "data" in proc.stdout
    # the same environment imports the installed copy and finds config/ in share/ivif_fusion
    code = "import ivif_fusion, ivif_fusion.paths as p; print(ivif_fusion.__file__); print(p.SHARE_DIR)"
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=120, check=True).stdout.splitlines()
    assert Path(out[0]).is_relative_to(install), out
    assert Path(out[1]) == install / "share" / PKG
