"""Publish real thermal/RGB pairs as a camera rig would (``python pair_publisher.py --help``).

Launch tests start this script with ``sys.executable``; the rig itself (schedule, message
building, pacing) is :mod:`ivif_fusion.ros.camera_rig`, which the tests and the node benchmark
import. No ROS import at module level: the caller sets the DDS environment first.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from ivif_fusion.ros.camera_rig import (RGB_FRAME, T0_NS, THERMAL_FRAME, MessageFactory, Send,  # noqa: F401
                                        load_pairs, publish, run, schedule)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-root", type=Path, default=None, help="data root (default: ivif_fusion.paths.data_root())")
    ap.add_argument("--duration", type=float, default=5.0, help="seconds of camera time to publish")
    ap.add_argument("--width", type=int, default=160)
    ap.add_argument("--height", type=int, default=120)
    ap.add_argument("--compressed", action="store_true", help="RGB as sensor_msgs/CompressedImage (jpeg)")
    ap.add_argument("--thermal-topic", default="thermal/image_raw")
    ap.add_argument("--rgb-topic", default="rgb/image_raw", help="base topic (compressed: <topic>/compressed)")
    ap.add_argument("--reliable", action="store_true", help="reliable QoS (default best effort)")
    ap.add_argument("--wait-subscribers", type=float, default=30.0, help="seconds to wait for both subscribers")
    args, ros_args = ap.parse_known_args(argv)

    import rclpy
    from rclpy.qos import QoSProfile, ReliabilityPolicy

    from ivif_fusion.paths import data_root

    root = args.data_root or data_root()
    factory = MessageFactory(load_pairs(root, 3, (args.width, args.height)), args.compressed)
    rclpy.init(args=[sys.argv[0], *ros_args])
    node = rclpy.create_node("ivif_pair_publisher")
    qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE if args.reliable
                     else ReliabilityPolicy.BEST_EFFORT)
    pubs = {"thermal": node.create_publisher(factory.Image, args.thermal_topic, qos),
            "visible": node.create_publisher(factory.rgb_type, f"{args.rgb_topic}/compressed" if args.compressed
                                             else args.rgb_topic, qos)}
    deadline = time.monotonic() + args.wait_subscribers
    while time.monotonic() < deadline and min(p.get_subscription_count() for p in pubs.values()) == 0:
        time.sleep(0.05)
    run(pubs, factory, schedule(args.duration))
    node.destroy_node()
    rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
