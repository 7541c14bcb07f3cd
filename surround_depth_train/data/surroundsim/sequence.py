"""Ego motion and time stamps of a SurroundSim sequence.

The ego drives along +x in its lane at constant speed ``v`` and weaves gently inside it:

    x(t) = v t,   y(t) = y_lane + A sin(2 pi t / P),   yaw(t) = atan2(dy/dt, dx/dt)

so ego-motion compensation between the LiDAR stamp and the camera shutters involves a rotation as well as a
translation. Frames come at 10 Hz: frame ``k`` has its LiDAR stamp at ``k / 10`` s, and camera ``i`` fires at
``k / 10 + SHUTTER_OFFSETS[i]``.
"""
from __future__ import annotations

import numpy as np

from surround_depth_train.data.surroundsim.rig import SHUTTER_OFFSETS
from surround_depth_train.data.surroundsim.world import World
from surround_depth_train.geometry.transforms import TransformBuffer, make_transform

__all__ = ['FRAME_RATE', 'WORLD_FRAME', 'BASE_FRAME', 'ego_pose', 'lidar_stamp', 'camera_stamps',
           'ego_transform_buffer']

FRAME_RATE = 10.0
WORLD_FRAME = 'world'
BASE_FRAME = 'base_link'


def ego_pose(world: World, t: float) -> np.ndarray:
    """``T_world_base`` at time ``t`` (s), float64 4x4."""
    w = 2.0 * np.pi / world.ego_weave_period
    x = world.ego_speed * t
    y = world.ego_lane_y + world.ego_weave * np.sin(w * t)
    vx = world.ego_speed
    vy = world.ego_weave * w * np.cos(w * t)
    yaw = np.arctan2(vy, vx) if (vx != 0 or vy != 0) else 0.0
    c, s = np.cos(yaw), np.sin(yaw)
    R = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    return make_transform(R, [x, y, 0.0])


def lidar_stamp(frame: int) -> float:
    """LiDAR sweep stamp of ``frame`` (s)."""
    return frame / FRAME_RATE


def camera_stamps(frame: int, offsets: tuple[float, ...] = SHUTTER_OFFSETS) -> np.ndarray:
    """Shutter stamps ``[N]`` float64 of the cameras for ``frame``."""
    return lidar_stamp(frame) + np.asarray(offsets, dtype=np.float64)


def ego_transform_buffer(world: World, t0: float, t1: float, rate: float = 100.0) -> TransformBuffer:
    """A :class:`TransformBuffer` holding ``world <- base_link`` sampled at ``rate`` Hz over ``[t0, t1]``.

    Like odometry on a real car, the poses are samples; lookups between them interpolate (slerp + lerp).
    """
    buf = TransformBuffer(tolerance=0.0)
    n = max(2, int(np.ceil((t1 - t0) * rate)) + 1)
    for t in np.linspace(t0, t1, n):
        buf.set_transform(WORLD_FRAME, BASE_FRAME, float(t), ego_pose(world, float(t)))
    return buf
