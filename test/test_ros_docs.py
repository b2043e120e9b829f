"""Every node example in docs/ros.md is run: its parameters, remaps and the resulting names.

A bash block's ``fusion_node`` / ``fusion_lifecycle_node`` command (continuation lines joined) is
one example; the ``# check:`` lines after it are Python expressions over ``cfg`` (the node's
RuntimeConfig), ``name`` (its fully qualified name) and ``topics`` (what it subscribes and
publishes, after remapping); ``# error:`` is a text the node prints when it exits with code 2.
Examples with checks run in this process through the node's own parameter declaration
(ivif_fusion.ros.declare) and topic names (ivif_fusion.ros.topics, stream.outputs.task_outputs) on a
bare rclpy node, without loading a model; examples with errors run the real node. ``yaml``
blocks whose first line is ``# <file>.yaml`` are written to that file first. ``ros2 launch``
arguments must be launch arguments, ``ros2 lifecycle set`` transitions must exist.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "test"))

from ros_fixtures.live import ros_env  # noqa: E402

DOC = ROOT / "docs" / "ros.md"
ENV = ros_env()
COMMANDS = ("fusion_node", "fusion_lifecycle_node")
TRANSITIONS = {"configure", "activate", "deactivate", "cleanup", "shutdown"}


def _blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", DOC.read_text(), re.S)


def _examples() -> list[dict]:
    out: list[dict] = []
    for block in _blocks("bash"):
        lines = block.replace("\\\n", " ").splitlines()
        for line in lines:
            line = line.strip()
            if line.split(" ", 1)[0] in COMMANDS:
                out.append({"cmd": line, "checks": [], "error": None, "after": []})
            elif line.startswith("# check:") and out:
                out[-1]["checks"].append(line[len("# check:"):].strip())
            elif line.startswith("# error:") and out:
                out[-1]["error"] = line[len("# error:"):].strip()
            elif line.startswith("ros2 ") and out and block.find(out[-1]["cmd"].split()[0]) >= 0:
                out[-1]["after"].append(line)
    return out


def _ros2_lines() -> list[str]:
    return [ln.strip() for b in _blocks("bash") for ln in b.replace("\\\n", " ").splitlines()
            if ln.strip().startswith("ros2 ")]


@pytest.fixture()
def workdir(tmp_path, monkeypatch):  # noqa: ANN001, ANN201
    """A cwd with the docs' params files and config/ (examples use relative paths)."""
    for block in _blocks("yaml"):
        first = block.splitlines()[0]
        if first.startswith("# ") and first.endswith(".yaml"):
            (tmp_path / first[2:].strip()).write_text(block)
    (tmp_path / "config").symlink_to(ROOT / "config")
    for k, v in ENV.items():
        monkeypatch.setenv(k, v)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _probe(argv: list[str]) -> dict:
    """Declare the node's parameters and create its subscriptions/publishers on a bare node."""
    import rclpy
    from rclpy.node import Node
    from sensor_msgs.msg import CameraInfo, Image

    from ivif_fusion.ros.declare import declare_node_parameters
    from ivif_fusion.ros.fusion_node import NODE_NAME
    from ivif_fusion.ros.topics import camera_info_topic, input_topic
    from ivif_fusion.stream.outputs import task_outputs

    ctx = rclpy.Context()
    rclpy.init(args=["fusion_node", *argv], context=ctx, domain_id=int(ENV["ROS_DOMAIN_ID"]))
    try:
        node = Node(NODE_NAME, context=ctx, automatically_declare_parameters_from_overrides=True)
        cfg = declare_node_parameters(node)
        topics = {}
        for stream in ("thermal", "visible"):
            topics[stream] = node.create_subscription(Image, input_topic(getattr(cfg.ros, stream),
                                                                              node.resolve_topic_name), print,
                                                      10).topic_name
        ref = getattr(cfg.ros, cfg.sync.reference)
        topics["camera_info"] = node.create_subscription(CameraInfo, camera_info_topic(ref, node.resolve_topic_name), print,
                                                         10).topic_name
        for task in cfg.pipeline.task_configs():
            for o in task_outputs(task.name, task.kind, cfg.ros, "~"):
                topics[f"{o.kind}/{task.name}"] = node.create_publisher(Image, o.topic, 10).topic_name
                if o.kind == "fused":
                    topics[f"fused/{task.name}/camera_info"] = node.create_publisher(
                        CameraInfo, f"{o.topic}/camera_info", 10).topic_name
        result = {"cfg": cfg, "name": node.get_fully_qualified_name(), "topics": topics}
        node.destroy_node()
        return result
    finally:
        rclpy.try_shutdown(context=ctx)


EXAMPLES = _examples()


def test_docs_have_examples_for_each_feature():
    text = " ".join(e["cmd"] for e in EXAMPLES)
    for needle in ("pipeline.tasks", "--params-file", "transport:=compressed", "reliability", "rate_hz",
                   "time_jump_s", "diagnostics.", "__node", "~/fused", "fusion_lifecycle_node"):
        assert needle in text, f"docs/ros.md has no node example using {needle}"
    assert all(e["checks"] or e["error"] for e in EXAMPLES), [e["cmd"] for e in EXAMPLES
                                                               if not (e["checks"] or e["error"])]


@pytest.mark.parametrize("example", [e for e in EXAMPLES if e["checks"]], ids=lambda e: e["cmd"][:70])
def test_docs_example_configures_the_node(example, workdir):  # noqa: ANN001
    argv = shlex.split(example["cmd"])[1:]
    assert argv[0] == "--ros-args"
    env = _probe(argv)
    for check in example["checks"]:
        assert eval(check, {}, dict(env)), f"{check}\n  topics={env['topics']}\n  name={env['name']}"  # noqa: S307
    for line in example["after"]:
        if line.startswith("ros2 lifecycle set"):
            _, _, _, node_name, transition = line.split()
            assert node_name == env["name"] and transition in TRANSITIONS, line


@pytest.mark.parametrize("example", [e for e in EXAMPLES if e["error"]], ids=lambda e: e["cmd"][:70])
def test_docs_example_fails_with_one_clear_line(example, workdir):  # noqa: ANN001
    argv = shlex.split(example["cmd"])[1:]
    module = {"fusion_node": "ivif_fusion.ros.fusion_node",
              "fusion_lifecycle_node": "ivif_fusion.ros.lifecycle_node"}[example["cmd"].split()[0]]
    env = {**os.environ, **ENV, "PYTHONPATH": str(ROOT)}
    res = subprocess.run([sys.executable, "-m", module, *argv], capture_output=True, text=True, env=env,
                         cwd=str(workdir), timeout=120)
    assert res.returncode == 2, res.stdout + res.stderr
    assert example["error"] in res.stderr and "ERROR:" in res.stderr, res.stderr
    assert "Traceback" not in res.stdout + res.stderr


def test_docs_launch_and_cli_lines_name_real_arguments():
    import ast

    launch = (ROOT / "launch" / "multitask.launch.py").read_text()
    declared = {ast.literal_eval(n.args[0]) for n in ast.walk(ast.parse(launch))
                if isinstance(n, ast.Call) and getattr(n.func, "id", "") == "DeclareLaunchArgument"}
    lines = _ros2_lines()
    assert any(ln.startswith("ros2 launch") for ln in lines)
    for line in lines:
        words = shlex.split(line)
        if words[:2] == ["ros2", "launch"]:
            assert words[2:4] == ["ivif_fusion", "multitask.launch.py"], line
            for arg in words[4:]:
                assert arg.split(":=", 1)[0] in declared, f"{arg} is not a launch argument"
        elif words[:3] == ["ros2", "lifecycle", "set"]:
            assert words[4] in TRANSITIONS, line
        else:
            assert words[:4] == ["ros2", "topic", "echo", "/diagnostics"], f"untested example: {line}"


def test_shipped_profiles_agree_on_large_image_settings():
    """The tests run with fastdds_localhost.xml: it must carry the shipped large-image settings."""
    import xml.etree.ElementTree as ET

    def settings(path: Path) -> dict:
        ns = {"d": "http://www.eprosima.com"}
        root = ET.parse(path).getroot()
        out = {}
        for td in root.iterfind(".//d:transport_descriptor", ns):
            kind = td.find("d:type", ns).text
            for child in td:
                tag = child.tag.split("}")[1]
                if tag not in ("transport_id", "type", "interfaceWhiteList"):
                    out[f"{kind}.{tag}"] = child.text
        rtps = root.find(".//d:participant/d:rtps", ns)
        for tag in ("sendSocketBufferSize", "listenSocketBufferSize", "useBuiltinTransports"):
            out[tag] = rtps.find(f"d:{tag}", ns).text
        return out

    large = settings(ROOT / "config" / "fastdds_large_images.xml")
    local = settings(ROOT / "config" / "fastdds_localhost.xml")
    assert large == local
    assert large["SHM.segment_size"] == str(16 * 1024 * 1024) and large["useBuiltinTransports"] == "false"
    assert large["UDPv4.receiveBufferSize"] == str(8 * 1024 * 1024)


def test_docs_python_snippets_parse_and_name_shipped_files():
    """Launch snippets (launch is not installable here): valid Python naming files the package ships."""
    import ast

    blocks = _blocks("python")
    assert blocks, "docs/ros.md has no launch snippet"
    for block in blocks:
        ast.parse(block)
        for name in re.findall(r'"([\w.]+\.xml)"', block):
            assert (ROOT / "config" / name).is_file(), name
        assert 'executable="fusion_node"' in block and "FASTDDS_DEFAULT_PROFILES_FILE" in block


def test_docs_list_every_drop_reason_and_diagnostics_key():
    from ivif_fusion.types import DropReason

    text = DOC.read_text()
    assert [r.value for r in DropReason if f"`{r.value}`" not in text] == []
    for key in ("rate_hz", "expected_hz", "drop_ratio.<reason>", "lost", "stamp_max_age_s", "stamp_max_lead_s"):
        assert f"`{key}`" in text, key
