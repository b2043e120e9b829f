"""Shared fixtures. Data-dependent tests skip with a reason when the shared data is absent."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# Ultralytics must stay offline and keep its settings inside the project, even when pytest is run directly.
os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("YOLO_AUTOINSTALL", "false")
os.environ.setdefault("YOLO_CONFIG_DIR", str(ROOT / ".yolo_config"))
os.environ.setdefault("YOLO_VERBOSE", "false")


@pytest.fixture(scope="session")
def data_root() -> Path:
    from ivif_fusion.paths import data_root as resolve_root

    root = resolve_root()
    if not (root / "MSRS" / "ir").is_dir():
        pytest.skip(f"shared data not found at {root} (set IVIF_DATA)")
    return root


@pytest.fixture
def one_torch_thread():
    """torch on one thread for the test (tiny tensors: avoids oversubscription on busy cores), restored after."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def msrs_root(data_root: Path) -> Path:
    return data_root / "MSRS"


@pytest.fixture(scope="session")
def random_vfn_ckpt(tmp_path_factory) -> Path:  # noqa: ANN001
    """A randomly initialised (seeded) VFN checkpoint, for interface tests that need no trained weights."""
    import torch

    from ivif_fusion.models import checkpoint
    from ivif_fusion.models.vfn import VFN, VFNConfig

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "vfn_random.pt"
    checkpoint.save(path, "vfn", VFNConfig().to_dict(), VFN().state_dict(), {"note": "random init for tests"})
    return path


@pytest.fixture(scope="session")
def random_segmenter_ckpt(tmp_path_factory) -> Path:  # noqa: ANN001
    """A randomly initialised (seed 0) segmenter checkpoint with the MSRS segmentation classes, for plumbing tests."""
    from ivif_fusion.tasks.segmentation import SegmenterConfig, SmallSegmenter

    return SmallSegmenter(SegmenterConfig(), seed=0).save(tmp_path_factory.mktemp("ckpt") / "seg_random.pt")


@pytest.fixture(scope="session")
def shipped_backbone() -> Path:
    """The default backbone's weights (models/vfn2_msrs.pt)."""
    from ivif_fusion.paths import DEFAULT_BACKBONE

    path = ROOT / DEFAULT_BACKBONE
    if not path.is_file():
        pytest.skip(f"{DEFAULT_BACKBONE} not shipped")
    return path
