"""nuScenes scenes -> rosbag2, through the official devkit, at native resolution, with every sweep.

Every sample_data of the scene's six cameras and LIDAR_TOP (key frames and the sweeps between them, unless
``keyframes_only``) becomes one event at its own timestamp; each carries the ego pose of its own ``ego_pose``
record and its own ``calibrated_sensor`` intrinsics. JPEGs go out as stored on ``/<cam>/image_raw/compressed``
(no re-encoding) or decoded on ``/<cam>/image_raw``. nuScenes images are rectified: ``camera_info`` says
``plumb_bob`` with zero coefficients. Optional GT depth (key frames): the key-frame sweep projected through the ego
poses, as the training reader does.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from surround_depth_ros.bag.scene import CameraEvent, LidarEvent
from surround_depth_train.data.assemble import ego_motion_corrections, read_rgb
from surround_depth_train.data.nuscenes import (LIDAR_CHANNEL, MAX_DEPTH, NUSCENES_CAMERAS, nuscenes_transform,
                                                read_lidar, split_scenes)
from surround_depth_train.data.schema import DatasetError
from surround_depth_train.geometry.lidar import points_to_depth
from surround_depth_train.geometry.rig import Camera, CameraRig, LidarMount
from surround_depth_train.geometry.transforms import transform_points

__all__ = ['NuScenesScenes']


def _read_bytes(path: Path) -> tuple[bytes, str]:
    if not path.is_file():
        raise DatasetError(f'image file {str(path)!r} is missing; re-extract the archive that holds it')
    return path.read_bytes(), 'jpeg'


class NuScenesScenes:
    """The scenes of one nuScenes version, as (rig, events) per scene.

    Args:
        nusc: a loaded ``NuScenes`` (``surround_depth_train.data.nuscenes.open_nuscenes``).
        split: ``train`` / ``val`` / a devkit split name, or None for every scene in the tables.
        scenes: scene names to keep.
    """

    def __init__(self, nusc, split: str | None = None, scenes: Sequence[str] | None = None):
        self.nusc = nusc
        self.root = Path(nusc.dataroot)
        present = [s['name'] for s in nusc.scene]
        if split is not None:
            self.names = split_scenes(nusc, nusc.version, split, scenes)
        else:
            missing = [s for s in scenes or () if s not in present]
            if missing:
                raise DatasetError(f'scene(s) {missing} are not in nuScenes {nusc.version} here; present: {present}')
            self.names = [s for s in present if not scenes or s in set(scenes)]
        self._by_sample: dict[str, list[dict]] = {}
        for sd in nusc.sample_data:
            self._by_sample.setdefault(sd['sample_token'], []).append(sd)

    def _sample_tokens(self, name: str) -> list[str]:
        scene = next(s for s in self.nusc.scene if s['name'] == name)
        out, token = [], scene['first_sample_token']
        while token:
            out.append(token)
            token = self.nusc.get('sample', token)['next']
        return out

    def rig(self, name: str) -> CameraRig:
        """The rig at native resolution from the scene's first key frame (with the LIDAR_TOP mount)."""
        nusc = self.nusc
        for token in self._sample_tokens(name):
            data = nusc.get('sample', token)['data']
            if all(c in data for c in NUSCENES_CAMERAS + (LIDAR_CHANNEL,)):
                cams = []
                for c in NUSCENES_CAMERAS:
                    sd = nusc.get('sample_data', data[c])
                    cs = nusc.get('calibrated_sensor', sd['calibrated_sensor_token'])
                    cams.append(Camera(name=c, K=np.array(cs['camera_intrinsic']), width=sd['width'],
                                       height=sd['height'], T_base_cam=nuscenes_transform(cs)))
                sd = nusc.get('sample_data', data[LIDAR_CHANNEL])
                lidar = nuscenes_transform(nusc.get('calibrated_sensor', sd['calibrated_sensor_token']))
                return CameraRig(cams, lidar=LidarMount('lidar', lidar))
        raise DatasetError(f'scene {name} has no key frame with all six cameras and {LIDAR_CHANNEL}')

    def events(self, name: str, *, keyframes_only: bool = False, compressed: bool = True,
               depth: bool = False) -> list[CameraEvent | LidarEvent]:
        """Every sensor event of scene ``name`` in time order (module docstring)."""
        nusc = self.nusc
        wanted = set(NUSCENES_CAMERAS) | {LIDAR_CHANNEL}
        records = [sd for tok in self._sample_tokens(name) for sd in self._by_sample.get(tok, [])
                   if sd['channel'] in wanted and (sd['is_key_frame'] or not keyframes_only)]
        records.sort(key=lambda sd: (sd['timestamp'], sd['channel'] != LIDAR_CHANNEL, sd['channel']))
        events: list[CameraEvent | LidarEvent] = []
        for sd in records:
            T_wb = nuscenes_transform(nusc.get('ego_pose', sd['ego_pose_token']))
            cs = nusc.get('calibrated_sensor', sd['calibrated_sensor_token'])
            path = self.root / sd['filename']
            stamp = sd['timestamp'] * 1e-6
            if sd['channel'] == LIDAR_CHANNEL:
                events.append(LidarEvent(stamp=stamp, T_world_base=T_wb, load=lambda p=path: read_lidar(p)))
                continue
            load = (lambda p=path: _read_bytes(p)) if compressed else (lambda p=path: read_rgb(p))
            gt = None
            if depth and sd['is_key_frame']:
                gt = lambda sd=sd, cs=cs, T_wb=T_wb: self._key_frame_depth(sd, cs, T_wb)  # noqa: E731
            events.append(CameraEvent(camera=sd['channel'], stamp=stamp, T_world_base=T_wb, load=load,
                                      compressed=compressed, depth=gt, K=np.array(cs['camera_intrinsic'])))
        return events

    def _key_frame_depth(self, sd: dict, cs: dict, T_wb_cam: np.ndarray) -> np.ndarray:
        nusc = self.nusc
        lidar_sd = nusc.get('sample_data', nusc.get('sample', sd['sample_token'])['data'][LIDAR_CHANNEL])
        raw = read_lidar(self.root / lidar_sd['filename'])
        T_base_lidar = nuscenes_transform(nusc.get('calibrated_sensor', lidar_sd['calibrated_sensor_token']))
        pts = transform_points(T_base_lidar, raw[:, :3].astype(np.float64))
        T_wb_lidar = nuscenes_transform(nusc.get('ego_pose', lidar_sd['ego_pose_token']))
        cam = Camera(name=sd['channel'], K=np.array(cs['camera_intrinsic']), width=sd['width'], height=sd['height'],
                     T_base_cam=nuscenes_transform(cs))
        return points_to_depth(pts, cam, max_depth=MAX_DEPTH,
                               T_correction=ego_motion_corrections(T_wb_lidar, [T_wb_cam])[0])
