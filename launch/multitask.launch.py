"""Launch the ivif_fusion node: synchronized thermal + RGB in, per-task fused images, detections, masks out.

    ros2 launch ivif_fusion multitask.launch.py
    ros2 launch ivif_fusion multitask.launch.py namespace:=front thermal_topic:=/flir/image_raw \
        visible_topic:=/camera/color/image_raw visible_transport:=compressed backend:=onnxruntime,torch
    ros2 launch ivif_fusion multitask.launch.py managed:=true      # lifecycle node, starts unconfigured

Every node parameter has its default in ``config_file`` (config/multitask.yaml, documented key by
key); the launch arguments below override a few of them only when given (empty = the file's
value). Anything else: pass another ``config_file`` or a ``params_file`` (ROS params YAML, same
names as ``ros2 param``). The Fast DDS profile for large images (config/fastdds_large_images.xml)
is applied through FASTDDS_DEFAULT_PROFILES_FILE unless ``dds_profile`` is empty or the variable
is already set. No side effects here: nothing is installed, downloaded or evaluated.
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import LifecycleNode, Node

PACKAGE = "ivif_fusion"
PROFILE_ENV = "FASTDDS_DEFAULT_PROFILES_FILE"

# Launch argument -> node parameter it sets when non-empty (checked against the node by test/test_launch_config.py).
PARAMETER_ARGS = {
    "thermal_topic": "ros.thermal.topic",
    "visible_topic": "ros.visible.topic",
    "thermal_transport": "ros.thermal.transport",
    "visible_transport": "ros.visible.transport",
    "backend": "pipeline.backends",
}
# Parameters holding a list: the launch argument is comma-separated.
LIST_PARAMETERS = ("pipeline.backends",)
EXECUTABLES = {"false": "fusion_node", "true": "fusion_lifecycle_node"}


def _node(context, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003 - OpaqueFunction signature
    params = [{"config_file": LaunchConfiguration("config_file").perform(context)}]
    params_file = LaunchConfiguration("params_file").perform(context).strip()
    if params_file:
        params.append(params_file)
    overrides = {}
    for arg, name in PARAMETER_ARGS.items():
        value = LaunchConfiguration(arg).perform(context).strip()
        if value:
            overrides[name] = [v.strip() for v in value.split(",") if v.strip()] if name in LIST_PARAMETERS else value
    params.append(overrides)
    env = {}
    profile = LaunchConfiguration("dds_profile").perform(context).strip()
    if profile and PROFILE_ENV not in os.environ:
        env[PROFILE_ENV] = profile
    managed = LaunchConfiguration("managed").perform(context).strip().lower()
    if managed not in EXECUTABLES:
        raise ValueError(f"managed must be true or false, got {managed!r}")
    common = dict(package=PACKAGE, executable=EXECUTABLES[managed], name="fusion_node",
                  namespace=LaunchConfiguration("namespace"), parameters=params, additional_env=env,
                  output="screen", emulate_tty=True)
    return [LifecycleNode(**common) if managed == "true" else Node(**common)]


def generate_launch_description():
    """Launch arguments: config_file, params_file, namespace, topics, transports, backend, managed, dds_profile."""
    share = get_package_share_directory(PACKAGE)
    default_config = os.path.join(share, "config", "multitask.yaml")
    default_profile = os.path.join(share, "config", "fastdds_large_images.xml")
    return LaunchDescription([
        DeclareLaunchArgument("config_file", default_value=default_config,
                              description="Node configuration (config/multitask.yaml layout); its values are "
                                          "the defaults of every node parameter."),
        DeclareLaunchArgument("params_file", default_value="",
                              description="Optional ROS params file (ros__parameters, same names as ros2 param); "
                                          "wins over config_file."),
        DeclareLaunchArgument("namespace", default_value="",
                              description="Namespace of the node; relative topics (thermal/image_raw, "
                                          "rgb/image_raw, ~/fused/<task>) resolve inside it."),
        DeclareLaunchArgument("thermal_topic", default_value="",
                              description="Thermal base topic (sets ros.thermal.topic; empty: config file)."),
        DeclareLaunchArgument("visible_topic", default_value="",
                              description="RGB base topic (sets ros.visible.topic; empty: config file)."),
        DeclareLaunchArgument("thermal_transport", default_value="",
                              description="raw or compressed (sets ros.thermal.transport; empty: config file)."),
        DeclareLaunchArgument("visible_transport", default_value="",
                              description="raw or compressed (sets ros.visible.transport; empty: config file)."),
        DeclareLaunchArgument("backend", default_value="",
                              description="Backend preference, comma-separated, e.g. 'tensorrt,onnxruntime,torch' "
                                          "(sets pipeline.backends; empty: config file)."),
        DeclareLaunchArgument("managed", default_value="false",
                              description="true: lifecycle node fusion_lifecycle_node (configure/activate through "
                                          "its lifecycle services); false: plain node fusion_node."),
        DeclareLaunchArgument("dds_profile", default_value=default_profile,
                              description="Fast DDS XML profile set as FASTDDS_DEFAULT_PROFILES_FILE for the node "
                                          "(empty, or the variable already set: left alone)."),
        OpaqueFunction(function=_node),
    ])
