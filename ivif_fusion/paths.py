"""Where things live: the project root, shipped configs and models, the data root."""

from __future__ import annotations

import os
from pathlib import Path
from .errors import UserError

PACKAGE_DIR = Path(__file__).resolve().parent


def _find_share_dir() -> Path:
    """The folder holding config/ and models/.

    In a source checkout or an editable install it is the repository root; in a
    colcon install it is ``share/ivif_fusion`` next to the Python prefix.
    """
    candidates = [PACKAGE_DIR.parent]
    try:  # a ROS install knows its share directory; never required.
        from ament_index_python.packages import get_package_share_directory  # type: ignore

        candidates.insert(0, Path(get_package_share_directory("ivif_fusion")))
    except Exception:  # noqa: BLE001 - ament is optional outside ROS
        pass
    for c in candidates:
        if (c / "config").is_dir():
            return c
    return PACKAGE_DIR.parent


SHARE_DIR = _find_share_dir()
CONFIG_DIR = SHARE_DIR / "config"
MODELS_DIR = SHARE_DIR / "models"
# The shipped default fusion backbone (relative to the share dir): VFN2, docs/backbone_v2.md.
DEFAULT_BACKBONE = "models/vfn2_msrs.pt"
DEFAULT_DATA_ROOT = SHARE_DIR.parent / "shared" / "data" / "ivif"


class DataRootMissing(UserError, FileNotFoundError):
    """The shared infrared-visible data is not where the config says."""


def data_root(configured: str | os.PathLike | None = None) -> Path:
    """Resolve the data root: explicit value, then ``IVIF_DATA``, then ``../shared/data/ivif``."""
    if configured:
        p = Path(configured).expanduser()
        if not p.is_absolute():
            p = (SHARE_DIR / p).resolve()
        return p
    env = os.environ.get("IVIF_DATA")
    if env:
        return Path(env).expanduser().resolve()
    return DEFAULT_DATA_ROOT.resolve()


def require_data_root(configured: str | os.PathLike | None = None) -> Path:
    """Like :func:`data_root` but raise a clear error when the folder is absent."""
    root = data_root(configured)
    if not root.is_dir():
        raise DataRootMissing(
            f"data root {root} not found: set IVIF_DATA or 'data_root' in the config "
            "to a folder laid out as <dataset>/ir, <dataset>/vi (see README, 'Data')."
        )
    return root


def resolve(path: str | os.PathLike) -> Path:
    """Resolve a path from a config: absolute as is, else relative to the share dir."""
    p = Path(path).expanduser()
    return p if p.is_absolute() else (SHARE_DIR / p)
