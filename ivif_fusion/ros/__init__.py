"""ROS 2 layer: the fusion node and its glue.

Importing this package does not import rclpy. rclpy is imported by :mod:`~ivif_fusion.ros.fusion_node`
(the node), :mod:`~ivif_fusion.ros.lifecycle_node` (the managed node), :mod:`~ivif_fusion.ros.declare`
(parameter declaration) and :mod:`~ivif_fusion.ros.qos` (QoS profiles). :mod:`~ivif_fusion.ros.params`
(parameter specs), :mod:`~ivif_fusion.ros.topics` (input topic names), :mod:`~ivif_fusion.ros.convert`
and :mod:`~ivif_fusion.ros.diagnostics` (message building), :mod:`~ivif_fusion.ros.camera_info` and
:mod:`~ivif_fusion.ros.camera_rig` (a simulated camera rig for tests and benchmarks) work without ROS.
The steps the node shares with ``ivif replay`` (decode-or-drop, accounting, output plan) live in
:mod:`ivif_fusion.stream`.
"""
