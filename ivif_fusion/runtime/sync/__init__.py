"""Pairing of thermal and visible frames by timestamp, with an account of every frame.

Two policy families, each in approximate and exact mode (docs/pairing.md says which does what):

- ``optimal``: the C++ ``message_filters`` policies, message for message:
  :class:`ApproximateTimePolicy` (``approximate.py``) and :class:`ExactTimePolicy` (``exact.py``).
- ``rclpy``: the Python ``message_filters`` synchronizers, message for message:
  :class:`RclpyApproximatePolicy` and :class:`RclpyExactPolicy` (``rclpy_policies.py``).

:class:`Synchronizer` (``synchronizer.py``) runs one of them for the streams in :data:`STREAMS`
and counts every frame; :class:`LatestPairSlot` and :func:`pair_drops` (``slot.py``) carry
emitted pairs to the pipeline.
"""

from .approximate import ApproximateTimePolicy
from .entries import POLICY_NAMES, seconds_to_ns
from .exact import ExactTimePolicy
from .rclpy_policies import RclpyApproximatePolicy, RclpyExactPolicy
from .slot import LatestPairSlot, pair_drops
from .synchronizer import MODES, STREAMS, SyncCounters, Synchronizer, make_policy

__all__ = [
    "MODES", "POLICY_NAMES", "STREAMS", "ApproximateTimePolicy", "ExactTimePolicy", "LatestPairSlot",
    "RclpyApproximatePolicy", "RclpyExactPolicy", "SyncCounters", "Synchronizer", "make_policy", "pair_drops",
    "seconds_to_ns",
]
