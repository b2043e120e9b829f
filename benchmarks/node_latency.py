"""End-to-end latency and throughput of the ROS 2 fusion node at 640x480 on 2 CPU threads.

Starts ``python -m ivif_fusion.ros.fusion_node`` in a subprocess (DDS on loopback: random
ROS_DOMAIN_ID, config/fastdds_localhost.xml, ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST), publishes
real MSRS pairs from this process and times, per fused output, publish of the reference
(thermal) message -> fused image received here. Two runs:

- ``camera``: the rig of the tests, thermal mono16 9 Hz + RGB rgb8 30 Hz, jittered stamps,
  approximate-time pairing (slop 50 ms). Latency includes the time the synchronizer holds a pair
  until it is provably the best match.
- ``saturate``: exact-stamp pairs at 30 Hz, more than the node can process: throughput is the
  rate of fused outputs; latest-pair-wins drops the rest as ``superseded``.

Writes benchmarks/node_latency.json and .md. Usage: python benchmarks/node_latency.py [--seconds 15]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from ivif_fusion.metrics.latency import latency_summary
from ivif_fusion.ros.camera_rig import MessageFactory, Send, load_pairs, run, schedule

ROOT = Path(__file__).resolve().parents[1]

DOMAIN_ID = random.SystemRandom().randint(10, 100)
ROS_ENV = {"ROS_DOMAIN_ID": str(DOMAIN_ID), "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST",
           "FASTDDS_DEFAULT_PROFILES_FILE": str(ROOT / "config" / "fastdds_localhost.xml"),
           "RMW_IMPLEMENTATION": "rmw_fastrtps_cpp"}
os.environ.update(ROS_ENV)  # before rclpy is imported


def _weights(tmp: Path) -> tuple[Path, str]:
    shipped = ROOT / "models" / "vfn_msrs.pt"
    if shipped.is_file():
        return shipped, "models/vfn_msrs.pt"
    import torch

    from ivif_fusion.models import checkpoint
    from ivif_fusion.models.vfn import VFN, VFNConfig

    torch.manual_seed(0)
    path = tmp / "vfn_random.pt"
    checkpoint.save(path, "vfn", VFNConfig().to_dict(), VFN().state_dict(), {"note": "random init (benchmark)"})
    return path, "random-init VFN (same architecture and cost as the trained one)"


def _stats(values: list[float]) -> dict:
    """The latency summary in this report's layout: n, mean, p50, p90, max rounded to 0.1 ms."""
    s = latency_summary(values)
    if not s["n"]:
        return s
    return {"n": s["n"], "mean": round(s["mean"], 1), "p50": round(s["median"], 1), "p90": round(s["p90"], 1),
            "max": round(s["max"], 1)}


def _run_case(name: str, sends: list[Send], sync_mode: str, factory: MessageFactory, weights: Path, tmp: Path,
              threads: int) -> dict:
    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image

    from ivif_fusion.io.messages import stamp_ns
    from ivif_fusion.ros.convert import parse_diagnostics

    log = open(tmp / f"node_{name}.log", "w")  # noqa: SIM115
    args = [sys.executable, "-m", "ivif_fusion.ros.fusion_node", "--ros-args",
            "-p", f"pipeline.backbone_weights:={weights}", "-p", f"pipeline.threads:={threads}",
            "-p", "pipeline.tasks:=[fusion]", "-p", "tasks.fusion.kind:=fusion", "-p", "pipeline.backends:=[torch]",
            "-p", f"sync.mode:={sync_mode}", "-p", "ros.thermal.reliability:=reliable", "-p", "ros.thermal.depth:=100",
            "-p", "ros.visible.reliability:=reliable", "-p", "ros.visible.depth:=100",
            "-p", "ros.diagnostics_period_s:=0.5"]
    env = {**os.environ, **ROS_ENV, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=str(ROOT))
    ctx = rclpy.Context()
    rclpy.init(context=ctx, domain_id=DOMAIN_ID)
    node = rclpy.create_node("ivif_bench_client", context=ctx)
    qos = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
    received: list[tuple[float, int]] = []
    diags: list = []
    node.create_subscription(Image, "/fusion_node/fused/fusion", lambda m: received.append(
        (time.perf_counter(), stamp_ns(m.header))), qos)
    node.create_subscription(DiagnosticArray, "/diagnostics", lambda m: diags.append(m), 10)
    pubs = {"thermal": node.create_publisher(Image, "thermal/image_raw", qos),
            "visible": node.create_publisher(factory.rgb_type, "rgb/image_raw", qos)}
    ex = SingleThreadedExecutor(context=ctx)
    ex.add_node(node)
    spinner = threading.Thread(target=ex.spin, daemon=True)
    spinner.start()
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not (
                all(p.get_subscription_count() for p in pubs.values())
                and node.count_publishers("/fusion_node/fused/fusion")):
            if proc.poll() is not None:
                raise RuntimeError(f"node exited: {(tmp / f'node_{name}.log').read_text()[-2000:]}")
            time.sleep(0.1)
        time.sleep(1.0)
        sent_at: dict[int, float] = {}
        t0 = time.perf_counter()
        run(pubs, factory, sends, lambda s, t: sent_at.__setitem__(s.stamp_ns, t) if s.stream == "thermal" else None)
        t_end = time.perf_counter()
        # Let the pair in the worker finish (nothing in flight in a diagnostics report after t_end).
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            kv = parse_diagnostics(diags[-1]) if diags else None
            if kv and kv.get("pairs.in_flight") == "0" and time.perf_counter() - t_end > 1.0:
                break
            time.sleep(0.2)
        lat = [(t - sent_at[st]) * 1e3 for t, st in received if st in sent_at]
        times = sorted(t for t, st in received if st in sent_at)
        kv = parse_diagnostics(diags[-1]) if diags else {}
        stages = parse_diagnostics(diags[-1], ": latency") if diags else {}
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            rc = proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            rc = proc.wait()
        ex.shutdown(timeout_sec=2)
        node.destroy_node()
        rclpy.try_shutdown(context=ctx)
        log.close()
    n_t = sum(s.stream == "thermal" for s in sends)
    duration = t_end - t0
    return {
        "sync_mode": sync_mode,
        "published": {"thermal": n_t, "visible": len(sends) - n_t, "seconds": round(duration, 2)},
        "fused_outputs": len(lat),
        # Steady output rate: outputs after the first over the time between first and last output.
        "throughput_hz": round((len(times) - 1) / (times[-1] - times[0]), 3) if len(times) > 2 else 0.0,
        "latency_ms": _stats(lat),
        "latency_ms_after_first": _stats(lat[1:]),
        "node_stages_mean_ms": {k[:-8]: float(v) for k, v in stages.items() if k.endswith(".mean_ms")},
        "counters": {k: int(v) for k, v in kv.items() if k != "backend" and v.isdigit() and int(v)},
        "exit_code": rc,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=40.0, help="camera time per run")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "node_latency")
    args = ap.parse_args(argv)

    from ivif_fusion.paths import data_root

    pairs = load_pairs(data_root(), 3, (640, 480), start=20)  # MSRS frames past the eval-20 names
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as td:
        tmp = Path(td)
        weights, weights_note = _weights(tmp)
        factory = MessageFactory(pairs)
        cases = {
            "camera": _run_case("camera", schedule(args.seconds, seed=0), "approximate", factory, weights, tmp,
                                args.threads),
            "saturate": _run_case("saturate", [s for k in range(int(args.seconds * 30)) for s in (
                Send(k / 30, "thermal", 2 * 10**18 + k * 33_333_333, k),
                Send(k / 30, "visible", 2 * 10**18 + k * 33_333_333, k))], "exact", factory, weights, tmp,
                args.threads),
        }
    result = {
        "what": "fusion_node end-to-end: publish of the thermal message -> fused image received (same process clock)",
        "image_size": [640, 480], "threads": args.threads, "backend": "torch (eager, CPU)",
        "tasks": ["fusion (generic backbone output)"], "weights": weights_note,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
                    "loadavg_before": [round(x, 2) for x in load_before],
                    "loadavg_after": [round(x, 2) for x in os.getloadavg()]},
        "cases": cases,
    }
    args.out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [
        "# fusion_node latency and throughput",
        "",
        f"640x480 MSRS pairs, {args.threads} CPU threads, eager torch backend, one generic fusion task, "
        f"weights: {weights_note}. DDS on loopback (shared memory / UDP 127.0.0.1), reliable QoS. "
        "Latency = publish of the thermal message -> fused image received by the publishing process.",
        f"Machine: {os.cpu_count()} CPUs; load average before/after "
        f"{result['machine']['loadavg_before'][0]} / {result['machine']['loadavg_after'][0]} "
        "(other jobs were running: numbers are upper bounds for an idle machine).",
        "",
        "| Run | Input | Pairing | Fused outputs | Throughput (Hz) | Latency mean / p50 / p90 / max (ms), first output excluded |",
        "|---|---|---|---|---|---|",
    ]
    for name, c in cases.items():
        lat = c["latency_ms_after_first"] if c["latency_ms_after_first"].get("n") else c["latency_ms"]
        lat_s = f"{lat['mean']} / {lat['p50']} / {lat['p90']} / {lat['max']}" if lat.get("n") else "-"
        inp = f"{c['published']['thermal']} thermal + {c['published']['visible']} RGB in {c['published']['seconds']} s"
        lines.append(f"| {name} | {inp} | {c['sync_mode']} | {c['fused_outputs']} | {c['throughput_hz']} | {lat_s} |")
    lines += ["", "Mean per-stage times inside the node (ms, from /diagnostics):", "",
              "| Stage | camera | saturate |", "|---|---|---|"]
    stages = sorted(set(cases["camera"]["node_stages_mean_ms"]) | set(cases["saturate"]["node_stages_mean_ms"]))
    for st in stages:
        lines.append(f"| {st} | {cases['camera']['node_stages_mean_ms'].get(st, '-')} | "
                     f"{cases['saturate']['node_stages_mean_ms'].get(st, '-')} |")
    lines += ["", "Regenerate: `python benchmarks/node_latency.py` (writes this file and node_latency.json)."]
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
