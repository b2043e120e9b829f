# Environment for running ivif in this checkout (sourced by the Makefile and .ci/run).
_IVIF_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export PATH="$_IVIF_ROOT/.venv/bin:$PATH"
# Ultralytics: never download, never write settings outside the project.
export YOLO_OFFLINE=1
export YOLO_AUTOINSTALL=false
export YOLO_CONFIG_DIR="$_IVIF_ROOT/.yolo_config"
export YOLO_VERBOSE=false
# Deterministic, bounded CPU use on the 2-core target.
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
export MKL_NUM_THREADS=${MKL_NUM_THREADS:-2}
# Several processes share 2 cores (tests, training): idle OpenMP threads must sleep, not spin.
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}
# ROS 2 from pip: DDS stays on this machine.
export ROS_AUTOMATIC_DISCOVERY_RANGE=${ROS_AUTOMATIC_DISCOVERY_RANGE:-LOCALHOST}
if [ -f "$_IVIF_ROOT/.venv/vision_msgs_env.sh" ]; then
  source "$_IVIF_ROOT/.venv/vision_msgs_env.sh"
fi
