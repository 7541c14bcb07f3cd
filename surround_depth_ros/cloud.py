"""The node's fused point cloud: the rig's depth maps lifted by ``rig_depth_to_cloud``, then filtered.

Order of the filters, cheapest first: ego-body masks, the confidence threshold and the pixel stride act on the
depth maps before lifting (fewer points to lift); the range limits act on the lifted points (distance from the
base_link origin, like a LiDAR's range); the voxel grid comes last and keeps one point per occupied voxel (the
most confident one when confidences are given, else the first in camera order), deterministic and numpy only.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from surround_depth_train.geometry.lidar import rig_depth_to_cloud
from surround_depth_train.geometry.rig import CameraRig

__all__ = ['cloud_filter', 'voxel_downsample']


def voxel_downsample(points: np.ndarray, voxel_size: float, priority: np.ndarray | None = None) -> np.ndarray:
    """Indices (ascending) of one point per occupied voxel of a grid of ``voxel_size`` metres aligned at 0.

    Args:
        priority: optional ``[M]``; in each voxel the point with the highest priority is kept (ties: the first).
    """
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    if voxel_size <= 0 or len(pts) == 0:
        return np.arange(len(pts))
    cells = np.floor(pts / voxel_size).astype(np.int64)
    cells -= cells.min(axis=0)
    dims = cells.max(axis=0) + 1
    key = (cells[:, 0] * dims[1] + cells[:, 1]) * dims[2] + cells[:, 2]
    if priority is None:
        _, first = np.unique(key, return_index=True)
        return np.sort(first)
    order = np.lexsort((-np.asarray(priority, dtype=np.float64), key))  # by voxel, best first; stable on ties
    sorted_key = key[order]
    head = np.ones(len(order), dtype=bool)
    head[1:] = sorted_key[1:] != sorted_key[:-1]
    return np.sort(order[head])


def cloud_filter(depths: Sequence[np.ndarray | None], rig: CameraRig, *,
                 masks: Sequence[np.ndarray | None] | None = None,
                 colors: Sequence[np.ndarray | None] | None = None,
                 confidences: Sequence[np.ndarray | None] | None = None, min_confidence: float = 0.0,
                 min_range: float = 0.0, max_range: float = math.inf, voxel_size: float = 0.0,
                 stride: int = 1) -> dict[str, np.ndarray]:
    """Fuse one set's depth maps into one filtered base_link cloud.

    Args:
        depths: one ``[H, W]`` map per rig camera in rig order, None for a camera missing from the set. The rig's
            cameras must describe these maps (``K`` and size of the rectified image the depth is for).
        masks: per camera ``[H, W]`` bool, True = keep (the ego-body mask, the undistorter's valid area), or None.
        colors: per camera ``[H, W, 3]`` uint8 RGB, to give each point its colour; all None or all given.
        confidences: per camera ``[H, W]`` float in ``[0, 1]``; pixels below ``min_confidence`` are dropped.
        min_range, max_range: distance (m) from the base_link origin a point must lie within.
        voxel_size: edge (m) of the down-sampling grid; 0 keeps every point.
        stride: lift every ``stride``-th pixel in both directions.

    Returns:
        ``{'points': [M, 3] float32, 'camera': [M] int32 (index in ``rig``)}`` plus ``'rgb' [M, 3] uint8`` and
        ``'confidence' [M] float32`` when given, ready for :func:`surround_depth_ros.messages.pack_cloud`.
    """
    if len(depths) != len(rig):
        raise ValueError(f'got {len(depths)} depth maps for a rig of {len(rig)} cameras {rig.names}; pass None '
                         f'for a missing camera')
    present = [i for i, d in enumerate(depths) if d is not None]
    sub = CameraRig([rig.cameras[i] for i in present], rig.base_frame)

    def pick(maps: Sequence[np.ndarray | None] | None, what: str) -> list[np.ndarray] | None:
        if maps is None:
            return None
        if len(maps) != len(rig):
            raise ValueError(f'got {len(maps)} {what} for a rig of {len(rig)} cameras')
        chosen = [maps[i] for i in present]
        if all(m is None for m in chosen):
            return None
        if any(m is None for m in chosen):
            raise ValueError(f'{what}: give one per present camera or none')
        return chosen

    sub_masks = [None if masks is None else masks[i] for i in present]
    conf = pick(confidences, 'confidence maps')
    if conf is not None and min_confidence > 0:
        sub_masks = [_confident(m, c, min_confidence) for m, c in zip(sub_masks, conf)]
    keep_masks = None
    if any(m is not None for m in sub_masks):
        keep_masks = [np.ones((cam.height, cam.width), bool) if m is None else np.asarray(m, bool)
                      for m, cam in zip(sub_masks, sub.cameras)]
    cloud = rig_depth_to_cloud([depths[i] for i in present], sub, keep_masks, stride=max(1, int(stride)),
                               colors=pick(colors, 'colour images'),
                               values=None if conf is None else {'confidence': [np.asarray(c, np.float32)
                                                                                for c in conf]})
    cloud['camera'] = np.asarray(present, dtype=np.int32)[cloud['camera']]  # sub-rig index -> rig index
    if min_range > 0 or math.isfinite(max_range):
        dist = np.linalg.norm(cloud['points'], axis=1)
        keep = (dist >= min_range) & (dist <= max_range)
        cloud = {k: v[keep] for k, v in cloud.items()}
    if voxel_size > 0:
        idx = voxel_downsample(cloud['points'], voxel_size, cloud.get('confidence'))
        cloud = {k: v[idx] for k, v in cloud.items()}
    return cloud


def _confident(mask: np.ndarray | None, confidence: np.ndarray, threshold: float) -> np.ndarray:
    keep = np.asarray(confidence) >= threshold  # NaN compares False: dropped
    return keep if mask is None else keep & np.asarray(mask, bool)
