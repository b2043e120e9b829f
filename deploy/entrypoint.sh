#!/usr/bin/env bash
# Container entry point: ROS 2 + workspace environment, the TensorRT engine, then the command
# (default: ros2 launch ivif_fusion multitask.launch.py).
#
# IVIF_TENSORRT=1 (the Jetson image) runs `ivif export tensorrt $IVIF_EXPORT_ARGS` first. The
# first start builds the engine (minutes on an Orin) into the engine cache
# (~/.cache/ivif_fusion/engines, a host volume in deploy/ivif-fusion.service), keyed by ONNX
# checksum, TensorRT version, GPU and precision; later starts find the matching engine and go
# on at once. If the build fails the node still starts and its backend list falls back
# (tensorrt -> onnxruntime -> torch, logged), unless IVIF_ENGINE_REQUIRED=1.
set -eo pipefail
ROS_SETUP=${IVIF_ROS_SETUP:-/opt/ros/${ROS_DISTRO}/setup.bash}
WS_SETUP=${IVIF_WS_SETUP:-/opt/ivif_ws/install/setup.bash}
# shellcheck source=/dev/null
source "$ROS_SETUP"
# shellcheck source=/dev/null
source "$WS_SETUP"

if [ "${IVIF_TENSORRT:-0}" = "1" ]; then
  echo "ivif-entrypoint: ivif export tensorrt ${IVIF_EXPORT_ARGS:-} (cached engine reused when it matches)" >&2
  # shellcheck disable=SC2086  # IVIF_EXPORT_ARGS is a list of flags
  if ! ivif export tensorrt ${IVIF_EXPORT_ARGS:-}; then
    if [ "${IVIF_ENGINE_REQUIRED:-0}" = "1" ]; then
      echo "ivif-entrypoint: TensorRT engine build failed and IVIF_ENGINE_REQUIRED=1; exiting" >&2
      exit 1
    fi
    echo "ivif-entrypoint: TensorRT engine build failed; starting with the backend fallback" >&2
  fi
fi
exec "$@"
