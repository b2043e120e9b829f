#!/usr/bin/env bash
# Build the vision_msgs 4.x interfaces (msg/*.msg) into the project venv, only when needed.
#
# vision_msgs has no pip wheel. The ROS 2 wheels in .venv lay it out as an install prefix
# (share/<pkg>/cmake, include/, lib/), so a normal ament_cmake + rosidl build against
# CMAKE_PREFIX_PATH=.venv works, after two fixes:
#   * the wheels' CMake export files name the manylinux build interpreter's include dirs
#     (/opt/python/cp311-cp311/include/python3.11, .../site-packages/numpy/_core/include);
#     they are rewritten to this interpreter's Python and numpy include dirs;
#   * package.xml needs a valid maintainer email (catkin_pkg rejects the package otherwise).
#
# Skips when `import vision_msgs` works and is not a stale build of ours (a sourced ROS
# install provides it; nothing to do). The build is cached under ~/.cache/ivif_fusion keyed by
# the .msg contents, this script and the interpreter, so a fresh venv re-installs in a second.
# Writes .venv/vision_msgs_env.sh (sourced by scripts/env.sh) with AMENT_PREFIX_PATH.
# Usage: scripts/build_vision_msgs.sh [--force]
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
VENV=${VENV:-$ROOT/.venv}
PY=$VENV/bin/python
FORCE=0
[ "${1:-}" = "--force" ] && FORCE=1

log() { echo "build_vision_msgs: $*"; }

if [ ! -x "$PY" ]; then
  log "no venv at $VENV (run scripts/install.sh first)"; exit 1
fi

# Identity of what we would build: message definitions, build recipe version, interpreter and
# rosidl version. Bump RECIPE when the generated package changes (CMakeLists/package.xml below).
RECIPE=1
KEY=$( { echo "recipe $RECIPE"; cat msg/*.msg; "$PY" -c 'import sys; print(sys.version)';
         "$PY" -m pip show ros-rosidl-generator-py 2>/dev/null | grep -i '^version' || true; } | sha256sum | cut -c1-16)
STAMP=$VENV/share/vision_msgs/ivif_build_key

write_env() {
  # Only AMENT_PREFIX_PATH is needed (ament index lookups); the wheels' bootstrapper already
  # puts .venv/lib on LD_LIBRARY_PATH, and the Python package sits in site-packages.
  cat > "$VENV/vision_msgs_env.sh" <<EOF
# Written by scripts/build_vision_msgs.sh: vision_msgs built into this venv (key $KEY).
case ":\${AMENT_PREFIX_PATH:-}:" in
  *":$VENV:"*) ;;
  *) export AMENT_PREFIX_PATH="$VENV\${AMENT_PREFIX_PATH:+:\$AMENT_PREFIX_PATH}" ;;
esac
EOF
}

if [ $FORCE = 0 ] && "$PY" -c 'import vision_msgs.msg' 2>/dev/null; then
  if [ ! -f "$STAMP" ]; then
    log "vision_msgs importable (system or other install); nothing to build"; exit 0
  fi
  if [ "$(cat "$STAMP")" = "$KEY" ]; then
    [ -f "$VENV/vision_msgs_env.sh" ] || write_env
    log "up to date (key $KEY)"; exit 0
  fi
  log "msg definitions changed: rebuilding"
fi

CACHE=${IVIF_CACHE:-$HOME/.cache/ivif_fusion}/vision_msgs/$KEY
if [ $FORCE = 1 ] || [ ! -f "$CACHE/prefix/share/vision_msgs/ivif_build_key" ]; then
  t0=$(date +%s)
  # Build tools from pip (the wheels do not declare their CMake-level dependencies, hence the explicit list).
  PIPLOG=$(mktemp)
  if ! "$PY" -m pip install -q -r requirements-build.txt > "$PIPLOG" 2>&1; then
    grep -v '^WARNING: Location' "$PIPLOG"; rm -f "$PIPLOG"; log "pip install -r requirements-build.txt failed"; exit 1
  fi
  rm -f "$PIPLOG"

  for tool in cmake gcc g++; do
    command -v $tool >/dev/null || { log "$tool not found (needed to build vision_msgs)"; exit 1; }
  done
  SRC=$CACHE/src/vision_msgs
  BUILD=$CACHE/build
  rm -rf "$CACHE"
  mkdir -p "$SRC/msg" "$BUILD"
  cp msg/*.msg "$SRC/msg/"
  MSGS=$(cd "$SRC" && ls msg/*.msg | sort | sed 's/^/  "/; s/$/"/')

  cat > "$SRC/package.xml" <<'EOF'
<?xml version="1.0"?>
<package format="3">
  <name>vision_msgs</name>
  <version>4.1.1</version>
  <description>vision_msgs 4.x message definitions (the subset used by ivif_fusion), built from pip wheels.</description>
  <maintainer email="ivif-fusion@example.org">ivif_fusion developers</maintainer>
  <license>Apache License 2.0</license>
  <buildtool_depend>ament_cmake</buildtool_depend>
  <buildtool_depend>rosidl_default_generators</buildtool_depend>
  <depend>std_msgs</depend>
  <depend>geometry_msgs</depend>
  <exec_depend>rosidl_default_runtime</exec_depend>
  <member_of_group>rosidl_interface_packages</member_of_group>
  <export><build_type>ament_cmake</build_type></export>
</package>
EOF
  cat > "$SRC/CMakeLists.txt" <<EOF
cmake_minimum_required(VERSION 3.16)
project(vision_msgs)
find_package(ament_cmake REQUIRED)
find_package(rosidl_default_generators REQUIRED)
find_package(std_msgs REQUIRED)
find_package(geometry_msgs REQUIRED)
rosidl_generate_interfaces(\${PROJECT_NAME}
$MSGS
  DEPENDENCIES std_msgs geometry_msgs)
ament_export_dependencies(rosidl_default_runtime)
ament_package()
EOF

  # Rewrite the manylinux build paths in the wheels' export files (idempotent; only files that have them).
  PY_INC=$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
  NP_INC=$("$PY" -c 'import numpy; print(numpy.get_include())')
  if [ ! -f "$PY_INC/Python.h" ]; then
    for alt in /usr/include/python3.11 /usr/local/include/python3.11; do
      [ -f "$alt/Python.h" ] && PY_INC=$alt && break
    done
  fi
  [ -f "$PY_INC/Python.h" ] || { log "Python.h not found (install python3-dev)"; exit 1; }
  for f in $(grep -rl --include='*.cmake' -e '/opt/python/cp311-cp311' "$VENV/share" 2>/dev/null || true); do
    sed -i -e "s#/opt/python/cp311-cp311/lib/python3.11/site-packages/numpy/_core/include#$NP_INC#g" \
           -e "s#/opt/python/cp311-cp311/include/python3.11#$PY_INC#g" "$f"
  done

  SITE=$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  log "building into cache $CACHE (python include $PY_INC)"
  # The wheels' cmake modules and generators run with the venv's interpreter and packages.
  (
    export PATH="$VENV/bin:$PATH"
    export AMENT_PREFIX_PATH="$VENV${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}"
    export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
    cmake -S "$SRC" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="$VENV" \
      -DCMAKE_INSTALL_PREFIX="$CACHE/prefix" -DPython3_EXECUTABLE="$PY" -DPYTHON_EXECUTABLE="$PY" \
      -DPYTHON_INSTALL_DIR="lib/python3.11/site-packages" -DBUILD_TESTING=OFF \
      -DCMAKE_INSTALL_RPATH='$ORIGIN:$ORIGIN/../..:$ORIGIN/../../..' > "$CACHE/cmake.log" 2>&1 \
      || { tail -40 "$CACHE/cmake.log"; exit 1; }
    cmake --build "$BUILD" -j "${IVIF_BUILD_JOBS:-2}" > "$CACHE/build.log" 2>&1 \
      || { grep -m20 -B2 -A5 -i 'error' "$CACHE/build.log"; exit 1; }
    cmake --install "$BUILD" > "$CACHE/install.log" 2>&1 || { tail -20 "$CACHE/install.log"; exit 1; }
  )
  echo "$KEY" > "$CACHE/prefix/share/vision_msgs/ivif_build_key"
  log "built in $(( $(date +%s) - t0 )) s"
else
  log "using cached build $CACHE"
fi

# Install (copy) the cached prefix into the venv, which is itself the wheels' install prefix.
cp -a "$CACHE/prefix/." "$VENV/"
write_env
if ! "$PY" -c 'import vision_msgs.msg as m; m.Detection2DArray()' 2>"$CACHE/import.log"; then
  log "built, but 'import vision_msgs' fails:"; cat "$CACHE/import.log"; exit 1
fi
log "vision_msgs installed into $VENV (key $KEY)"
