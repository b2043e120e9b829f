"""ROS 2 layer: the fusion node and its glue.

Importing this package does not import rclpy; only :mod:`ivif_fusion.ros.fusion_node` does.
:mod:`~ivif_fusion.ros.params` (declared parameters) and :mod:`~ivif_fusion.ros.convert` (message
classes, diagnostics) work without ROS. Decoding, counting and output messages are the shared
steps of :mod:`ivif_fusion.stream`.
"""
