"""One camera set in, per-camera metric depth and one fused base_link cloud out (no rclpy).

This is everything the node does between the synchroniser and the publishers, so that the node stays a thin
adapter and the bag tools run the very same code:

1. :class:`DepthEngine` predicts depth (and confidence) for the cameras present, in one batch;
2. depth outside ``[min_depth, max_depth]`` becomes NaN (REP 118: NaN = invalid);
3. the cloud lifts each camera's depth through its rectified ``K`` and the rig's extrinsics
   (:func:`~surround_depth_train.geometry.lidar.rig_depth_to_cloud`), without the ego body (per-camera masks),
   above the confidence threshold, inside the range limits, every ``stride``-th pixel, optionally voxel-filtered.

The six shutters of one set fire tens of milliseconds apart while the car moves (at 15 m/s, 42 ms are 0.6 m). The
cloud is stamped with the newest camera stamp of the set; when odometry is available (a :class:`TransformBuffer`
holding ``odom <- base_link``, turned into per-camera corrections by :meth:`DepthPipeline.motion_corrections`), each
camera's points are moved from base_link at that camera's stamp into base_link at the cloud's stamp. Without
odometry the points stay where each camera saw them (uncompensated).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np

from surround_depth_train.data.rosbag.frames import CameraInput
from surround_depth_train.geometry.rig import Camera, CameraRig
from surround_depth_train.geometry.transforms import TransformBuffer, transform_points
from surround_depth_ros.cloud import cloud_filter
from surround_depth_ros.engine import DepthEngine

__all__ = ['CameraOutput', 'SetOutput', 'CloudSettings', 'DepthPipeline']


@dataclass
class CameraOutput:
    name: str
    stamp: float
    frame_id: str
    depth: np.ndarray                 # [H, W] float32 metres, NaN = invalid (a copy, safe to keep)
    confidence: np.ndarray | None     # [H, W] float32 in [0, 1]
    K: np.ndarray                     # 3x3 of the depth image


@dataclass
class SetOutput:
    stamp: float                                  # the cloud's stamp: the newest camera stamp of the set
    cameras: list[CameraOutput]
    cloud: dict[str, np.ndarray] | None           # points [M,3] float32 (base_link), camera [M] (rig index), ...
    compensated: bool = False                     # the cloud was motion-compensated from odometry
    timings_ms: dict[str, float] = field(default_factory=dict)


@dataclass
class CloudSettings:
    """What the fused cloud keeps (all of these may change while the node runs)."""

    min_depth: float = 0.0              # depth limits of published depth; 0 = the model's range
    max_depth: float = 0.0
    confidence_threshold: float = 0.0
    stride: int = 4
    voxel_size: float = 0.0
    min_range: float = 0.0
    max_range: float = 80.0
    rgb: bool = True
    confidence: bool = True


class DepthPipeline:
    """Engine + range limits + fused cloud for a rig.

    Args:
        engine: the inference engine.
        rig: camera names, order (the cloud's camera index) and extrinsics ``base_link <- optical``.
        masks: optional per-camera ego-body masks (True = keep), any size (resized nearest to the image).
        settings: cloud and depth limits.
        base_frame, odom_frame: frames of the motion compensation lookups in ``transforms``.
    """

    def __init__(self, engine: DepthEngine, rig: CameraRig, *, masks: Mapping[str, np.ndarray] | None = None,
                 settings: CloudSettings | None = None, base_frame: str = 'base_link', odom_frame: str = 'odom'):
        self.engine = engine
        self.rig = rig
        self.masks = {k: np.asarray(v, dtype=bool) for k, v in (masks or {}).items()}
        unknown = sorted(set(self.masks) - set(rig.names))
        if unknown:
            raise ValueError(f'masks given for camera(s) {unknown} that are not in the rig {rig.names}')
        self.settings = settings or CloudSettings()
        self.base_frame = base_frame
        self.odom_frame = odom_frame
        self._resized_masks: dict[tuple[str, int, int], np.ndarray] = {}

    def camera_for(self, output: CameraOutput) -> Camera:
        """The geometry of a published depth image: its ``K`` and size, the rig's mount."""
        mount = self.rig[output.name]
        h, w = output.depth.shape
        return Camera(name=output.name, K=output.K, width=w, height=h, T_base_cam=mount.T_base_cam,
                      frame_id=output.frame_id or mount.frame_id)

    def keep_mask(self, cam: CameraInput) -> np.ndarray | None:
        """Pixels of a camera that see the scene: not the ego body, inside the undistorted image (None = all)."""
        h, w = cam.rgb.shape[:2]
        mask = self._mask(cam.name, h, w)
        if cam.valid is not None:
            mask = cam.valid if mask is None else mask & cam.valid
        return mask

    def depth_limits(self) -> tuple[float, float]:
        lo, hi = self.engine.depth_range
        s = self.settings
        return (s.min_depth or lo, s.max_depth or hi)

    def _mask(self, name: str, height: int, width: int) -> np.ndarray | None:
        mask = self.masks.get(name)
        if mask is None:
            return None
        key = (name, height, width)
        if key not in self._resized_masks:
            rows = (np.arange(height) * mask.shape[0] // height).clip(0, mask.shape[0] - 1)
            cols = (np.arange(width) * mask.shape[1] // width).clip(0, mask.shape[1] - 1)
            self._resized_masks[key] = mask[rows][:, cols]
        return self._resized_masks[key]

    def run(self, inputs: Sequence[CameraInput], *, want_confidence: bool = False, want_cloud: bool = True,
            motion: Mapping[str, np.ndarray] | None = None) -> SetOutput:
        """Depth for every camera in ``inputs`` (one batch) and, with ``want_cloud``, the fused cloud.

        ``motion``: per camera ``base_link(cloud stamp) <- base_link(camera stamp)`` (:meth:`motion_corrections`);
        None leaves the cloud uncompensated.
        """
        if not inputs:
            raise ValueError('a camera set needs at least one camera')
        s = self.settings
        need_conf = want_confidence or (want_cloud and (s.confidence or s.confidence_threshold > 0))
        pred = self.engine.predict([c.rgb for c in inputs], [c.K for c in inputs], names=[c.name for c in inputs],
                                   confidence=need_conf and self.engine.has_confidence)
        lo, hi = self.depth_limits()
        outputs = []
        for i, cam in enumerate(inputs):
            depth = pred.depths[i].copy()
            invalid = ~((depth >= lo) & (depth <= hi))
            if cam.valid is not None:
                invalid |= ~cam.valid
            depth[invalid] = np.nan
            conf = None if pred.confidences is None else pred.confidences[i].copy()
            outputs.append(CameraOutput(name=cam.name, stamp=cam.stamp, frame_id=cam.frame_id, depth=depth,
                                        confidence=conf, K=np.asarray(cam.K, dtype=np.float64)))
        stamp = max(c.stamp for c in inputs)
        result = SetOutput(stamp=stamp, cameras=outputs, cloud=None, timings_ms=dict(pred.timings_ms))
        if want_cloud:
            result.cloud, result.compensated = self._cloud(inputs, outputs, motion)
        return result

    def _cloud(self, inputs: Sequence[CameraInput], outputs: Sequence[CameraOutput],
               motion: Mapping[str, np.ndarray] | None) -> tuple[dict[str, np.ndarray], bool]:
        s = self.settings
        n = len(self.rig)
        depths: list[np.ndarray | None] = [None] * n
        masks: list[np.ndarray | None] = [None] * n
        colors: list[np.ndarray | None] = [None] * n
        confidences: list[np.ndarray | None] = [None] * n
        cameras = list(self.rig.cameras)
        for cam, out in zip(inputs, outputs):
            i = self.rig.index(cam.name)
            cameras[i] = self.camera_for(out)  # rectified K and size from CameraInfo, mount from the rig
            depths[i] = out.depth
            masks[i] = self.keep_mask(cam)
            colors[i] = cam.rgb if s.rgb else None
            confidences[i] = out.confidence if s.confidence or s.confidence_threshold > 0 else None
        cloud = cloud_filter(depths, CameraRig(cameras, self.rig.base_frame), masks=masks,
                             colors=colors if s.rgb else None,
                             confidences=confidences if any(c is not None for c in confidences) else None,
                             min_confidence=s.confidence_threshold, min_range=s.min_range, max_range=s.max_range,
                             voxel_size=s.voxel_size, stride=s.stride)
        if not s.confidence:
            cloud.pop('confidence', None)
        if motion is None:
            return cloud, False  # no odometry around these stamps: the points stay where each camera saw them
        moved = cloud['points'].astype(np.float64)
        for cam in inputs:
            T = motion.get(cam.name)
            if T is not None:
                sel = cloud['camera'] == self.rig.index(cam.name)
                moved[sel] = transform_points(T, moved[sel])
        cloud['points'] = moved.astype(np.float32)
        return cloud, True

    def motion_corrections(self, inputs: Sequence[CameraInput],
                           transforms: TransformBuffer) -> dict[str, np.ndarray] | None:
        """``base_link(cloud stamp) <- base_link(camera stamp)`` per camera from odometry in ``transforms``
        (``odom <- base_link``), None when the odometry does not cover the stamps."""
        stamp = max(c.stamp for c in inputs)
        try:
            return {c.name: transforms.motion_compensation(self.odom_frame, self.base_frame, c.stamp, stamp)
                    for c in inputs}
        except LookupError:
            return None
