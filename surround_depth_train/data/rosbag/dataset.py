"""Your own bags as data: a bag, or a folder of bags, as the one sample schema (``data.dataset=rosbag``).

Read with the code the node and the bag evaluator share (no rclpy, no ``surround_depth_ros``):
:class:`~surround_depth_train.data.rosbag.reader.BagSource` under a topic map, camera sets formed by the node's
:class:`~surround_depth_train.data.rosbag.sync.ApproximateTimeSync` on the bag's stamps, images decoded and
undistorted by the node's :class:`~surround_depth_train.data.rosbag.frames.FrameDecoder`, the ego motion and LiDAR
sweeps of pass 1. A sample is one complete camera set with the newest sweep at or before its first shutter (at
most ``max_lidar_gap`` older), assembled by :func:`~surround_depth_train.data.assemble.assemble_sample` like nuScenes
and DDAD: images resized to ``image_size`` with ``K``, the sweep projected into each camera with ego-motion
compensation to its stamp (``T_world_base_cams`` from the odometry, ``odom`` as the world), optional GT at native
resolution. The index (which messages make each sample) is built once; images are read back by recording time
when a sample is asked for, so a long bag is not held in memory. Sets missing a camera, without a sweep or without
ego motion are skipped and counted (``skipped``).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from surround_depth_train.data import schema as S
from surround_depth_train.data.rosbag.reader import BagSource, find_bags, sync_sets
from surround_depth_train.data.rosbag.sync import ApproximateTimeSync
from surround_depth_train.data.rosbag.topic_map import TopicMap
from surround_depth_train.geometry.rig import Camera, CameraRig

__all__ = ['RosbagDataset']


class RosbagDataset(S.SurroundDataset):
    """Camera sets of one or more bags (module docstring).

    Args:
        root: a bag, or a folder of bags.
        bags: keep only the bags of these names (folder entries); None = all.
        image_size: network ``(W, H)``.
        min_depth, max_depth: GT range.
        native_depth: also give ``depth_native`` (every camera must have the same native size).
        topic_map: the layout (default: :mod:`~surround_depth_train.data.rosbag.topics`); its ``mask_files`` are the
            ego-body masks.
        max_lidar_gap: seconds the sweep may precede a set's first shutter.
    """

    dataset_name = 'rosbag'

    def __init__(self, root: str | os.PathLike, *, bags: Sequence[str] | None = None,
                 image_size: tuple[int, int] = (160, 96), min_depth: float = 0.5, max_depth: float = 80.0,
                 native_depth: bool = False, topic_map: TopicMap | None = None, max_lidar_gap: float = 0.15,
                 progress: bool = False):
        paths = find_bags(root)
        if bags:
            known = {p.name: p for p in paths}
            unknown = sorted(set(bags) - set(known))
            if unknown:
                raise S.DatasetError(f'bags {unknown} are not in {str(root)!r}; it holds {sorted(known)}')
            paths = [known[b] for b in bags]
        self.root = Path(root)
        self.image_size = (int(image_size[0]), int(image_size[1]))
        self.min_depth, self.max_depth = float(min_depth), float(max_depth)
        self.native_depth = bool(native_depth)
        self.map = topic_map or TopicMap()
        self.max_lidar_gap = float(max_lidar_gap)
        self.skipped: dict[str, int] = {}
        self.records: list[dict[str, Any]] = []
        self._bags: list[dict[str, Any]] = []
        self._open: dict[int, BagSource] = {}
        self._pid = os.getpid()
        for path in paths:
            with BagSource(path, self.map) as source:
                source.require(lidar=True, ego_motion=True)
                ctx = source.read_context()
                ctx.sweeps.max_gap = self.max_lidar_gap
                rig = source.rig(ctx)
                if self._bags and rig.names != self._bags[0]['rig'].names:
                    raise S.DatasetError(f'bag {path} has cameras {rig.names}, but {self._bags[0]["path"]} has '
                                         f'{self._bags[0]["rig"].names}; every bag of a dataset needs the same rig')
                bag = {'path': path, 'rig': rig, 'ctx': ctx,
                       'compressed': {c: source.compressed(c) for c in source.cameras}}
                self._bags.append(bag)
                sync = ApproximateTimeSync(source.cameras)  # the node's default slop, queue and timeout
                for camera_set in sync_sets(source, sync, log_times=True):  # image payload: its log time
                    self._index(len(self._bags) - 1, camera_set)
        if not self.records:
            why = ', '.join(f'{n} x {k}' for k, n in self.skipped.items()) or 'no camera sets'
            raise S.DatasetError(f'no usable camera set in {[str(p) for p in paths]} ({why}); a sample needs every '
                                 f'camera, a LiDAR sweep at most {self.max_lidar_gap} s before the set and ego motion')
        self._decoders: dict = {}
        first = self._bags[0]
        cams = [self._decoded_camera(0, c, self.records[0]['infos'][c]) for c in first['rig'].names]
        self.rig = CameraRig(cams, first['rig'].base_frame, first['rig'].lidar).resized(*self.image_size)

    def _skip(self, reason: str) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + 1

    def _index(self, b: int, camera_set) -> None:
        bag = self._bags[b]
        if not camera_set.complete:
            return self._skip(f'set without {", ".join(camera_set.missing)}')
        stamps = [camera_set.frames[c].stamp for c in bag['rig'].names]
        found = bag['ctx'].sweeps.before(min(stamps))
        if found is None:
            return self._skip('no LiDAR sweep before the set')
        try:
            for t in (found[0], *stamps):
                bag['ctx'].transforms.lookup(self.map.odom_frame, self.map.base_frame, t)
        except LookupError:
            return self._skip('no ego motion at the set')
        self.records.append({'bag': b, 'images': {c: camera_set.frames[c].image for c in bag['rig'].names},
                             'infos': {c: camera_set.frames[c].info for c in bag['rig'].names},
                             'stamps': stamps, 'lidar_stamp': found[0], 'frame': len(self.records)})

    def _decoded_camera(self, b: int, name: str, info: Any, rgb: np.ndarray | None = None):
        """The rectified camera (``K`` of the undistorted image, native size, the bag's mount)."""
        from surround_depth_train.data.rosbag.messages import camera_info_to_intrinsics
        from surround_depth_train.data.rosbag.undistort import Undistorter

        intr = camera_info_to_intrinsics(info, name)
        und = self._decoders.setdefault((b, name), Undistorter(name))
        if rgb is None:
            rgb = np.zeros((intr.height, intr.width, 3), np.uint8)
        und.undistort(rgb, intr)
        mount = self._bags[b]['rig'][name]
        return Camera(name=name, K=und.K, width=intr.width, height=intr.height, T_base_cam=mount.T_base_cam,
                      frame_id=mount.frame_id)

    def _source(self, b: int) -> BagSource:
        if self._pid != os.getpid():  # a loader worker: its own readers
            self._open, self._pid = {}, os.getpid()
        if b not in self._open:
            self._open[b] = BagSource(self._bags[b]['path'], self.map)
        return self._open[b]

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state['_open'] = {}
        return state

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> dict[str, Any]:
        import cv2

        from surround_depth_train.data.assemble import assemble_sample
        from surround_depth_train.data.rosbag.frames import FrameDecoder, load_mask

        rec = self.records[index]
        bag = self._bags[rec['bag']]
        names = bag['rig'].names
        msgs = self._source(rec['bag']).images_at(rec['images'])
        decoder = self._decoders.setdefault(('frame', rec['bag']), FrameDecoder())
        inputs = [decoder.decode(c, msgs[c], rec['infos'][c], compressed=bag['compressed'][c]) for c in names]
        rig_native = CameraRig([Camera(name=c, K=inp.K, width=inp.rgb.shape[1], height=inp.rgb.shape[0],
                                       T_base_cam=bag['rig'][c].T_base_cam, frame_id=bag['rig'][c].frame_id)
                                for c, inp in zip(names, inputs)], bag['rig'].base_frame)
        ctx = bag['ctx']
        t_lidar, points = ctx.sweeps.before(min(rec['stamps']))
        lidar = np.zeros((len(points), 4), np.float32)
        lidar[:, :3] = points
        pose = lambda t: ctx.transforms.lookup(self.map.odom_frame, self.map.base_frame, t)  # noqa: E731
        w, h = self.image_size
        self_masks = []
        for i, (c, inp) in enumerate(zip(names, inputs)):
            mask = np.ones((h, w), bool)
            if i < len(self.map.mask_files) and self.map.mask_files[i]:
                mask &= load_mask(self.map.mask_files[i], w, h)
            if inp.valid is not None:  # outside the undistorted image
                mask &= cv2.resize(inp.valid.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST) > 0
            self_masks.append(mask)
        return assemble_sample(images=[inp.rgb for inp in inputs], rig_native=rig_native, lidar_base=lidar,
                               lidar_stamp=t_lidar, stamps=rec['stamps'], T_world_base=pose(t_lidar),
                               T_world_base_cams=[pose(t) for t in rec['stamps']], image_size=self.image_size,
                               min_depth=self.min_depth, max_depth=self.max_depth, self_masks=self_masks,
                               native_depth=self.native_depth,
                               meta={'dataset': 'rosbag', 'scene': bag['path'].name, 'frame': rec['frame']})
