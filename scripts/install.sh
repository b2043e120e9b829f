#!/usr/bin/env bash
# Create .venv with the pinned requirements (pip only) and install this package editable.
# Idempotent: re-running only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -r requirements.txt
.venv/bin/python -m pip install -q -r requirements-ros.txt
.venv/bin/python -m pip install -q -r requirements-tools.txt
.venv/bin/python -m pip install -q --no-deps --no-build-isolation -e .
# Ultralytics runs offline from a project-owned settings folder with its font present.
mkdir -p .yolo_config/Ultralytics
if [ ! -f .yolo_config/Ultralytics/Arial.ttf ]; then
  font=$(.venv/bin/python -c "import matplotlib, pathlib; print(pathlib.Path(matplotlib.get_data_path())/'fonts/ttf/DejaVuSans.ttf')")
  cp "$font" .yolo_config/Ultralytics/Arial.ttf
  cp "$font" .yolo_config/Ultralytics/Arial.Unicode.ttf
fi
# vision_msgs has no wheel: build it from our .msg definitions when it is not importable.
if [ -f scripts/build_vision_msgs.sh ]; then
  bash scripts/build_vision_msgs.sh
fi
echo "install: .venv ready"
