"""ivif_fusion: task-customized visible-infrared image fusion for ROS 2 robots.

The core (everything outside ``ivif_fusion.ros``) imports no ROS package.
"""

__version__ = "0.1.0"
