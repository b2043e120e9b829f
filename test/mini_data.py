"""Small data roots built from links into the shared data, for tests that run the CLI on real pairs."""

from __future__ import annotations

from pathlib import Path

import pytest

from ivif_fusion.paths import data_root


def mini_msrs(tmp_path: Path, names: tuple[str, ...]) -> Path:
    """A data root under ``tmp_path`` whose MSRS holds links to the named real pairs and their fusion boxes.

    Skips the calling test when the shared data is absent.
    """
    src = data_root() / "MSRS"
    if not (src / "labels_det" / "fusion").is_dir():
        pytest.skip(f"shared data not found at {src}")
    dst = tmp_path / "data" / "MSRS"
    for sub in ("ir", "vi", "labels_det/fusion"):
        (dst / sub).mkdir(parents=True)
    (dst / "labels_det" / "classes.txt").symlink_to(src / "labels_det" / "classes.txt")
    for name in names:
        for sub in ("ir", "vi"):
            (dst / sub / f"{name}.png").symlink_to(src / sub / f"{name}.png")
        (dst / "labels_det" / "fusion" / f"{name}.txt").symlink_to(src / "labels_det" / "fusion" / f"{name}.txt")
    return dst.parent
