"""ROS 2 layer: the fusion node and its glue.

Importing this package does not import rclpy; only :mod:`ivif_fusion.ros.fusion_node` does.
:mod:`~ivif_fusion.ros.params` (declared parameters), :mod:`~ivif_fusion.ros.accounting`
(counters) and :mod:`~ivif_fusion.ros.convert` (message building) work without ROS.
"""
