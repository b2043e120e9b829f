"""``ivif replay``: a ROS 2 bag through the node's steps and the pipeline, into an output bag and report data.

- :mod:`.run`: :func:`replay`, a composition of named steps around :mod:`ivif_fusion.stream`.
- :mod:`.evidence`: sample images, fusion metrics and detection mAP for the report.
- :mod:`.summary`: :class:`ReplaySummary` and its provenance (package versions, weight hashes).
"""

from .run import ReplayError, replay
from .summary import ReplaySummary, Sample, package_versions

__all__ = ["ReplayError", "ReplaySummary", "Sample", "package_versions", "replay"]
