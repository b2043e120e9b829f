"""Launch the ivif_fusion node: synchronized thermal + RGB in, per-task fused images, detections, masks out.

    ros2 launch ivif_fusion multitask.launch.py
    ros2 launch ivif_fusion multitask.launch.py namespace:=front thermal_topic:=/flir/image_raw \
        visible_topic:=/camera/color/image_raw backend:=onnxruntime,torch

Every node parameter has its default in ``config_file`` (config/multitask.yaml, documented key by
key); the launch arguments below override a few of them only when given (empty = the file's
value). Anything else: pass another ``config_file`` or add ``--ros-args -p`` overrides.
No side effects here: nothing is installed, downloaded or evaluated.
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

PACKAGE = "ivif_fusion"

# Launch argument -> node parameter it sets when non-empty (checked against the node by test/test_launch_config.py).
PARAMETER_ARGS = {
    "thermal_topic": "ros.thermal_topic",
    "visible_topic": "ros.visible_topic",
    "backend": "pipeline.backends",
}
# Parameters holding a list: the launch argument is comma-separated.
LIST_PARAMETERS = ("pipeline.backends",)


def _node(context, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003 - OpaqueFunction signature
    params = {"config_file": LaunchConfiguration("config_file").perform(context)}
    for arg, name in PARAMETER_ARGS.items():
        value = LaunchConfiguration(arg).perform(context).strip()
        if value:
            params[name] = [v.strip() for v in value.split(",") if v.strip()] if name in LIST_PARAMETERS else value
    return [Node(
        package=PACKAGE,
        executable="fusion_node",
        name="fusion_node",
        namespace=LaunchConfiguration("namespace"),
        parameters=[params],
        output="screen",
        emulate_tty=True,
    )]


def generate_launch_description():
    """Launch arguments: config_file, namespace, thermal_topic, visible_topic, backend."""
    default_config = os.path.join(get_package_share_directory(PACKAGE), "config", "multitask.yaml")
    return LaunchDescription([
        DeclareLaunchArgument("config_file", default_value=default_config,
                              description="Node configuration (config/multitask.yaml layout); its values are "
                                          "the defaults of every node parameter."),
        DeclareLaunchArgument("namespace", default_value="",
                              description="Namespace of the node; relative topics (thermal/image, rgb/image, "
                                          "~/fused/<task>) resolve inside it."),
        DeclareLaunchArgument("thermal_topic", default_value="",
                              description="Thermal image topic (sets ros.thermal_topic; empty: config file)."),
        DeclareLaunchArgument("visible_topic", default_value="",
                              description="RGB image topic (sets ros.visible_topic; empty: config file)."),
        DeclareLaunchArgument("backend", default_value="",
                              description="Backend preference, comma-separated, e.g. 'tensorrt,onnxruntime,torch' "
                                          "(sets pipeline.backends; empty: config file)."),
        OpaqueFunction(function=_node),
    ])
