"""What a replay reports: :class:`ReplaySummary` (plain data plus sample images) and its provenance."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..config import RuntimeConfig
from ..metrics.latency import stage_summaries
from ..types import Detection


@dataclass
class Sample:
    """One pair kept for the report grid (uint8 images at the processed size)."""

    stamp_ns: int
    thermal: np.ndarray
    visible: np.ndarray
    fused: dict[str, np.ndarray]
    detections: dict[str, list[Detection] | None]
    gt: list[list[float]] | None = None
    masks: dict[str, np.ndarray] = field(default_factory=dict)  # segmentation task -> (H, W) uint8 class ids


@dataclass
class ReplaySummary:
    """Everything the report shows; plain data except the sample images."""

    bag: str
    out_dir: str
    output_bag: str
    storage: str
    config: RuntimeConfig
    config_source: str
    overrides: dict
    backend: str
    backend_notes: list[str]
    tasks: list[dict]
    topics: dict[str, str]
    input_types: dict[str, str]
    accounting: dict[str, dict]
    pairs_emitted: int = 0
    pairs_fused: int = 0
    drops: list[dict] = field(default_factory=list)     # every drop: stream, stamp, reason, detail
    timings_ms: dict[str, list[float]] = field(default_factory=dict)
    wall_s: float = 0.0
    output_counts: dict[str, int] = field(default_factory=dict)
    image_size: list[int] | None = None                 # processed (W, H)
    fusion_metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    metrics_pairs: int = 0
    detection_map: dict[str, dict] = field(default_factory=dict)
    segmentation: dict[str, dict] = field(default_factory=dict)  # task -> masks, pixels, classes, pixel_fraction
    sidecar: str | None = None
    injected: dict | None = None
    expected: dict | None = None
    matches_injected: bool | None = None
    truncated: str | None = None
    samples: list[Sample] = field(default_factory=list)
    versions: dict[str, str] = field(default_factory=dict)
    weights: dict[str, str] = field(default_factory=dict)  # weight file -> sha256

    @property
    def balanced(self) -> bool:
        return all(a["balanced"] for a in self.accounting.values())

    @property
    def throughput_pairs_s(self) -> float:
        return self.pairs_fused / self.wall_s if self.wall_s > 0 else 0.0

    def plain(self) -> dict:
        """JSON-ready dict (no images, config as a mapping)."""
        from ..config import to_dict

        skip = {"samples", "config"}
        out = {k: v for k, v in self.__dict__.items() if k not in skip}
        out["config"] = to_dict(self.config)
        out["balanced"] = self.balanced
        out["throughput_pairs_s"] = self.throughput_pairs_s
        out["latency_ms"] = stage_summaries(self.timings_ms)
        return out


def package_versions() -> dict[str, str]:
    """Versions of the packages that shape the results."""
    import platform
    from importlib import metadata

    from .. import __version__

    out = {"ivif_fusion": __version__, "python": platform.python_version()}
    for pkg in ("numpy", "torch", "onnxruntime", "opencv-python", "opencv-python-headless", "rosbags",
                "ultralytics", "pycocotools", "scikit-image", "matplotlib"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            continue
    return out


def weight_files(cfg: RuntimeConfig) -> dict[str, str]:
    """sha256 of every weight file the configuration names (provenance for the report)."""
    from ..models.checkpoint import file_sha256
    from ..paths import resolve

    pc = cfg.pipeline
    names = [pc.backbone_weights, pc.vifa_weights, pc.rsc_weights, *[t.weights for t in pc.task_configs()]]
    out = {}
    for n in names:
        if n and resolve(n).is_file():
            out[n] = file_sha256(resolve(n))
    return out
