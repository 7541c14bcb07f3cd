"""LiDAR points to per-camera sparse depth (z-buffered), and depth maps back to one point cloud.

Depth is the z coordinate in the camera optical frame (not the Euclidean range). A point lands on the pixel whose
centre is nearest to its projection (OpenCV convention: centres at integers, so ``round(u), round(v)``). When
several points land on one pixel the nearest wins (z-buffer), whatever their order in the sweep.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from surround_depth_train.geometry.camera import project, unproject_depth
from surround_depth_train.geometry.rig import Camera, CameraRig
from surround_depth_train.geometry.transforms import invert_transform, transform_points

__all__ = ['points_to_depth', 'rig_points_to_depth', 'depth_to_points', 'rig_depth_to_cloud']


def points_to_depth(points_base: np.ndarray, camera: Camera, min_depth: float = 0.0,
                    max_depth: float | None = None, T_correction: np.ndarray | None = None) -> np.ndarray:
    """Project base-frame points into one camera as a sparse depth map.

    Args:
        points_base: ``[M, 3]`` (extra columns such as intensity are ignored), in the rig's base frame.
        camera: the camera (its ``K``, size and ``T_base_cam``).
        min_depth: points with depth ``<= min_depth`` are dropped (``0`` drops points behind the camera).
        max_depth: points with depth ``> max_depth`` are dropped.
        T_correction: optional 4x4 applied to the points first, e.g. ego-motion compensation
            ``base(t_cam) <- base(t_lidar)``.

    Returns:
        ``[H, W]`` float32 depth in metres, ``0`` where no point landed.
    """
    pts = np.asarray(points_base, dtype=np.float64)[:, :3]
    if T_correction is not None:
        pts = transform_points(T_correction, pts)
    pts_cam = transform_points(invert_transform(camera.T_base_cam), pts)
    z = pts_cam[:, 2]
    keep = z > max(min_depth, 0.0)
    if max_depth is not None:
        keep &= z <= max_depth
    uv, z = project(pts_cam[keep], camera.K)
    u = np.round(uv[:, 0]).astype(np.int64)
    v = np.round(uv[:, 1]).astype(np.int64)
    inside = (u >= 0) & (u < camera.width) & (v >= 0) & (v < camera.height)
    u, v, z = u[inside], v[inside], z[inside]
    depth = np.zeros((camera.height, camera.width), dtype=np.float32)
    if z.size:
        flat = v * camera.width + u
        order = np.lexsort((z, flat))  # by pixel, then nearest first
        flat, z = flat[order], z[order]
        first = np.ones(flat.size, dtype=bool)
        first[1:] = flat[1:] != flat[:-1]
        depth.reshape(-1)[flat[first]] = z[first]
    return depth


def rig_points_to_depth(points_base: np.ndarray, rig: CameraRig, min_depth: float = 0.0,
                        max_depth: float | None = None,
                        T_corrections: list[np.ndarray] | None = None) -> list[np.ndarray]:
    """:func:`points_to_depth` for every camera of the rig (one correction per camera, or none)."""
    return [points_to_depth(points_base, cam, min_depth, max_depth,
                            None if T_corrections is None else T_corrections[i])
            for i, cam in enumerate(rig.cameras)]


def depth_to_points(depth: np.ndarray, camera: Camera, mask: np.ndarray | None = None,
                    stride: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Lift a depth map (at the camera's resolution) to base-frame points.

    Args:
        depth: ``[H, W]`` metres; non-finite or ``<= 0`` values are invalid.
        mask: optional ``[H, W]`` bool, True = keep.
        stride: keep every ``stride``-th pixel in both directions (a lighter cloud).

    Returns:
        ``points [M, 3]`` float32 in the base frame and their pixel indices ``[M, 2]`` as ``(v, u)``.
    """
    depth = np.asarray(depth)
    if depth.shape != (camera.height, camera.width):
        raise ValueError(f'depth of {camera.name!r} has shape {depth.shape}, expected '
                         f'{(camera.height, camera.width)}; resize the camera with Camera.resized() first')
    valid = np.isfinite(depth) & (depth > 0)
    if mask is not None:
        valid &= np.asarray(mask, dtype=bool)
    if stride > 1:
        sub = np.zeros_like(valid)
        sub[::stride, ::stride] = True
        valid &= sub
    pts_cam = unproject_depth(depth.astype(np.float64), camera.K)[valid]
    pts = transform_points(camera.T_base_cam, pts_cam).astype(np.float32)
    return pts, np.argwhere(valid)


def rig_depth_to_cloud(depths: list[np.ndarray] | np.ndarray, rig: CameraRig,
                       masks: list[np.ndarray] | None = None, stride: int = 1,
                       colors: list[np.ndarray] | None = None,
                       values: Mapping[str, Sequence[np.ndarray]] | None = None) -> dict[str, np.ndarray]:
    """Fuse the depth maps of all cameras into one base-frame cloud.

    Args:
        values: optional per-pixel maps to carry along, ``{key: [H, W, ...] per camera}`` (e.g. confidence);
            each point gets its pixel's value under ``key``, in the map's dtype.

    Returns:
        ``{'points': [M, 3] float32, 'camera': [M] int (index in the rig)}`` plus ``'rgb': [M, 3] uint8`` when
        ``colors`` (``[H, W, 3]`` uint8 per camera) are given, plus one ``[M, ...]`` array per key of ``values``.
    """
    if len(depths) != len(rig):
        raise ValueError(f'got {len(depths)} depth maps for a rig of {len(rig)} cameras {rig.names}')
    values = dict(values or {})
    pts, cams, rgb = [], [], []
    gathered: dict[str, list[np.ndarray]] = {key: [] for key in values}
    for i, cam in enumerate(rig.cameras):
        p, pix = depth_to_points(depths[i], cam, None if masks is None else masks[i], stride)
        pts.append(p)
        cams.append(np.full(len(p), i, dtype=np.int32))
        if colors is not None:
            rgb.append(np.asarray(colors[i])[pix[:, 0], pix[:, 1]].astype(np.uint8))
        for key, maps in values.items():
            gathered[key].append(np.asarray(maps[i])[pix[:, 0], pix[:, 1]])
    out = {'points': np.concatenate(pts) if pts else np.zeros((0, 3), np.float32),
           'camera': np.concatenate(cams) if cams else np.zeros(0, np.int32)}
    if colors is not None:
        out['rgb'] = np.concatenate(rgb) if rgb else np.zeros((0, 3), np.uint8)
    for key, parts in gathered.items():
        out[key] = np.concatenate(parts) if parts else np.zeros(0, np.float32)
    return out
