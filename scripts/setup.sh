#!/usr/bin/env bash
# Idempotent setup: creates .venv with the pinned requirements and installs this package editable.
# Re-running is cheap: a stamp records the hash of the requirement files that were installed last.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${VENV:-.venv}
PY=${PYTHON:-python3}
stamp="$VENV/.surround_depth_stamp"

if [ -n "${ROS_DISTRO:-}" ]; then
  ros_mode="system-$ROS_DISTRO"   # a sourced ROS 2 provides rclpy and the messages
else
  ros_mode="pypi"
fi
want=$(cat requirements.txt requirements-ros.txt setup.py package.xml | sha256sum | cut -d' ' -f1)-$ros_mode

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
  echo "[setup] no ROS 2 sourced: installing the ROS 2 client wheels from PyPI"
  "$VENV/bin/python" -m pip install -q -r requirements-ros.txt
fi
"$VENV/bin/python" -m pip install -q --no-deps --no-build-isolation -e .
echo "$want" > "$stamp"
echo "[setup] ready: $VENV"
