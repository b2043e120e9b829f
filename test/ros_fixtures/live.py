"""Helpers for live tests against the node over loopback DDS (used by test/test_ros_robot.py).

The DDS environment (:func:`ros_env`) is set before rclpy is imported by the caller: a random
ROS_DOMAIN_ID per run, ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST and config/fastdds_localhost.xml
(the shipped large-image settings with UDP bound to 127.0.0.1), so no traffic leaves the machine.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PROFILE = ROOT / "config" / "fastdds_localhost.xml"


def ros_env(domain_id: int | None = None) -> dict[str, str]:
    """Environment of a loopback-only DDS run on a random (or the given) domain."""
    return {"ROS_DOMAIN_ID": str(domain_id if domain_id is not None else random.SystemRandom().randint(101, 200)),
            "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST", "FASTDDS_DEFAULT_PROFILES_FILE": str(PROFILE),
            "RMW_IMPLEMENTATION": "rmw_fastrtps_cpp"}


def ros_missing(*extra_modules: str) -> str | None:
    """Why live ROS tests cannot run here (the first module that does not import), or None."""
    import importlib

    for module in ("rclpy", "sensor_msgs.msg", "vision_msgs.msg", *extra_modules):
        try:
            importlib.import_module(module)
        except ImportError as e:
            return f"ROS 2 Python packages not importable ({e}); run scripts/install.sh"
    return None


class Client:
    """A test-side rclpy node in its own context on ``domain_id``, spun on a background thread."""

    def __init__(self, domain_id: int, name: str = "ivif_robot_client") -> None:
        import rclpy
        from rclpy.executors import MultiThreadedExecutor

        self.rclpy = rclpy
        self.ctx = rclpy.Context()
        rclpy.init(context=self.ctx, domain_id=domain_id)
        self.node = rclpy.create_node(name, context=self.ctx)
        self.executor = MultiThreadedExecutor(num_threads=2, context=self.ctx)
        self.executor.add_node(self.node)
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._spin, daemon=True)
        self.thread.start()

    def _spin(self) -> None:
        try:
            self.executor.spin()
        except Exception:  # noqa: BLE001 - context shut down at teardown
            pass

    def collect(self, cls: type, topic: str, qos: object, sink: list) -> object:
        """Subscribe; every message is appended to ``sink`` as (perf_counter time, message)."""
        def cb(msg: object) -> None:
            with self.lock:
                sink.append((time.perf_counter(), msg))
        return self.node.create_subscription(cls, topic, cb, qos)

    def call(self, srv_type: type, name: str, request: object, timeout: float = 30.0) -> object:
        cli = self.node.create_client(srv_type, name)
        if not cli.wait_for_service(timeout_sec=timeout):
            raise AssertionError(f"service {name} not available within {timeout} s")
        result = cli.call(request, timeout_sec=timeout)
        self.node.destroy_client(cli)
        if result is None:
            raise AssertionError(f"service {name} did not answer within {timeout} s")
        return result

    @staticmethod
    def wait(predicate, timeout: float, what: str) -> None:  # noqa: ANN001
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return
            time.sleep(0.05)
        raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")

    def close(self) -> None:
        self.executor.shutdown(timeout_sec=2)
        self.node.destroy_node()
        self.rclpy.try_shutdown(context=self.ctx)
        self.thread.join(5)


class NodeProcess:
    """``python -m <module>`` (the node) in a subprocess with ``env`` added; output to ``log_path``."""

    def __init__(self, log_path: Path, env: dict[str, str], ros_args: list[str],
                 module: str = "ivif_fusion.ros.fusion_node") -> None:
        self.log_path = log_path
        self._log = open(log_path, "w")  # noqa: SIM115 - closed in stop()
        full_env = {**os.environ, **env, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
        self.proc = subprocess.Popen([sys.executable, "-m", module, "--ros-args", *ros_args], stdout=self._log,
                                     stderr=subprocess.STDOUT, env=full_env, cwd=str(ROOT))

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, timeout: float = 20.0) -> int:
        """SIGINT, then wait; returns the exit code (kills and fails on a hang)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
                self._log.close()
                raise AssertionError(f"node did not exit within {timeout} s of SIGINT:\n{self.log()[-3000:]}")
        self._log.close()
        return self.proc.returncode
