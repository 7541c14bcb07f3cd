"""Depth health: each set's predicted depth against the LiDAR, as running per-camera statistics for /diagnostics.

For every camera of a set, the LiDAR sweep nearest in time (within ``max_lidar_age``) is moved from the LiDAR
stamp to the camera's shutter stamp with the ego motion between them (odometry poses ``T_odom_base`` in a
:class:`~surround_depth_train.geometry.transforms.TransformBuffer`; identity when no odometry covers the stamps),
projected into the camera with :func:`~surround_depth_train.geometry.lidar.points_to_depth`, and compared with
the prediction on the pixels the LiDAR hits:

    abs_rel = mean(|gt - pred| / gt)            (surround_depth_train.metrics.compute_depth_metrics)
    scale   = median(gt / pred)                 1.0 when the depth is metric; 1/1.3 when it is 30 % too far

Over the last ``window`` samples of a camera, ``abs_rel`` is the mean of the per-set values and ``scale`` their
median. A camera is WARN when ``|scale - 1| > scale_threshold`` (a camera knocked out of calibration, a model on
the wrong car) or ``abs_rel > abs_rel_threshold``; STALE when it has no sample newer than ``stale_after`` seconds
(no LiDAR, no odometry-free sweep near its stamps, or too few points in view); else OK.

Stamps are float seconds (``messages.stamp_to_sec``) on the node's clock, sim time under replay. Thread-safe: the
node may feed LiDAR and odometry from callbacks while its worker thread calls :meth:`DepthHealthMonitor.update`;
the projections run outside the lock.
"""
from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from surround_depth_train.data.rosbag.messages import InputError
from surround_depth_train.geometry.lidar import points_to_depth
from surround_depth_train.geometry.rig import Camera
from surround_depth_train.geometry.transforms import TransformBuffer, transform_points
from surround_depth_train.metrics import compute_depth_metrics

__all__ = ['DIAGNOSTIC_LEVELS', 'HealthSample', 'HealthStatus', 'DepthHealthMonitor']

#: ``diagnostic_msgs/DiagnosticStatus`` level of each status (the node sends ``bytes([level])``).
DIAGNOSTIC_LEVELS = {'OK': 0, 'WARN': 1, 'ERROR': 2, 'STALE': 3}
_ODOM, _BASE = 'odom', 'base_link'
#: Seconds time may run backwards before the monitor takes it for a restart (bag loop) and resets.
JUMP_BACK = 1.0


@dataclass(frozen=True)
class HealthSample:
    """One camera of one set compared with the LiDAR."""

    stamp: float  #: the camera's stamp (s)
    abs_rel: float
    scale: float  #: median(gt / pred)
    n_points: int  #: LiDAR pixels compared
    lidar_dt: float  #: camera stamp - LiDAR stamp (s)
    compensated: bool  #: ego motion between the two stamps taken from odometry


@dataclass(frozen=True)
class HealthStatus:
    """A camera's running verdict; ``level`` is a key of :data:`DIAGNOSTIC_LEVELS`."""

    level: str
    abs_rel: float | None
    scale: float | None
    n_points: int
    message: str
    samples: int = 0

    def key_values(self) -> list[tuple[str, str]]:
        """``diagnostic_msgs/KeyValue`` pairs (strings)."""
        fmt = (lambda v: 'n/a' if v is None else f'{v:.4f}')
        return [('abs_rel', fmt(self.abs_rel)), ('scale', fmt(self.scale)), ('lidar_points', str(self.n_points)),
                ('sets', str(self.samples))]


class DepthHealthMonitor:
    """Running depth-vs-LiDAR statistics per camera (module docstring).

    Args:
        camera_names: cameras to report even before their first sample (they start STALE).
        window: samples per camera the statistics run over.
        scale_threshold: WARN when ``|median scale - 1|`` exceeds it.
        abs_rel_threshold: WARN when the running abs_rel exceeds it (the paper's students reach 0.16-0.19 on
            nuScenes against LiDAR; 0.3 is a clear degradation, not one hard frame).
        max_lidar_age: largest ``|camera stamp - LiDAR stamp|`` (s) a sweep may be used for.
        stale_after: a camera whose newest sample is older than this (s, against the newest camera stamp seen)
            is STALE.
        min_points: fewer LiDAR pixels than this in a camera gives no sample.
        min_depth, max_depth: the LiDAR depths compared (m).
        odom_tolerance: how far (s) past the buffered odometry a lookup may reach (nearest pose used).
        odom_horizon: seconds of odometry kept behind the newest pose (older poses are forgotten; memory stays
            flat).
        lidar_capacity: LiDAR sweeps kept.

    Time that jumps back by more than ``JUMP_BACK`` seconds (a bag replayed in a loop) resets the monitor.
    """

    def __init__(self, *, camera_names: Sequence[str] = (), window: int = 20, scale_threshold: float = 0.15,
                 abs_rel_threshold: float = 0.3, max_lidar_age: float = 0.1, stale_after: float = 2.0,
                 min_points: int = 20, min_depth: float = 0.5, max_depth: float = 80.0, odom_tolerance: float = 0.05,
                 odom_horizon: float = 5.0, lidar_capacity: int = 4):
        if window < 1 or odom_horizon <= 0 or lidar_capacity < 1:
            raise ValueError('window >= 1, odom_horizon > 0 and lidar_capacity >= 1 are required')
        self.window = int(window)
        self.scale_threshold = float(scale_threshold)
        self.abs_rel_threshold = float(abs_rel_threshold)
        self.max_lidar_age = float(max_lidar_age)
        self.stale_after = float(stale_after)
        self.min_points = int(min_points)
        self.min_depth = float(min_depth)
        self.max_depth = float(max_depth)
        self.odom_tolerance = float(odom_tolerance)
        self.odom_horizon = float(odom_horizon)
        self._lock = threading.Lock()
        self._lidar: deque[tuple[float, np.ndarray]] = deque(maxlen=int(lidar_capacity))
        self._camera_names = list(camera_names)
        self.reset()

    def reset(self) -> None:
        """Forget every sample, sweep and pose (done by itself when time jumps back, e.g. a bag loop)."""
        with self._lock:
            self._reset()

    def _reset(self) -> None:
        self._lidar.clear()
        self._buffer = TransformBuffer(tolerance=self.odom_tolerance)
        self._samples: dict[str, deque[HealthSample]] = {n: deque(maxlen=self.window) for n in self._camera_names}
        self._reason: dict[str, str] = {n: 'no set compared with LiDAR yet' for n in self._camera_names}
        self._latest_stamp: float | None = None  # newest camera stamp: what staleness is measured against
        self._newest_time: float | None = None  # newest stamp of any input: what a jump back is measured against

    def _see_time(self, t: float) -> None:
        """Track the newest stamp; reset when time jumps back (under the lock)."""
        if self._newest_time is not None and t < self._newest_time - JUMP_BACK:
            self._reset()
        if self._newest_time is None or t > self._newest_time:
            self._newest_time = t

    @property
    def odometry_range(self) -> tuple[float, float] | None:
        """``(first, last)`` stamp of the odometry kept, None when there is none."""
        with self._lock:
            try:
                return self._buffer.time_range(_ODOM, _BASE)
            except LookupError:
                return None

    def add_odometry(self, stamp: float, T_odom_base: np.ndarray) -> None:
        """One ego pose (``nav_msgs/Odometry``'s ``pose.pose`` as 4x4, see ``messages.odometry_to_matrix``)."""
        T = np.asarray(T_odom_base, dtype=np.float64)
        with self._lock:
            self._see_time(float(stamp))
            try:
                self._buffer.set_transform(_ODOM, _BASE, float(stamp), T)
            except ValueError:
                raise InputError(f'odometry at t={stamp:.6f} s is not a rigid 4x4 pose; publish a valid pose with '
                                 f'a unit quaternion') from None
            first, last = self._buffer.time_range(_ODOM, _BASE)
            if last - first > 2 * self.odom_horizon:  # trim in batches: forget_before is linear in the poses
                self._buffer.forget_before(last - self.odom_horizon)

    def add_lidar(self, stamp: float, points: np.ndarray, T_base_lidar: np.ndarray | None = None) -> None:
        """One LiDAR sweep: ``points [M, >=3]`` in the LiDAR frame, ``T_base_lidar`` its mount (None = identity,
        points already in base_link)."""
        pts = np.asarray(points, dtype=np.float64)
        if pts.ndim != 2 or pts.shape[1] < 3:
            raise InputError(f'LiDAR sweep at t={stamp:.6f} s: expected points [M, 3], got shape {pts.shape}')
        pts = pts[:, :3]
        pts = pts[np.all(np.isfinite(pts), axis=1)]
        if T_base_lidar is not None:
            pts = transform_points(np.asarray(T_base_lidar, dtype=np.float64), pts)
        with self._lock:
            self._see_time(float(stamp))
            self._lidar.append((float(stamp), pts.astype(np.float32)))

    def update(self, camera_stamps: Sequence[float], depths: Sequence[np.ndarray], cameras: Sequence[Camera],
               masks: Sequence[np.ndarray | None] | None = None) -> dict[str, HealthSample | None]:
        """Compare one set (the cameras present in it) with the LiDAR and add the samples.

        Args:
            camera_stamps: each camera's stamp (s).
            depths: each camera's predicted depth ``[H, W]`` (metres; NaN = invalid).
            cameras: each camera with the ``K`` and size of its depth map and its ``T_base_cam``.
            masks: optional per camera ``[H, W]`` bool, True = compare (e.g. not the ego body).

        Returns:
            ``{camera name: sample}``, None for a camera that could not be compared (the reason goes to
            :meth:`summary`).
        """
        if not len(camera_stamps) == len(depths) == len(cameras):
            raise ValueError(f'got {len(camera_stamps)} stamps, {len(depths)} depth maps and {len(cameras)} cameras')
        for i, (cam, depth) in enumerate(zip(cameras, depths)):
            if np.shape(depth) != (cam.height, cam.width):
                raise InputError(f'depth of {cam.name} has shape {np.shape(depth)} but its camera is '
                                 f'{cam.width} x {cam.height}; pass the camera that describes the depth map')
            if masks is not None and masks[i] is not None and np.shape(masks[i]) != np.shape(depth):
                raise InputError(f'mask of {cam.name} has shape {np.shape(masks[i])}, its depth {np.shape(depth)}; '
                                 f'resize the mask to the depth map')
        with self._lock:
            for t in camera_stamps:
                self._see_time(float(t))
            plans = [self._plan(float(t)) for t in camera_stamps]
        results: dict[str, HealthSample | None] = {}
        reasons: dict[str, str] = {}
        for i, (t, depth, cam, plan) in enumerate(zip(camera_stamps, depths, cameras, plans)):
            if isinstance(plan, str):
                results[cam.name], reasons[cam.name] = None, plan
                continue
            t_lidar, points, T_corr = plan
            gt_map = points_to_depth(points, cam, self.min_depth, self.max_depth, T_correction=T_corr)
            # only the pixels a LiDAR point hit take part: compare there, not over the whole image
            hit = np.flatnonzero(gt_map)
            if masks is not None and masks[i] is not None:
                hit = hit[np.asarray(masks[i], bool).reshape(-1)[hit]]
            gt = gt_map.reshape(-1)[hit].astype(np.float64)
            pred = np.asarray(depth).reshape(-1)[hit].astype(np.float64)
            metrics = compute_depth_metrics(pred, gt, self.min_depth, self.max_depth)
            n = 0 if metrics is None else int(metrics['count'])
            if n < self.min_points:
                results[cam.name] = None
                reasons[cam.name] = (f'only {n} LiDAR points fell on valid depth (at least {self.min_points} '
                                     f'needed)')
                continue
            valid = (gt > self.min_depth) & (gt < self.max_depth) & np.isfinite(pred) & (pred > 0)
            scale = float(np.median(gt[valid] / pred[valid])) if valid.any() else float('nan')
            results[cam.name] = HealthSample(stamp=float(t), abs_rel=float(metrics['abs_rel']), scale=scale,
                                             n_points=n, lidar_dt=float(t) - t_lidar, compensated=T_corr is not None)
        with self._lock:
            for name, sample in results.items():
                self._samples.setdefault(name, deque(maxlen=self.window))
                if sample is None:
                    self._reason[name] = reasons[name]
                else:
                    self._samples[name].append(sample)
                    self._reason.pop(name, None)
            newest = max(float(t) for t in camera_stamps) if len(camera_stamps) else None
            if newest is not None and (self._latest_stamp is None or newest > self._latest_stamp):
                self._latest_stamp = newest
        return results

    def _plan(self, t_cam: float) -> tuple[float, np.ndarray, np.ndarray | None] | str:
        """The sweep for a camera stamp and its motion compensation (under the lock), or why there is none."""
        if not self._lidar:
            return 'no LiDAR sweep received'
        t_lidar, points = min(self._lidar, key=lambda s: abs(s[0] - t_cam))
        if abs(t_lidar - t_cam) > self.max_lidar_age:
            return (f'no LiDAR sweep within {self.max_lidar_age:.3f} s of the camera stamp (nearest '
                    f'{t_cam - t_lidar:+.3f} s)')
        try:
            T = self._buffer.motion_compensation(_ODOM, _BASE, t_lidar, t_cam)
        except LookupError:  # no odometry, or none near these stamps: compare uncompensated
            T = None
        return t_lidar, points, T

    def summary(self, now: float | None = None) -> dict[str, HealthStatus]:
        """Every camera's running status.

        Args:
            now: the node's clock (s); samples older than ``stale_after`` before it (or before the newest camera
                stamp seen, whichever is later) no longer count, so every camera goes STALE when sets stop coming.
        """
        with self._lock:
            latest = self._latest_stamp
            if now is not None:
                latest = float(now) if latest is None else max(latest, float(now))
            return {name: self._status(name, samples, latest) for name, samples in self._samples.items()}

    def _status(self, name: str, samples: deque[HealthSample], latest: float | None) -> HealthStatus:
        fresh = [s for s in samples if latest is None or latest - s.stamp <= self.stale_after]
        if not fresh:
            why = self._reason.get(name, 'no recent LiDAR comparison')
            age = '' if not samples or latest is None else f'; last compared {latest - samples[-1].stamp:.1f} s ago'
            return HealthStatus('STALE', None, None, 0, f'{why}{age}', 0)
        abs_rel = float(np.mean([s.abs_rel for s in fresh]))
        scale = float(np.median([s.scale for s in fresh]))
        n_points = int(sum(s.n_points for s in fresh))
        problems = []
        if not abs(scale - 1.0) <= self.scale_threshold:
            problems.append(f'depth scale off: median LiDAR/depth {scale:.3f} (allowed 1 +- {self.scale_threshold}); '
                            f'check the camera calibration and that the model fits this car')
        if not abs_rel <= self.abs_rel_threshold:
            problems.append(f'abs_rel {abs_rel:.3f} above {self.abs_rel_threshold}')
        uncompensated = ''
        if not all(s.compensated for s in fresh):
            uncompensated = ' (some sets without odometry: ego motion not compensated)'
        if problems:
            return HealthStatus('WARN', abs_rel, scale, n_points, '; '.join(problems) + uncompensated, len(fresh))
        return HealthStatus('OK', abs_rel, scale, n_points,
                            f'depth agrees with LiDAR: abs_rel {abs_rel:.3f}, scale {scale:.3f} over {len(fresh)} '
                            f'set(s){uncompensated}', len(fresh))
