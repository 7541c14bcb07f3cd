"""A SurroundSim drive -> rosbag2: ``frames`` consecutive 10 Hz frames of one procedural street.

Each frame gives six rgb8 images at their own shutter stamps (with the ego pose at each), one LiDAR sweep (moved
from base_link at the LiDAR stamp into the LiDAR's frame, a translation by the mount; ``ring`` = 0) and, on request,
the exact rendered depth as GT. The rig is SurroundSim's at ``image_size`` with its roof LiDAR mount.
"""
from __future__ import annotations

import os

import numpy as np

from surround_depth_ros.bag.scene import CameraEvent, LidarEvent
from surround_depth_train.data.surroundsim import SurroundSimDataset
from surround_depth_train.data.surroundsim.rig import LIDAR_MOUNT
from surround_depth_train.data.surroundsim.sequence import camera_stamps, ego_pose, lidar_stamp
from surround_depth_train.geometry.rig import CameraRig, LidarMount
from surround_depth_train.geometry.transforms import make_transform

__all__ = ['SurroundSimDrive']


class SurroundSimDrive:
    """One SurroundSim scene as (rig, events).

    Args:
        frames: number of 10 Hz frames.
        image_size: ``(W, H)`` of the cameras.
        world: a world YAML (``config/surroundsim/*.yaml``) or None.
        split, seed_offset: which street (see ``SurroundSimDataset``).
    """

    def __init__(self, frames: int = 20, image_size: tuple[int, int] = (640, 384),
                 world: str | os.PathLike | None = None, split: str = 'val', seed_offset: int = 0):
        self.dataset = SurroundSimDataset(split=split, num_samples=frames, image_size=image_size, world=world,
                                          seed_offset=seed_offset, frames_per_scene=frames)
        self.name = f'surroundsim-{self.dataset.locate(0)[0]}'
        self._cache: tuple[int, dict] | None = None

    def rig(self) -> CameraRig:
        rig = self.dataset.rig
        return CameraRig(rig.cameras, rig.base_frame, LidarMount('lidar', make_transform(np.eye(3), LIDAR_MOUNT)))

    def write_masks(self, folder: str | os.PathLike) -> list[str]:
        """Each camera's ego-body mask (the dataset's ``self_mask``: white = the scene) as ``<folder>/<cam>.png``,
        for the node's ``mask_files`` and the bag evaluators' ``--mask-files``; returns the paths in rig order."""
        from pathlib import Path

        from surround_depth_train.visualize import save_png

        masks = self._payload(0)['self_mask']
        Path(folder).mkdir(parents=True, exist_ok=True)
        paths = []
        for name, mask in zip(self.dataset.rig.names, masks):
            path = Path(folder) / f'{name}.png'
            save_png(path, np.repeat((np.asarray(mask, dtype=np.uint8) * 255)[..., None], 3, axis=2))
            paths.append(str(path))
        return paths

    def _payload(self, index: int) -> dict:
        if self._cache is None or self._cache[0] != index:
            self._cache = (index, self.dataset.payload(index))
        return self._cache[1]

    def _image(self, index: int, cam: int) -> np.ndarray:
        return self._payload(index)['image'][cam]

    def _points(self, index: int) -> np.ndarray:
        pts = np.asarray(self._payload(index)['lidar'], dtype=np.float64)
        out = np.zeros((len(pts), 5))
        out[:, :3] = pts[:, :3] - LIDAR_MOUNT
        out[:, 3] = pts[:, 3]
        return out

    def _depth(self, index: int, cam: int) -> np.ndarray:
        return self._payload(index)['depth_dense'][cam]

    def events(self, *, depth: bool = False) -> list[CameraEvent | LidarEvent]:
        """Every sensor event in time order; stamps and poses come from the drive, images render lazily."""
        seed = self.dataset.locate(0)[0]
        world = self.dataset.world(seed)
        out: list[CameraEvent | LidarEvent] = []
        for index in range(len(self.dataset)):
            _, frame = self.dataset.locate(index)
            t_l = lidar_stamp(frame)
            out.append(LidarEvent(stamp=t_l, T_world_base=ego_pose(world, t_l), load=lambda i=index: self._points(i)))
            for c, (name, t_c) in enumerate(zip(self.dataset.rig.names, camera_stamps(frame))):
                out.append(CameraEvent(camera=name, stamp=float(t_c), T_world_base=ego_pose(world, float(t_c)),
                                       load=lambda i=index, c=c: self._image(i, c),
                                       depth=(lambda i=index, c=c: self._depth(i, c)) if depth else None))
        out.sort(key=lambda e: e.stamp)
        return out
