"""nuScenes in the one sample schema, read through the official ``nuscenes-devkit`` (``NuScenes(version, dataroot)``).

One sample is one key frame (``sample`` table) with the six cameras in the cyclic order CAM_FRONT, CAM_FRONT_LEFT,
CAM_BACK_LEFT, CAM_BACK, CAM_BACK_RIGHT, CAM_FRONT_RIGHT and the LIDAR_TOP sweep of that key frame:

- intrinsics and extrinsics from ``calibrated_sensor`` (nuScenes camera frames are already optical: z forward,
  x right, y down; the ego frame is REP 103 base_link); quaternions there are ``w, x, y, z``;
- images resized as a whole to ``image_size`` (640 x 352 in the paper; anisotropic, as SurroundDepth does) with ``K``
  updated;
- LIDAR_TOP projected into each camera through the ego poses, sensor -> ego at LiDAR time -> global -> ego at
  camera time -> camera (what ``NuScenesExplorer.map_pointcloud_to_image`` does), with the z-buffered projection of
  ``geometry.lidar``; also at native resolution (``depth_native``) when asked, for evaluation;
- ``T_world_base`` is the ego pose at the LiDAR stamp, ``T_world_base_cams`` the ego pose at each camera's stamp;
  max depth 80 m.

Splits are the official ones of ``nuscenes.utils.splits``: ``train`` / ``val`` for ``v1.0-trainval``, ``mini_train``
/ ``mini_val`` for ``v1.0-mini`` (chosen automatically, so ``v1.0-mini`` works on its own). Only the split's scenes
present in the tables are used; ``scenes`` narrows them further. ``v1.0-test`` carries no LiDAR ground truth for
training or evaluation and is refused. SurroundDepth's removal of static frames (its 20,096 / 6,019 list) is not
applied: every key frame of the split is a sample.

Everything a sample needs is read from the tables once, at construction, into plain records, so the devkit object
is not kept (DataLoader workers do not copy the tables).
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from surround_depth_train.data import schema as S
from surround_depth_train.data.assemble import assemble_sample, read_rgb
from surround_depth_train.geometry.rig import RIG_PRESETS, Camera, CameraRig, LidarMount
from surround_depth_train.geometry.transforms import make_transform, transform_points

__all__ = ['NUSCENES_CAMERAS', 'LIDAR_CHANNEL', 'MIN_DEPTH', 'MAX_DEPTH', 'IMAGE_SIZE', 'VERSIONS', 'open_nuscenes',
           'split_scenes', 'nuscenes_transform', 'read_lidar', 'NuScenesDataset']

NUSCENES_CAMERAS: tuple[str, ...] = RIG_PRESETS['nuscenes']
LIDAR_CHANNEL = 'LIDAR_TOP'
MIN_DEPTH = 0.1
MAX_DEPTH = 80.0
IMAGE_SIZE = (640, 352)
VERSIONS = ('v1.0-trainval', 'v1.0-mini', 'v1.0-test')
#: Our split names -> the devkit's, per version.
_SPLITS = {'v1.0-trainval': {'train': 'train', 'val': 'val'},
           'v1.0-mini': {'train': 'mini_train', 'val': 'mini_val'}}
_TABLES = ('category', 'attribute', 'visibility', 'instance', 'sensor', 'calibrated_sensor', 'ego_pose', 'log',
           'scene', 'sample', 'sample_data', 'sample_annotation', 'map')


def open_nuscenes(root: str | os.PathLike, version: str):
    """``NuScenes(version, dataroot=root)``, with a clear message for a wrong root, version or missing table."""
    root = Path(root)
    if not root.is_dir():
        raise S.DatasetError(f'nuScenes root {str(root)!r} does not exist; pass the folder that holds '
                             f'{version}/, samples/, sweeps/ and maps/ (data.root=... or --root)')
    if not (root / version).is_dir():
        found = sorted(p.name for p in root.iterdir() if p.is_dir() and p.name.startswith('v1.0'))
        raise S.DatasetError(f'nuScenes root {str(root)!r} has no {version}/ table folder (found: {found or "none"}); '
                             f'extract the {version} metadata there or choose the version you have '
                             f'(data.version=... or --version)')
    for table in _TABLES:
        if not (root / version / f'{table}.json').is_file():
            raise S.DatasetError(f'nuScenes table {str(root / version / (table + ".json"))!r} is missing; the '
                                 f'{version} metadata is incomplete: re-extract its archive')
    from nuscenes.nuscenes import NuScenes

    try:
        return NuScenes(version=version, dataroot=str(root), verbose=False)
    except AssertionError as exc:  # the devkit asserts, e.g. on a missing map image
        raise S.DatasetError(f'nuScenes {version} under {str(root)!r} cannot be loaded: {exc}; re-extract the '
                             f'metadata and maps archives') from None
    except (ValueError, KeyError) as exc:
        raise S.DatasetError(f'nuScenes {version} under {str(root)!r}: a table is malformed ({exc!r}); re-extract '
                             f'the metadata archive') from None


def split_scenes(nusc, version: str, split: str, scenes: Sequence[str] | None = None) -> list[str]:
    """Scene names of ``split`` present in the tables (in table order), narrowed to ``scenes`` when given.

    ``split`` is ``train`` / ``val`` (mapped per version) or any devkit split name (``mini_train``,
    ``train_detect``, ...).
    """
    from nuscenes.utils.splits import create_splits_scenes

    official = create_splits_scenes()
    name = _SPLITS.get(version, {}).get(split, split)
    if name not in official:
        raise S.DatasetError(f'unknown nuScenes split {split!r}; use train, val or one of {sorted(official)}')
    wanted = set(official[name])
    present = [s['name'] for s in nusc.scene]
    chosen = [s for s in present if s in wanted]
    if scenes:
        missing = [s for s in scenes if s not in chosen]
        if missing:
            raise S.DatasetError(f'scene(s) {missing} are not in split {name!r} of {version} here; scenes of that '
                                 f'split present: {chosen or "none"}')
        chosen = [s for s in chosen if s in set(scenes)]
    if not chosen:
        raise S.DatasetError(f'split {name!r} of {version} has no scene in these tables (present: {present}); '
                             f'use the split that matches the version (v1.0-mini: mini_train / mini_val)')
    return chosen


def nuscenes_transform(record: dict) -> np.ndarray:
    """4x4 of a ``calibrated_sensor`` or ``ego_pose`` record (its quaternion is ``w, x, y, z``)."""
    w, x, y, z = record['rotation']
    return make_transform(np.array([x, y, z, w], dtype=np.float64), record['translation'])


def read_lidar(path: str | os.PathLike) -> np.ndarray:
    """A LIDAR_TOP ``.pcd.bin``: ``[M, 5]`` float32 x, y, z, intensity, ring (the devkit's layout)."""
    path = Path(path)
    if not path.is_file():
        raise S.DatasetError(f'point-cloud file {str(path)!r} is missing; re-extract the archive that holds it '
                             f'(samples/LIDAR_TOP or sweeps/LIDAR_TOP)')
    raw = np.fromfile(path, dtype=np.float32)
    if raw.size == 0 or raw.size % 5:
        raise S.DatasetError(f'point-cloud file {str(path)!r} holds {raw.size} floats, not a multiple of 5 '
                             f'(x, y, z, intensity, ring); the file is truncated: re-extract it')
    return raw.reshape(-1, 5)


def _sensor_record(nusc, sd_token: str) -> dict[str, Any]:
    sd = nusc.get('sample_data', sd_token)
    cs = nusc.get('calibrated_sensor', sd['calibrated_sensor_token'])
    ego = nusc.get('ego_pose', sd['ego_pose_token'])
    rec = {'token': sd_token, 'file': sd['filename'], 'stamp': sd['timestamp'] * 1e-6,
           'T_base_sensor': nuscenes_transform(cs), 'T_world_base': nuscenes_transform(ego),
           'width': int(sd.get('width') or 0), 'height': int(sd.get('height') or 0)}
    if cs.get('camera_intrinsic'):
        rec['K'] = np.asarray(cs['camera_intrinsic'], dtype=np.float64)
    return rec


class NuScenesDataset(S.SurroundDataset):
    """nuScenes key frames in the shared schema (module docstring).

    Args:
        root: the nuScenes folder (holding ``v1.0-*/``, ``samples/``, ``sweeps/``, ``maps/``).
        version: ``v1.0-trainval`` or ``v1.0-mini`` (``v1.0-test`` is refused: no LiDAR ground truth).
        split: ``train`` or ``val`` (mapped to the version's official split) or a devkit split name.
        scenes: optional scene names (``scene-0061``, ...) to keep from the split.
        image_size: network ``(W, H)``.
        min_depth, max_depth: GT range in metres (the mask's rule).
        native_depth: also yield ``depth_native`` at the cameras' native resolution (evaluation).
        nusc: an already loaded ``NuScenes`` of this root and version (skips loading the tables again).
    """

    dataset_name = 'nuscenes'

    def __init__(self, root: str | os.PathLike, version: str = 'v1.0-trainval', split: str = 'train',
                 scenes: Sequence[str] | None = None, image_size: tuple[int, int] = IMAGE_SIZE,
                 min_depth: float = MIN_DEPTH, max_depth: float = MAX_DEPTH, native_depth: bool = False, nusc=None):
        if version == 'v1.0-test':
            raise S.DatasetError('nuScenes v1.0-test has no LiDAR ground truth to train or evaluate on; use '
                                 'v1.0-trainval (splits train / val) or v1.0-mini (data.version=...)')
        if version not in VERSIONS:
            raise S.DatasetError(f'unknown nuScenes version {version!r}; use one of {list(VERSIONS[:2])}')
        w, h = (int(v) for v in image_size)
        if w < 8 or h < 8:
            raise S.DatasetError(f'image_size must be (width, height) of at least 8 x 8 pixels, got {image_size}')
        if not 0 <= min_depth < max_depth:
            raise S.DatasetError(f'need 0 <= min_depth < max_depth, got {min_depth}, {max_depth}')
        self.root = Path(root)
        self.version = version
        self.split = split
        self.image_size = (w, h)
        self.min_depth = float(min_depth)
        self.max_depth = float(max_depth)
        self.native_depth = bool(native_depth)
        nusc = nusc or open_nuscenes(self.root, version)
        self.scenes = split_scenes(nusc, version, split, scenes)
        self.records, self.skipped = self._index(nusc)
        if not self.records:
            raise S.DatasetError(f'nuScenes {version} split {split!r} has no complete sample (all {self.skipped} lack '
                                 f'a camera or {LIDAR_CHANNEL}); check the sample_data table')
        if self.skipped:
            warnings.warn(f'nuScenes {version} {split}: skipped {self.skipped} key frame(s) that lack one of the six '
                          f'cameras or {LIDAR_CHANNEL}, e.g. {self.first_skipped} in {self.root / version}/'
                          f'sample_data.json; re-extract the metadata, or leave the scene out with '
                          f'data.train_scenes / data.val_scenes', stacklevel=2)
        self.rig = self.native_rig(0).resized(w, h)

    def _index(self, nusc) -> tuple[list[dict[str, Any]], int]:
        by_name = {s['name']: s for s in nusc.scene}
        records, skipped = [], 0
        self.first_skipped = ''
        for name in self.scenes:
            token, frame = by_name[name]['first_sample_token'], 0
            while token:
                sample = nusc.get('sample', token)
                channels = sample['data']
                if all(c in channels for c in NUSCENES_CAMERAS + (LIDAR_CHANNEL,)):
                    records.append({'scene': name, 'frame': frame, 'sample_token': token,
                                    'cameras': [_sensor_record(nusc, channels[c]) for c in NUSCENES_CAMERAS],
                                    'lidar': _sensor_record(nusc, channels[LIDAR_CHANNEL])})
                else:
                    skipped += 1
                    if not self.first_skipped:
                        lacking = [c for c in NUSCENES_CAMERAS + (LIDAR_CHANNEL,) if c not in channels]
                        self.first_skipped = f'{name} frame {frame} (sample {token}) has no {", ".join(lacking)}'
                token, frame = sample['next'], frame + 1
        return records, skipped

    def __len__(self) -> int:
        return len(self.records)

    def native_rig(self, index: int) -> CameraRig:
        """The rig of sample ``index`` at native resolution (calibrations may differ between logs)."""
        cams = []
        for name, rec in zip(NUSCENES_CAMERAS, self.records[index]['cameras']):
            cams.append(Camera(name=name, K=rec['K'], width=rec['width'], height=rec['height'],
                               T_base_cam=rec['T_base_sensor']))
        return CameraRig(cams, lidar=LidarMount('lidar', self.records[index]['lidar']['T_base_sensor']))

    def lidar_base(self, index: int) -> np.ndarray:
        """The key-frame sweep of sample ``index`` in base_link at the LiDAR stamp: ``[M, 4]`` x, y, z, intensity."""
        rec = self.records[index]['lidar']
        raw = read_lidar(self.root / rec['file'])
        pts = transform_points(rec['T_base_sensor'], raw[:, :3].astype(np.float64))
        return np.concatenate([pts, raw[:, 3:4].astype(np.float64)], axis=1)

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not 0 <= index < len(self.records):
            raise IndexError(f'index {index} out of range for {len(self.records)} samples')
        rec = self.records[index]
        cams = rec['cameras']
        images = [read_rgb(self.root / c['file']) for c in cams]
        meta = {'dataset': self.dataset_name, 'split': self.split, 'scene': rec['scene'], 'frame': rec['frame'],
                'sample_token': rec['sample_token'], 'index': index}
        return assemble_sample(
            images=images, rig_native=self.native_rig(index), lidar_base=self.lidar_base(index),
            lidar_stamp=rec['lidar']['stamp'], stamps=[c['stamp'] for c in cams],
            T_world_base=rec['lidar']['T_world_base'], T_world_base_cams=[c['T_world_base'] for c in cams],
            image_size=self.image_size, min_depth=self.min_depth, max_depth=self.max_depth, meta=meta,
            native_depth=self.native_depth)
