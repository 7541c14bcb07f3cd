"""Depth images against a recorded LiDAR: the one scoring used by the offline and the live bag evaluators (no rclpy).

For a depth image of camera ``c`` stamped ``t_cam`` (its ``K`` and size, the rig's mount ``T_base_cam``):

1. the sweep is the newest LiDAR sweep stamped at or before ``t_cam`` (at most ``max_lidar_gap`` older), in
   base_link at its own stamp ``t_lidar``;
2. the points move into base_link at ``t_cam`` by the ego motion ``base(t_cam) <- odom <- base(t_lidar)``
   (:meth:`TransformBuffer.motion_compensation`), then project with the z-buffer of
   :func:`~surround_depth_train.geometry.lidar.points_to_depth` into the depth image's geometry;
3. the seven metrics of :mod:`surround_depth_train.metrics` on ``min_depth < gt < max_depth``, outside the camera's
   ego-body mask, averaged per camera and then over cameras (:class:`MetricsAccumulator`), exactly as the
   evaluation command does.

A depth image whose sweep or ego motion is not there is counted under ``unscored`` with the reason, never scored
against the wrong data. Each scored image is kept as a record (camera, stamps, metrics), so two runs over the same
bag (offline and live) can be compared frame by frame.
"""
from __future__ import annotations

import os
from typing import Any, Mapping

import numpy as np

from surround_depth_train.data.rosbag.frames import load_mask
from surround_depth_train.data.rosbag.reader import LidarSweeps
from surround_depth_train.geometry.lidar import points_to_depth
from surround_depth_train.geometry.rig import Camera
from surround_depth_train.geometry.transforms import TransformBuffer
from surround_depth_train.metrics import MetricsAccumulator, compute_depth_metrics

__all__ = ['DepthScorer']


class DepthScorer:
    """Scores depth images against LiDAR sweeps (module docstring).

    Args:
        cameras: camera names in rig order (the report's order).
        min_depth, max_depth: the GT range (and the clamp of the prediction), as the dataset evaluation's.
        masks: per camera an ego-body mask (a path, or a bool array; True = keep), resized nearest to each image.
        odom_frame, base_frame: the ego-motion lookup.
        max_lidar_gap: seconds a sweep may precede the image.
        sweeps, transforms: shared stores (the offline evaluator fills them from the bag first; the live one as
            messages arrive).
    """

    def __init__(self, cameras: list[str], *, min_depth: float = 0.5, max_depth: float = 80.0,
                 masks: Mapping[str, str | os.PathLike | np.ndarray] | None = None, odom_frame: str = 'odom',
                 base_frame: str = 'base_link', max_lidar_gap: float = 0.15, sweeps: LidarSweeps | None = None,
                 transforms: TransformBuffer | None = None):
        self.cameras = list(cameras)
        self.min_depth, self.max_depth = float(min_depth), float(max_depth)
        self.masks = dict(masks or {})
        self.odom_frame, self.base_frame = odom_frame, base_frame
        self.sweeps = sweeps if sweeps is not None else LidarSweeps(max_lidar_gap)
        self.sweeps.max_gap = float(max_lidar_gap)
        self.transforms = transforms if transforms is not None else TransformBuffer(tolerance=0.05)
        self.accumulator = MetricsAccumulator(self.cameras)
        self.records: list[dict[str, Any]] = []
        self.unscored: dict[str, int] = {}
        self.nonfinite = {c: {'pixels': 0, 'images': 0, 'gt_pixels': 0} for c in self.cameras}
        self._mask_cache: dict[tuple[str, int, int], np.ndarray] = {}

    def mask(self, camera: str, height: int, width: int) -> np.ndarray | None:
        source = self.masks.get(camera)
        if source is None or (isinstance(source, str) and not source):
            return None
        key = (camera, height, width)
        if key not in self._mask_cache:
            if isinstance(source, np.ndarray):
                import cv2

                m = source.astype(np.uint8)
                if m.shape != (height, width):
                    m = cv2.resize(m, (width, height), interpolation=cv2.INTER_NEAREST)
                self._mask_cache[key] = m > 0
            else:
                self._mask_cache[key] = load_mask(source, width, height)
        return self._mask_cache[key]

    def _skip(self, reason: str) -> None:
        self.unscored[reason] = self.unscored.get(reason, 0) + 1

    def ground_truth(self, camera: Camera, stamp: float) -> tuple[np.ndarray, float] | str:
        """``(gt depth [H, W] (0 = none), lidar stamp)`` for an image of ``camera`` at ``stamp``, or the reason
        there is none."""
        found = self.sweeps.before(stamp)
        if found is None:
            return f'no LiDAR sweep within {self.sweeps.max_gap:g} s before the image'
        t_lidar, points = found
        try:
            T = self.transforms.motion_compensation(self.odom_frame, self.base_frame, t_lidar, stamp)
        except LookupError:
            return 'no ego motion at the image or sweep stamp'
        return points_to_depth(points, camera, min_depth=0.0, max_depth=self.max_depth, T_correction=T), t_lidar

    def score(self, camera: Camera, stamp: float, depth: np.ndarray) -> dict[str, Any] | None:
        """Score one depth image (``[H, W]`` metres, NaN = invalid) of ``camera`` (its ``K`` and size, its mount)
        at ``stamp``; returns the record (with ``gt`` and ``gt_mask`` arrays) or None when it cannot be scored."""
        if camera.name not in self.cameras:
            self._skip(f'camera {camera.name} is not evaluated')
            return None
        gt = self.ground_truth(camera, stamp)
        if isinstance(gt, str):
            self._skip(gt)
            return None
        gt_depth, t_lidar = gt
        h, w = depth.shape
        gt_mask = (gt_depth > 0) & (gt_depth >= self.min_depth) & (gt_depth <= self.max_depth)
        mask = self.mask(camera.name, h, w)
        if mask is not None:
            gt_mask &= mask
        metrics = compute_depth_metrics(depth, gt_depth, self.min_depth, self.max_depth, mask=gt_mask)
        self.accumulator.add(camera.name, metrics)
        bad = ~np.isfinite(depth)
        nf = self.nonfinite[camera.name]
        nf['pixels'] += int(bad.sum())
        nf['images'] += int(bad.any())
        nf['gt_pixels'] += int((bad & gt_mask).sum())
        record = {'camera': camera.name, 'stamp': float(stamp), 'lidar_stamp': float(t_lidar),
                  'metrics': metrics}
        self.records.append(record)
        return dict(record, gt=gt_depth, gt_mask=gt_mask)

    def nonfinite_summary(self) -> dict[str, Any]:
        """In the evaluation command's layout (``report.render_markdown``)."""
        cams = self.cameras
        out = {k: {c: self.nonfinite[c][k] for c in cams} for k in ('pixels', 'images', 'gt_pixels')}
        out.update({f'{k}_total': sum(out[k].values()) for k in ('pixels', 'images', 'gt_pixels')})
        return out
