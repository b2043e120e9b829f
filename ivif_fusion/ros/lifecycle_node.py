"""Managed (lifecycle) variant of the fusion node: console script ``fusion_lifecycle_node``.

Same parameters, topics and diagnostics as :class:`~ivif_fusion.ros.fusion_node.FusionNode`,
driven by the lifecycle services (``~/change_state``, ``ros2 lifecycle set``):

- constructor: parameters are declared and checked (an unknown one stops the process, as in
  the plain node: it can never become valid);
- configure: loads weights and backends; a bad or missing file fails the transition (the node
  stays unconfigured, the process keeps running, the error is logged) instead of exiting;
- activate: publishers, subscriptions, the inference worker and the diagnostics timer;
- deactivate: subscriptions, timer and publishers destroyed, worker stopped (no processing);
- cleanup: the pipeline is freed; shutdown: deactivate and cleanup as needed.
"""

from __future__ import annotations

import sys
from typing import Any

from rclpy.lifecycle import LifecycleNodeMixin, LifecycleState, TransitionCallbackReturn
from rclpy.node import Node

from ..errors import is_user_error
from .convert import ros_classes
from .declare import declare_node_parameters
from .fusion_node import NODE_NAME, FusionNode, run_node


class LifecycleFusionNode(LifecycleNodeMixin, FusionNode):
    """The fusion node as a managed node (see the module docstring)."""

    def __init__(self, **kwargs: Any) -> None:
        Node.__init__(self, NODE_NAME, automatically_declare_parameters_from_overrides=True, **kwargs)
        LifecycleNodeMixin.__init__(self)
        self._inference_thread = True
        self.cfg = declare_node_parameters(self)
        self.classes = ros_classes()
        self.pipeline = None

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        try:
            self.configure()
        except Exception as e:  # noqa: BLE001 - a bad file fails the transition, never the process
            what = str(e) if is_user_error(e) else f"{type(e).__name__}: {e}"
            self.get_logger().error(f"configure failed: {what}")
            self.pipeline = None
            return TransitionCallbackReturn.FAILURE
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.activate()
        return TransitionCallbackReturn.SUCCESS

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        joined = self.deactivate()
        if not joined:
            self.get_logger().warning("inference worker did not stop within 10 s")
        return TransitionCallbackReturn.SUCCESS

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.cleanup()
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.deactivate()
        self.cleanup()
        return TransitionCallbackReturn.SUCCESS


def main(argv: list[str] | None = None) -> int:
    """Console script ``fusion_lifecycle_node``: starts unconfigured; spin until SIGINT/SIGTERM."""
    return run_node(LifecycleFusionNode, argv)


if __name__ == "__main__":
    sys.exit(main())
