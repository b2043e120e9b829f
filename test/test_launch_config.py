"""config/multitask.yaml, launch/multitask.launch.py and the node's declared parameters agree.

The launch file needs `launch`/`launch_ros`, which do not install from pip here, so it is read
with `ast`; the node's parameter names come from the same function the node declares them
with (ivif_fusion.ros.params), which needs no rclpy. Tests that need launch / launch_testing
skip with the reason when those packages are missing.
"""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
LAUNCH = ROOT / "launch" / "multitask.launch.py"
CONFIG = ROOT / "config" / "multitask.yaml"
LAUNCH_ARGS = {"config_file", "params_file", "namespace", "thermal_topic", "visible_topic", "thermal_transport",
               "visible_transport", "backend", "managed", "dds_profile"}


def _launch_tree() -> ast.Module:
    return ast.parse(LAUNCH.read_text(), filename=str(LAUNCH))


def _declared_launch_args(tree: ast.Module) -> dict[str, dict]:
    """{name: {keyword: literal}} of every DeclareLaunchArgument(...) call."""
    out = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", "")) \
                == "DeclareLaunchArgument":
            name = ast.literal_eval(node.args[0])
            kws = {}
            for kw in node.keywords:
                try:
                    kws[kw.arg] = ast.literal_eval(kw.value)
                except ValueError:
                    kws[kw.arg] = ast.unparse(kw.value)
            out[name] = kws
    return out


def _module_constant(tree: ast.Module, name: str):  # noqa: ANN202
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == name for t in node.targets):
            return ast.literal_eval(node.value)
    raise AssertionError(f"{name} not defined in {LAUNCH.name}")


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


def test_launch_file_is_valid_python_with_documented_arguments():
    tree = _launch_tree()
    compile(tree, str(LAUNCH), "exec")
    args = _declared_launch_args(tree)
    assert set(args) == LAUNCH_ARGS
    for name, kws in args.items():
        assert kws.get("description"), f"launch argument {name} has no description"
        assert "default_value" in kws, f"launch argument {name} has no default"
    # Overriding arguments default to "" = keep the config file's value.
    for name in ("params_file", "namespace", "thermal_topic", "visible_topic", "thermal_transport",
                 "visible_transport", "backend"):
        assert args[name]["default_value"] == ""
    assert args["config_file"]["default_value"] == "default_config"
    assert args["managed"]["default_value"] == "false"
    assert args["dds_profile"]["default_value"] == "default_profile"
    src = LAUNCH.read_text()
    assert 'os.path.join(share, "config", "multitask.yaml")' in src
    assert 'os.path.join(share, "config", "fastdds_large_images.xml")' in src
    assert (ROOT / "config" / "fastdds_large_images.xml").is_file()
    funcs = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
    assert "generate_launch_description" in funcs


def test_launch_arguments_map_to_declared_node_parameters():
    from ivif_fusion.ros.params import CONFIG_FILE_PARAM, parameter_names

    tree = _launch_tree()
    mapping = _module_constant(tree, "PARAMETER_ARGS")
    names = set(parameter_names())
    assert set(mapping) | {"config_file", "params_file", "namespace", "managed", "dds_profile"} == LAUNCH_ARGS
    assert set(mapping.values()) <= names, set(mapping.values()) - names
    assert CONFIG_FILE_PARAM == "config_file" and CONFIG_FILE_PARAM in names
    for p in _module_constant(tree, "LIST_PARAMETERS"):
        assert p in mapping.values()
    # The nodes the launch file starts are our console scripts (plain, or managed with managed:=true).
    src = LAUNCH.read_text()
    assert _module_constant(tree, "EXECUTABLES") == {"false": "fusion_node", "true": "fusion_lifecycle_node"}
    assert "executable=EXECUTABLES[managed]" in src and "package=PACKAGE" in src
    setup = (ROOT / "setup.py").read_text()
    assert '"fusion_node = ivif_fusion.ros.fusion_node:main"' in setup
    assert '"fusion_lifecycle_node = ivif_fusion.ros.lifecycle_node:main"' in setup


def test_yaml_keys_equal_node_parameters():
    from ivif_fusion.ros.params import NODE_SECTIONS, parameter_names, parameter_specs

    data = yaml.safe_load(CONFIG.read_text())
    tasks = data["pipeline"].pop("tasks")
    flat = _flatten({k: v for k, v in data.items() if k in NODE_SECTIONS})
    # The file's task list becomes pipeline.tasks (names) plus tasks.<name>.<field>.
    flat["pipeline.tasks"] = [t["name"] for t in tasks]
    for t in tasks:
        flat.update({f"tasks.{t['name']}.{k}": v for k, v in t.items() if k != "name"})
    from ivif_fusion.config import load_runtime

    declared = set(parameter_names(load_runtime(CONFIG))) - {"config_file"}
    assert set(flat) <= declared, set(flat) - declared
    # Keys the file leaves out are task fields at their schema defaults.
    assert all(n.startswith("tasks.") for n in declared - set(flat)), declared - set(flat)
    # What the node does not read belongs to other consumers (ivif replay).
    assert set(data) - set(NODE_SECTIONS) == {"data_root", "replay"}
    # Defaults of the declared parameters are the file's values.
    specs = {s.name: s for s in parameter_specs()}
    for name, value in flat.items():
        spec = specs[name]
        assert spec.default == value, name
        assert spec.description, f"{name} has no description"


def test_parameter_kinds_and_limits():
    from ivif_fusion.config import RuntimeConfig
    from ivif_fusion.ros.params import parameter_specs

    specs = {s.name: s for s in parameter_specs(RuntimeConfig())}
    assert specs["sync.slop_s"].kind == "float" and specs["sync.slop_s"].min == 0.0
    assert specs["sync.queue_size"].kind == "int" and specs["sync.queue_size"].min == 1
    for stream in ("thermal", "visible"):
        assert specs[f"ros.{stream}.reliability"].choices == ("best_effort", "reliable")
        assert specs[f"ros.{stream}.reliability"].constraints == "one of: best_effort, reliable"
        assert specs[f"ros.{stream}.reliability"].default == "best_effort"   # REP 2003 consumer
        assert specs[f"ros.{stream}.transport"].choices == ("raw", "compressed")
    assert specs["ros.thermal.topic"].default == "thermal/image_raw"
    assert specs["ros.visible.topic"].default == "rgb/image_raw"
    assert specs["ros.output_qos.reliability"].default == "reliable"       # REP 2003 producer
    assert specs["pipeline.backends"].kind == "str_list" and specs["pipeline.backends"].default == ["torch"]
    assert specs["pipeline.tasks"].kind == "str_list" and specs["pipeline.tasks"].default == ["fusion"]
    assert specs["tasks.fusion.kind"].default == "fusion" and specs["tasks.fusion.kind"].choices[0] == "detection"
    assert specs["tasks.fusion.score_threshold"].kind == "float" and specs["tasks.fusion.classes"].kind == "str_list"
    assert "tasks.fusion.name" not in specs
    assert specs["ros.publish_fused"].kind == "bool" and specs["ros.publish_fused"].default is True
    assert specs["time_jump_s"].kind == "float" and specs["diagnostics.drop_warn_ratio"].max == 1.0
    assert not any(n.startswith(("replay.", "data_root")) for n in specs)
    # Tasks named but not in the file get the schema's TaskConfig defaults.
    det = {s.name: s for s in parameter_specs(RuntimeConfig(), ["det"])}
    assert det["tasks.det.kind"].default == "detection" and det["tasks.det.weights"].default == ""
    assert det["pipeline.tasks"].default == ["det"] and "tasks.fusion.kind" not in det


def test_parameter_overrides_win_and_are_checked(tmp_path):
    from ivif_fusion.config import ConfigError
    from ivif_fusion.ros.params import check_given, config_from_parameters, parameter_names

    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text("sync:\n  slop_s: 0.2\n  queue_size: 4\nros:\n  visible:\n    topic: /cam/rgb\n"
                        "pipeline:\n  tasks:\n  - {name: a, kind: fusion}\n  - {name: d, kind: detection, "
                        "score_threshold: 0.5}\n")
    cfg = config_from_parameters(cfg_file, {"sync.slop_s": 0.01, "pipeline.tasks": ["d", "b"],
                                            "tasks.b.kind": "fusion", "tasks.d.iou_threshold": 0.3,
                                            "pipeline.backends": ["onnxruntime", "torch"]})
    assert cfg.sync.slop_s == 0.01 and cfg.sync.queue_size == 4 and cfg.ros.visible.topic == "/cam/rgb"
    # A partial section keeps the stream's own defaults (not the generic QosConfig's reliable / 5).
    assert (cfg.ros.visible.reliability, cfg.ros.visible.depth, cfg.ros.thermal.topic) == \
        ("best_effort", 10, "thermal/image_raw")
    assert [t.name for t in cfg.pipeline.tasks] == ["d", "b"] and cfg.pipeline.backends == ["onnxruntime", "torch"]
    d, b = cfg.pipeline.tasks
    # d keeps the file's score threshold, takes the override's IoU; b is a schema-default task of kind fusion.
    assert (d.kind, d.score_threshold, d.iou_threshold) == ("detection", 0.5, 0.3)
    assert (b.kind, b.customization, b.weights) == ("fusion", "generic", "")
    with pytest.raises(ConfigError, match="not one of"):
        config_from_parameters(cfg_file, {"ros.thermal.reliability": "sometimes"})
    with pytest.raises(ConfigError, match="below the minimum"):
        config_from_parameters(cfg_file, {"sync.queue_size": 0})
    with pytest.raises(ConfigError, match="unknown node parameter"):
        config_from_parameters(cfg_file, {"sync.slopp": 0.1})
    with pytest.raises(ConfigError, match="not one of"):
        config_from_parameters(cfg_file, {"pipeline.tasks": ["a"], "tasks.a.kind": "fuson"})
    with pytest.raises(ConfigError, match="unique"):
        config_from_parameters(cfg_file, {"pipeline.tasks": ["a", "a"]})
    declared = parameter_names()
    with pytest.raises(ConfigError, match=r"'sync.slopp_s' \(did you mean 'sync.slop_s'\?\)"):
        check_given(["sync.slopp_s", "use_sim_time"], declared)
    with pytest.raises(ConfigError, match="pipeline.tasks is a list of task names"):
        check_given(["pipeline.tasks.name"], declared)
    with pytest.raises(ConfigError, match="exist only for tasks listed in pipeline.tasks"):
        check_given(["tasks.zzz_not_a_task.kind"], declared)
    check_given(["use_sim_time", "qos_overrides./x.publisher.depth", "sync.slop_s"], declared)


def test_docs_list_every_parameter():
    from ivif_fusion.ros.params import parameter_names

    doc = (ROOT / "docs" / "ros.md").read_text()
    missing = [n for n in parameter_names() if f"`{n}`" not in doc]
    assert not missing, f"docs/ros.md misses {missing} (regenerate: python -m ivif_fusion.ros.docs)"
    from ivif_fusion.ros.docs import render

    assert render(doc) == doc, "docs/ros.md parameter table is out of date: run python -m ivif_fusion.ros.docs"


def _ros_launch_missing() -> str | None:
    """Why ROS 2 launch cannot be used here (None when it can)."""
    try:
        import launch  # the repository's launch/ folder is a namespace package of that name: check content
    except ImportError:
        launch = None
    if launch is None or not hasattr(launch, "LaunchDescription"):
        return "ROS 2 'launch' is not installed (not pip-installable here); the launch file is checked with ast above"
    for mod in ("launch_ros", "ament_index_python"):
        if importlib.util.find_spec(mod) is None:
            return f"'{mod}' is not installed; the launch file is checked with ast above"
    return None


def test_launch_description_builds():
    if _ros_launch_missing():
        pytest.skip(_ros_launch_missing())
    from ament_index_python.packages import PackageNotFoundError, get_package_share_directory

    try:
        get_package_share_directory("ivif_fusion")
    except PackageNotFoundError:
        pytest.skip("ivif_fusion is not installed in an ament index (colcon build it first)")
    spec = importlib.util.spec_from_file_location("multitask_launch", LAUNCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    from launch.actions import DeclareLaunchArgument

    ld = module.generate_launch_description()
    names = {e.name for e in ld.entities if isinstance(e, DeclareLaunchArgument)}
    assert names == LAUNCH_ARGS


def test_launch_testing_node_comes_up():
    if importlib.util.find_spec("launch_testing") is None:
        pytest.skip("launch_testing is not installed (not pip-installable here); the node is tested live over "
                    "DDS in test/test_ros_node.py instead")
    if _ros_launch_missing():
        pytest.skip(_ros_launch_missing())
    pytest.importorskip("launch_testing_ros", reason="launch_testing_ros is not installed")
    import launch
    import launch_ros.actions
    from ament_index_python.packages import PackageNotFoundError, get_package_share_directory

    try:
        get_package_share_directory("ivif_fusion")
    except PackageNotFoundError:
        pytest.skip("ivif_fusion is not installed in an ament index (colcon build it first)")
    # Start the installed node through launch and check it advertises its outputs.
    import threading

    import rclpy
    from rclpy.node import Node

    ls = launch.LaunchService()
    ls.include_launch_description(launch.LaunchDescription([
        launch_ros.actions.Node(package="ivif_fusion", executable="fusion_node", name="fusion_node"),
    ]))
    t = threading.Thread(target=ls.run, daemon=True)
    t.start()
    rclpy.init()
    try:
        probe = Node("ivif_launch_probe")
        import time

        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and probe.count_publishers("/fusion_node/fused/fusion") == 0:
            rclpy.spin_once(probe, timeout_sec=0.2)
        assert probe.count_publishers("/fusion_node/fused/fusion") == 1
        assert probe.count_publishers("/fusion_node/fused/no_such_task") == 0
    finally:
        ls.shutdown()
        t.join(20)
        rclpy.try_shutdown()
