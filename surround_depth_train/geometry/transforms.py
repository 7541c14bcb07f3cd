"""Rigid transforms, quaternions (ROS order x, y, z, w) and a time-indexed transform buffer.

Conventions:
    ``T_a_b`` is a 4x4 homogeneous matrix mapping points expressed in frame ``b`` into frame ``a``
    (``p_a = T_a_b @ p_b``), i.e. the pose of ``b`` in ``a``. Quaternions are ``[x, y, z, w]`` as in ROS messages.

The buffer stands in for tf2 (which cannot be installed here) in the parts that need it offline: ego-motion
compensation between a LiDAR sweep and each camera's shutter time.
"""
from __future__ import annotations

import bisect
from dataclasses import dataclass, field

import numpy as np

__all__ = [
    'ExtrapolationError', 'TransformBuffer', 'make_transform', 'invert_transform', 'quat_to_matrix',
    'matrix_to_quat', 'slerp', 'is_rotation_matrix', 'transform_points', 'interpolate_transform',
]


def make_transform(rotation: np.ndarray, translation: np.ndarray) -> np.ndarray:
    """4x4 homogeneous transform from a 3x3 rotation (or quaternion [x,y,z,w]) and a translation."""
    rotation = np.asarray(rotation, dtype=np.float64)
    if rotation.shape == (4,):
        rotation = quat_to_matrix(rotation)
    T = np.eye(4)
    T[:3, :3] = rotation
    T[:3, 3] = np.asarray(translation, dtype=np.float64).reshape(3)
    return T


def invert_transform(T: np.ndarray) -> np.ndarray:
    """Inverse of a rigid transform: ``[R t]^-1 = [R^T, -R^T t]`` (batched over leading dims)."""
    T = np.asarray(T, dtype=np.float64)
    R = T[..., :3, :3]
    t = T[..., :3, 3:]
    out = np.zeros_like(T)
    Rt = np.swapaxes(R, -1, -2)
    out[..., :3, :3] = Rt
    out[..., :3, 3:] = -Rt @ t
    out[..., 3, 3] = 1.0
    return out


def transform_points(T: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Apply ``T`` (4x4) to points ``[..., 3]``: ``p' = R p + t``."""
    points = np.asarray(points)
    return points @ T[:3, :3].T.astype(points.dtype, copy=False) + T[:3, 3].astype(points.dtype, copy=False)


def is_rotation_matrix(R: np.ndarray, tol: float = 1e-4) -> bool:
    """True when ``R`` is 3x3, orthonormal (``R^T R = I`` within ``tol``) and has determinant +1."""
    R = np.asarray(R, dtype=np.float64)
    return (R.shape == (3, 3) and bool(np.all(np.isfinite(R)))
            and np.allclose(R.T @ R, np.eye(3), atol=tol) and abs(np.linalg.det(R) - 1.0) < tol)


def quat_to_matrix(q: np.ndarray) -> np.ndarray:
    """Rotation matrix of a unit quaternion ``[x, y, z, w]`` (normalised first)."""
    x, y, z, w = np.asarray(q, dtype=np.float64) / np.linalg.norm(q)
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ])


def matrix_to_quat(R: np.ndarray) -> np.ndarray:
    """Unit quaternion ``[x, y, z, w]`` with ``w >= 0`` of a rotation matrix (Shepperd's method)."""
    R = np.asarray(R, dtype=np.float64)
    tr = np.trace(R)
    if tr > 0:
        s = 2.0 * np.sqrt(tr + 1.0)
        q = [(R[2, 1] - R[1, 2]) / s, (R[0, 2] - R[2, 0]) / s, (R[1, 0] - R[0, 1]) / s, 0.25 * s]
    elif R[0, 0] > R[1, 1] and R[0, 0] > R[2, 2]:
        s = 2.0 * np.sqrt(1.0 + R[0, 0] - R[1, 1] - R[2, 2])
        q = [0.25 * s, (R[0, 1] + R[1, 0]) / s, (R[0, 2] + R[2, 0]) / s, (R[2, 1] - R[1, 2]) / s]
    elif R[1, 1] > R[2, 2]:
        s = 2.0 * np.sqrt(1.0 + R[1, 1] - R[0, 0] - R[2, 2])
        q = [(R[0, 1] + R[1, 0]) / s, 0.25 * s, (R[1, 2] + R[2, 1]) / s, (R[0, 2] - R[2, 0]) / s]
    else:
        s = 2.0 * np.sqrt(1.0 + R[2, 2] - R[0, 0] - R[1, 1])
        q = [(R[0, 2] + R[2, 0]) / s, (R[1, 2] + R[2, 1]) / s, 0.25 * s, (R[1, 0] - R[0, 1]) / s]
    q = np.array(q)
    q /= np.linalg.norm(q)
    return -q if q[3] < 0 else q


def slerp(q0: np.ndarray, q1: np.ndarray, t: float) -> np.ndarray:
    """Spherical linear interpolation between unit quaternions, along the shorter arc.

    ``slerp(q0, q1, t) = sin((1-t) theta)/sin(theta) q0 + sin(t theta)/sin(theta) q1`` with ``cos(theta) = q0.q1``
    (``q1`` negated first when the dot product is negative); falls back to normalised lerp for tiny angles.
    """
    q0 = np.asarray(q0, dtype=np.float64) / np.linalg.norm(q0)
    q1 = np.asarray(q1, dtype=np.float64) / np.linalg.norm(q1)
    dot = float(np.dot(q0, q1))
    if dot < 0:
        q1, dot = -q1, -dot
    if dot > 0.9995:
        q = q0 + t * (q1 - q0)
        return q / np.linalg.norm(q)
    theta = np.arccos(np.clip(dot, -1.0, 1.0))
    return (np.sin((1 - t) * theta) * q0 + np.sin(t * theta) * q1) / np.sin(theta)


def interpolate_transform(T0: np.ndarray, T1: np.ndarray, t: float) -> np.ndarray:
    """Pose between ``T0`` (t=0) and ``T1`` (t=1): linear translation, slerp rotation."""
    q = slerp(matrix_to_quat(T0[:3, :3]), matrix_to_quat(T1[:3, :3]), t)
    return make_transform(quat_to_matrix(q), (1 - t) * T0[:3, 3] + t * T1[:3, 3])


class ExtrapolationError(LookupError):
    """A lookup asked for a time outside the buffered range by more than the tolerance."""


@dataclass
class _Track:
    stamps: list[float] = field(default_factory=list)
    poses: list[np.ndarray] = field(default_factory=list)


class TransformBuffer:
    """Stamped transforms ``parent <- child`` with interpolated lookup.

    Args:
        tolerance: how far (seconds) outside the buffered time range a lookup may ask; such lookups return the
            nearest stored pose. Beyond it, :class:`ExtrapolationError` is raised.
    """

    def __init__(self, tolerance: float = 0.0):
        self.tolerance = float(tolerance)
        self._tracks: dict[tuple[str, str], _Track] = {}
        self._static: dict[tuple[str, str], np.ndarray] = {}

    def set_transform(self, parent: str, child: str, stamp: float, T_parent_child: np.ndarray) -> None:
        """Store the pose of ``child`` in ``parent`` at ``stamp`` (seconds). Stamps may arrive out of order."""
        T = np.asarray(T_parent_child, dtype=np.float64)
        if T.shape != (4, 4) or not is_rotation_matrix(T[:3, :3]):
            raise ValueError(f'transform {parent} <- {child} at {stamp}: expected a rigid 4x4 matrix')
        track = self._tracks.setdefault((parent, child), _Track())
        i = bisect.bisect_left(track.stamps, stamp)
        if i < len(track.stamps) and track.stamps[i] == stamp:
            track.poses[i] = T
        else:
            track.stamps.insert(i, float(stamp))
            track.poses.insert(i, T)

    def set_static(self, parent: str, child: str, T_parent_child: np.ndarray) -> None:
        """Store a time-independent transform (e.g. a sensor mount)."""
        self._static[(parent, child)] = np.asarray(T_parent_child, dtype=np.float64)

    def forget_before(self, stamp: float) -> None:
        """Drop stamped poses older than ``stamp``, keeping the last one before it (a long-running node's buffer
        stays bounded while lookups at ``stamp`` still interpolate)."""
        for track in self._tracks.values():
            i = max(0, bisect.bisect_left(track.stamps, stamp) - 1)
            del track.stamps[:i], track.poses[:i]

    def time_range(self, parent: str, child: str) -> tuple[float, float]:
        track = self._tracks.get((parent, child))
        if not track or not track.stamps:
            raise LookupError(f'no transform {parent} <- {child} in the buffer')
        return track.stamps[0], track.stamps[-1]

    def lookup(self, parent: str, child: str, stamp: float) -> np.ndarray:
        """Pose of ``child`` in ``parent`` at ``stamp``; the inverse pair is used when only it is stored."""
        if (parent, child) in self._static:
            return self._static[(parent, child)].copy()
        if (child, parent) in self._static:
            return invert_transform(self._static[(child, parent)])
        if (parent, child) not in self._tracks and (child, parent) in self._tracks:
            return invert_transform(self.lookup(child, parent, stamp))
        lo, hi = self.time_range(parent, child)
        track = self._tracks[(parent, child)]
        if stamp < lo - self.tolerance or stamp > hi + self.tolerance:
            raise ExtrapolationError(
                f'transform {parent} <- {child} requested at t={stamp:.6f} s, outside the buffered range '
                f'[{lo:.6f}, {hi:.6f}] s by more than the tolerance {self.tolerance:.3f} s; '
                f'add poses covering that time or raise the tolerance')
        if stamp <= lo:
            return track.poses[0].copy()
        if stamp >= hi:
            return track.poses[-1].copy()
        i = bisect.bisect_right(track.stamps, stamp)
        t0, t1 = track.stamps[i - 1], track.stamps[i]
        return interpolate_transform(track.poses[i - 1], track.poses[i], (stamp - t0) / (t1 - t0))

    def motion_compensation(self, world: str, base: str, t_from: float, t_to: float) -> np.ndarray:
        """``T_base(t_to) <- base(t_from)``: moves points measured in the base frame at ``t_from`` into the base
        frame at ``t_to`` through the world frame (ego-motion compensation)."""
        return invert_transform(self.lookup(world, base, t_to)) @ self.lookup(world, base, t_from)
