"""One recorded scene -> rosbag2 messages in the topic layout of :mod:`surround_depth_train.data.rosbag.topics`.

A dataset converter describes a scene as a rig (with its LiDAR mount) and a time-ordered stream of sensor events,
each loaded lazily (:class:`CameraEvent`, :class:`LidarEvent`). :func:`write_scene` turns them into:

- ``/tf_static``: base_link -> every camera's optical frame and the LiDAR frame (once, at the scene's first stamp;
  offered transient local);
- at every sensor stamp, ``/tf`` odom -> base_link and ``/odom`` (``nav_msgs/Odometry``), the ego pose at that stamp
  relative to the scene's first pose (odom starts at the identity; twist in base_link from the previous stamp's
  pose, zero at the first);
- per camera ``/<cam>/image_raw`` (rgb8) or ``/<cam>/image_raw/compressed`` (JPEG / PNG bytes as stored) and
  ``/<cam>/camera_info`` (K, P, distortion model and coefficients) in ``<cam>_optical_frame``;
- ``/lidar/points`` (x, y, z, intensity, ring as float32) in the LiDAR's frame;
- optionally ``/<cam>/depth_gt/image`` (32FC1, metres, NaN = no return): the LiDAR sweep projected into the camera
  at native resolution, for key frames that have one;

every message at its own sensor's original stamp (header and log time). A broken event (missing or unreadable
file) is skipped and counted; everything else is written.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterable

import numpy as np

from surround_depth_train.data.rosbag import topics
from surround_depth_ros.bag.writer import (BagWriter, camera_info_msg, compressed_msg, image_msg, odometry_msg,
                                           pointcloud_msg, stamp_ns, tf_msg, transform_msg)
from surround_depth_train.config import ConfigError
from surround_depth_train.geometry.rig import CameraRig
from surround_depth_train.geometry.transforms import invert_transform, matrix_to_quat

__all__ = ['CameraEvent', 'LidarEvent', 'SceneStats', 'write_scene']


@dataclass
class CameraEvent:
    """One image of camera ``camera`` at ``stamp`` (s); ``load()`` returns RGB ``[H, W, 3]`` uint8 or, for
    ``compressed``, ``(bytes, 'jpeg' | 'png')`` as stored; ``depth()`` optionally the GT depth at native size."""

    camera: str
    stamp: float
    T_world_base: np.ndarray
    load: Callable[[], object]
    compressed: bool = False
    depth: Callable[[], np.ndarray] | None = None
    K: np.ndarray | None = None                  # overrides the rig's K (calibrations may change within a log)
    distortion: np.ndarray | None = None
    distortion_model: str = 'plumb_bob'


@dataclass
class LidarEvent:
    """One sweep at ``stamp`` (s); ``load()`` returns ``[M, 5]`` x, y, z, intensity, ring in the LiDAR's frame."""

    stamp: float
    T_world_base: np.ndarray
    load: Callable[[], np.ndarray]


@dataclass
class SceneStats:
    """What one scene wrote: messages, events skipped as broken, and why."""

    messages: int = 0
    skipped: int = 0
    problems: list[str] = field(default_factory=list)


def _twist(prev: tuple[float, np.ndarray] | None, stamp: float, T: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Body-frame linear and angular velocity from the previous pose (zero for the first)."""
    if prev is None or stamp <= prev[0]:
        return np.zeros(3), np.zeros(3)
    dt = stamp - prev[0]
    delta = invert_transform(prev[1]) @ T
    q = matrix_to_quat(delta[:3, :3])
    angle = 2.0 * np.arctan2(np.linalg.norm(q[:3]), q[3])
    axis = q[:3] / np.linalg.norm(q[:3]) if np.linalg.norm(q[:3]) > 1e-12 else np.zeros(3)
    return delta[:3, 3] / dt, axis * angle / dt


def write_scene(writer: BagWriter, rig: CameraRig, events: Iterable[CameraEvent | LidarEvent], *,
                progress: str | None = None, total: int | None = None, depth: bool = False) -> SceneStats:
    """Write one scene's events (already in time order) with TF, odometry and camera_info (module docstring)."""
    from tqdm import tqdm

    if rig.lidar is None:
        raise ConfigError('the rig has no LiDAR mount; converters need it for /tf_static and /lidar/points')
    stats = SceneStats()
    before = sum(writer.counts.values())
    cams = {c.name: c for c in rig.cameras}
    origin: np.ndarray | None = None
    prev: tuple[float, np.ndarray] | None = None
    last_ns = None
    for ev in tqdm(events, total=total, desc=progress, unit='msg', disable=progress is None, leave=False):
        ns = stamp_ns(ev.stamp)
        try:
            payload = ev.load()
        except (ConfigError, OSError, ValueError) as exc:
            stats.skipped += 1
            stats.problems.append(str(exc))
            continue
        if origin is None:
            origin = invert_transform(ev.T_world_base)
            static = [transform_msg(ns, rig.base_frame, c.frame_id, c.T_base_cam) for c in rig.cameras]
            static.append(transform_msg(ns, rig.base_frame, rig.lidar.frame_id, rig.lidar.T_base_lidar))
            writer.write(topics.TF_STATIC_TOPIC, tf_msg(static), ns)
        if ns != last_ns:  # one odom / tf per distinct stamp
            T_odom_base = origin @ ev.T_world_base
            linear, angular = _twist(prev, ev.stamp, T_odom_base)
            writer.write(topics.TF_TOPIC, tf_msg([transform_msg(ns, topics.ODOM_FRAME, rig.base_frame,
                                                                T_odom_base)]), ns)
            writer.write(topics.ODOM_TOPIC, odometry_msg(ns, topics.ODOM_FRAME, rig.base_frame, T_odom_base,
                                                         linear, angular), ns)
            prev, last_ns = (ev.stamp, T_odom_base), ns
        if isinstance(ev, LidarEvent):
            writer.write(topics.LIDAR_TOPIC, pointcloud_msg(ns, rig.lidar.frame_id, payload), ns)
            continue
        cam = cams[ev.camera]
        if ev.compressed:
            data, fmt = payload
            writer.write(topics.compressed_topic(cam.name), compressed_msg(ns, cam.frame_id, data, fmt), ns)
        else:
            writer.write(topics.image_topic(cam.name), image_msg(ns, cam.frame_id, payload), ns)
        D = cam.distortion if ev.distortion is None else ev.distortion
        writer.write(topics.camera_info_topic(cam.name),
                     camera_info_msg(ns, cam.frame_id, cam.K if ev.K is None else ev.K, cam.width, cam.height,
                                     D, ev.distortion_model), ns)
        if depth and ev.depth is not None:
            gt = np.asarray(ev.depth(), dtype=np.float32).copy()
            gt[gt <= 0] = np.nan  # REP 118: NaN = no measurement
            writer.write(topics.gt_depth_topic(cam.name), image_msg(ns, cam.frame_id, gt, '32FC1'), ns)
    stats.messages = sum(writer.counts.values()) - before
    return stats
