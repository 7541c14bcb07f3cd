"""The camera rig: cameras in cyclic order with intrinsics, image size, distortion and mounting.

A rig is what the node, the dataset converters, the bag tools and training share. Cameras are kept in the cyclic
order of the surround system, so ``adjacent_pairs()`` = ``(i, (i + 1) mod N)`` are the overlapping neighbours used
by view-relational distillation.

Rig YAML (quaternions in ROS order x, y, z, w; ``T_base_cam`` = base_link <- camera optical frame, REP 103)::

    base_frame: base_link
    preset: nuscenes            # optional: cameras must then be exactly the preset's, in its order
    cameras:
      - name: front
        frame_id: front_optical  # optional, default <name>_optical_frame
        width: 640
        height: 384
        K: [[fx, 0, cx], [0, fy, cy], [0, 0, 1]]
        distortion: [0, 0, 0, 0, 0]      # optional, OpenCV plumb_bob (k1, k2, p1, p2, k3)
        translation: [x, y, z]           # metres, in base_link
        rotation: [x, y, z, w]           # or rotation_matrix: 3x3 row-major
    lidar:                               # optional: the LiDAR's mount (bag converters write it)
      frame_id: lidar
      translation: [x, y, z]             # base_link <- lidar
      rotation: [x, y, z, w]
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
import yaml

from surround_depth_train.atomic import atomic_write
from surround_depth_train.geometry.camera import check_intrinsics, crop_intrinsics, resize_intrinsics
from surround_depth_train.geometry.transforms import is_rotation_matrix, make_transform, matrix_to_quat

__all__ = ['Camera', 'CameraRig', 'LidarMount', 'RigError', 'RIG_PRESETS', 'preset_camera_names', 'optical_rotation',
           'synthetic_surround_rig']


class RigError(ValueError):
    """A rig description is invalid; the message names the field and the fix."""


#: Cyclic camera order of each dataset (REFERENCE section 5): front, front_left, back_left, back, back_right,
#: front_right. Intrinsics and extrinsics come from the dataset at run time.
RIG_PRESETS: dict[str, tuple[str, ...]] = {
    'nuscenes': ('CAM_FRONT', 'CAM_FRONT_LEFT', 'CAM_BACK_LEFT', 'CAM_BACK', 'CAM_BACK_RIGHT', 'CAM_FRONT_RIGHT'),
    'ddad': ('CAMERA_01', 'CAMERA_05', 'CAMERA_07', 'CAMERA_09', 'CAMERA_08', 'CAMERA_06'),
    'surroundsim': ('front', 'front_left', 'back_left', 'back', 'back_right', 'front_right'),
}


def preset_camera_names(preset: str) -> tuple[str, ...]:
    try:
        return RIG_PRESETS[preset]
    except KeyError:
        raise RigError(f'unknown rig preset {preset!r}; known presets: {", ".join(RIG_PRESETS)}') from None


def optical_rotation(yaw: float, pitch: float = 0.0) -> np.ndarray:
    """Rotation base_link <- camera optical frame for a camera looking along ``yaw`` (rad, counter-clockwise from
    the vehicle's +x, REP 103 base_link: x forward, y left, z up), pitched down by ``pitch`` (rad)."""
    # optical axes in a forward-looking body frame: z_opt = +x, x_opt = -y, y_opt = -z
    R_body_opt = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])
    cp, sp = np.cos(pitch), np.sin(pitch)
    R_pitch = np.array([[cp, 0.0, sp], [0.0, 1.0, 0.0], [-sp, 0.0, cp]])  # about body y: +pitch tilts down
    cy, sy = np.cos(yaw), np.sin(yaw)
    R_yaw = np.array([[cy, -sy, 0.0], [sy, cy, 0.0], [0.0, 0.0, 1.0]])
    return R_yaw @ R_pitch @ R_body_opt


@dataclass
class Camera:
    """One camera of the rig.

    Attributes:
        name: camera name (e.g. ``CAM_FRONT``).
        K: 3x3 intrinsics for an image of ``width`` x ``height``.
        T_base_cam: 4x4 pose of the camera optical frame in the base frame (base_link <- optical).
        distortion: OpenCV distortion coefficients (zeros for rectified images).
        frame_id: the optical frame's name in TF.
    """

    name: str
    K: np.ndarray
    width: int
    height: int
    T_base_cam: np.ndarray
    distortion: np.ndarray = field(default_factory=lambda: np.zeros(5))
    frame_id: str = ''

    def __post_init__(self) -> None:
        self.K = np.asarray(self.K, dtype=np.float64)
        self.T_base_cam = np.asarray(self.T_base_cam, dtype=np.float64)
        self.distortion = np.asarray(self.distortion, dtype=np.float64).reshape(-1)
        if not self.frame_id:
            self.frame_id = f'{self.name}_optical_frame'

    @property
    def size(self) -> tuple[int, int]:
        """``(width, height)``."""
        return self.width, self.height

    def resized(self, width: int, height: int) -> 'Camera':
        """The same camera for images resized to ``width`` x ``height`` (K scaled per axis)."""
        return replace(self, K=resize_intrinsics(self.K, self.size, (width, height)), width=width, height=height)

    def cropped(self, x0: int, y0: int, width: int, height: int) -> 'Camera':
        return replace(self, K=crop_intrinsics(self.K, x0, y0), width=width, height=height)

    def to_dict(self) -> dict[str, Any]:
        return {
            'name': self.name, 'frame_id': self.frame_id, 'width': int(self.width), 'height': int(self.height),
            'K': self.K.tolist(), 'distortion': self.distortion.tolist(),
            'translation': self.T_base_cam[:3, 3].tolist(),
            'rotation': matrix_to_quat(self.T_base_cam[:3, :3]).tolist(),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], where: str = 'camera') -> 'Camera':
        if not isinstance(d, Mapping):
            raise RigError(f'{where}: expected a mapping with name, width, height, K, translation, rotation')
        for key in ('name', 'width', 'height', 'K', 'translation'):
            if key not in d:
                raise RigError(f'{where}: missing field {key!r}')
        where = f'{where} {d["name"]!r}'
        unknown = set(d) - {'name', 'frame_id', 'width', 'height', 'K', 'distortion', 'translation', 'rotation',
                            'rotation_matrix'}
        if unknown:
            raise RigError(f'{where}: unknown field(s) {sorted(unknown)}')
        try:
            K = check_intrinsics(np.asarray(d['K'], dtype=np.float64), f'{where}: field K')
        except (ValueError, TypeError) as exc:
            raise RigError(str(exc)) from None
        t = np.asarray(d['translation'], dtype=np.float64)
        if t.shape != (3,):
            raise RigError(f'{where}: field translation must be [x, y, z], got shape {t.shape}')
        if 'rotation' in d and 'rotation_matrix' in d:
            raise RigError(f'{where}: give either rotation (quaternion x, y, z, w) or rotation_matrix, not both')
        if 'rotation' in d:
            q = np.asarray(d['rotation'], dtype=np.float64)
            if q.shape != (4,):
                raise RigError(f'{where}: field rotation must be a quaternion [x, y, z, w], got shape {q.shape}')
            if abs(np.linalg.norm(q) - 1.0) > 1e-3:
                raise RigError(f'{where}: field rotation is not a unit quaternion (norm {np.linalg.norm(q):.4f}); '
                               f'normalise it')
            T = make_transform(q, t)
        elif 'rotation_matrix' in d:
            R = np.asarray(d['rotation_matrix'], dtype=np.float64)
            if R.shape != (3, 3):
                raise RigError(f'{where}: field rotation_matrix must be 3x3, got shape {R.shape}')
            if not is_rotation_matrix(R, tol=1e-4):
                raise RigError(f'{where}: field rotation_matrix is not orthonormal with determinant +1; '
                               f'give a proper rotation (R^T R = I)')
            T = make_transform(R, t)
        else:
            raise RigError(f'{where}: missing field rotation (quaternion x, y, z, w) or rotation_matrix')
        width, height = d['width'], d['height']
        if not (isinstance(width, int) and isinstance(height, int) and width > 0 and height > 0):
            raise RigError(f'{where}: fields width and height must be positive integers')
        return cls(name=str(d['name']), K=K, width=width, height=height, T_base_cam=T,
                   distortion=np.asarray(d.get('distortion', np.zeros(5)), dtype=np.float64),
                   frame_id=str(d.get('frame_id', '')))


@dataclass
class LidarMount:
    """Where the LiDAR sits: its TF frame and ``T_base_lidar`` (base_link <- LiDAR frame)."""

    frame_id: str
    T_base_lidar: np.ndarray

    def __post_init__(self) -> None:
        self.T_base_lidar = np.asarray(self.T_base_lidar, dtype=np.float64)

    def to_dict(self) -> dict[str, Any]:
        return {'frame_id': self.frame_id, 'translation': self.T_base_lidar[:3, 3].tolist(),
                'rotation': matrix_to_quat(self.T_base_lidar[:3, :3]).tolist()}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], where: str = 'lidar') -> 'LidarMount':
        if not isinstance(d, Mapping) or not {'frame_id', 'translation', 'rotation'} <= set(d):
            raise RigError(f'{where}: expected a mapping with frame_id, translation [x, y, z] and rotation '
                           f'[x, y, z, w]')
        q = np.asarray(d['rotation'], dtype=np.float64)
        t = np.asarray(d['translation'], dtype=np.float64)
        if q.shape != (4,) or t.shape != (3,) or abs(np.linalg.norm(q) - 1.0) > 1e-3:
            raise RigError(f'{where}: rotation must be a unit quaternion [x, y, z, w] and translation [x, y, z]')
        return cls(str(d['frame_id']), make_transform(q, t))


@dataclass
class CameraRig:
    """Cameras in cyclic order around the vehicle, the base frame their extrinsics are expressed in, and
    optionally the LiDAR's mount."""

    cameras: list[Camera]
    base_frame: str = 'base_link'
    lidar: LidarMount | None = None

    def __post_init__(self) -> None:
        names = [c.name for c in self.cameras]
        if len(set(names)) != len(names):
            raise RigError(f'camera names must be unique, got {names}')

    def __len__(self) -> int:
        return len(self.cameras)

    def __iter__(self) -> Iterator[Camera]:
        return iter(self.cameras)

    def __getitem__(self, key: int | str) -> Camera:
        if isinstance(key, str):
            return self.cameras[self.index(key)]
        return self.cameras[key]

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.cameras]

    def index(self, name: str) -> int:
        try:
            return self.names.index(name)
        except ValueError:
            raise KeyError(f'camera {name!r} is not in the rig {self.names}') from None

    def adjacent_pairs(self) -> list[tuple[int, int]]:
        """Cyclic neighbour pairs ``(i, (i + 1) mod N)``: (0,1), (1,2), ..., (N-1,0)."""
        n = len(self.cameras)
        return [(i, (i + 1) % n) for i in range(n)] if n > 1 else []

    def intrinsics(self) -> np.ndarray:
        """``[N, 3, 3]``."""
        return np.stack([c.K for c in self.cameras])

    def extrinsics(self) -> np.ndarray:
        """``[N, 4, 4]`` base <- camera optical."""
        return np.stack([c.T_base_cam for c in self.cameras])

    def resized(self, width: int, height: int) -> 'CameraRig':
        return CameraRig([c.resized(width, height) for c in self.cameras], self.base_frame, self.lidar)

    def to_dict(self) -> dict[str, Any]:
        out = {'base_frame': self.base_frame, 'cameras': [c.to_dict() for c in self.cameras]}
        if self.lidar is not None:
            out['lidar'] = self.lidar.to_dict()
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], source: str = 'rig') -> 'CameraRig':
        if not isinstance(d, Mapping) or 'cameras' not in d:
            raise RigError(f'{source}: expected a mapping with a "cameras" list')
        cams = d['cameras']
        if not isinstance(cams, Sequence) or isinstance(cams, str) or not cams:
            raise RigError(f'{source}: field cameras must be a non-empty list')
        cameras = [Camera.from_dict(c, f'{source}: cameras[{i}]') for i, c in enumerate(cams)]
        lidar = LidarMount.from_dict(d['lidar'], f'{source}: lidar') if d.get('lidar') is not None else None
        rig = cls(cameras, str(d.get('base_frame', 'base_link')), lidar)
        preset = d.get('preset')
        if preset is not None:
            expected = preset_camera_names(preset)
            missing = [n for n in expected if n not in rig.names]
            if missing:
                raise RigError(f'{source}: missing camera(s) {missing} required by preset {preset!r} '
                               f'(cyclic order {list(expected)})')
            if tuple(rig.names) != expected:
                raise RigError(f'{source}: cameras must follow the cyclic order of preset {preset!r}: '
                               f'{list(expected)}, got {rig.names}')
        return rig

    @classmethod
    def from_yaml(cls, path: str | os.PathLike) -> 'CameraRig':
        path = Path(path)
        if not path.is_file():
            raise RigError(f'rig file {str(path)!r} does not exist; pass a rig YAML (see config/rigs/)')
        with open(path) as f:
            try:
                data = yaml.safe_load(f)
            except yaml.YAMLError as exc:
                raise RigError(f'rig file {str(path)!r} is not valid YAML: {exc}') from None
        return cls.from_dict(data, source=str(path))

    def to_yaml(self, path: str | os.PathLike) -> None:
        with atomic_write(path, 'w') as f:
            yaml.safe_dump(self.to_dict(), f, sort_keys=False, default_flow_style=None)


def synthetic_surround_rig(width: int = 640, height: int = 384, names: Sequence[str] | None = None,
                           yaws_deg: Sequence[float] = (0.0, 55.0, 110.0, 180.0, -110.0, -55.0),
                           hfovs_deg: Sequence[float] = (70.0, 70.0, 70.0, 110.0, 70.0, 70.0),
                           positions: Sequence[Sequence[float]] | None = None,
                           pitch_deg: float = 0.0, base_frame: str = 'base_link') -> CameraRig:
    """A nuScenes-like six-camera rig (yaw, field of view and mounting close to nuScenes' cameras).

    Adjacent cameras overlap by roughly 15-30 % of their field of view. Square pixels; the principal point at the
    image centre ``((W - 1) / 2, (H - 1) / 2)``.
    """
    names = tuple(names or RIG_PRESETS['surroundsim'])
    if positions is None:
        positions = [(1.70, 0.0, 1.55), (1.55, 0.50, 1.55), (1.05, 0.50, 1.55),
                     (0.05, 0.0, 1.55), (1.05, -0.50, 1.55), (1.55, -0.50, 1.55)]
    if not (len(names) == len(yaws_deg) == len(hfovs_deg) == len(positions)):
        raise RigError('names, yaws_deg, hfovs_deg and positions must have one entry per camera')
    cameras = []
    for name, yaw, hfov, pos in zip(names, yaws_deg, hfovs_deg, positions):
        f = (width / 2.0) / np.tan(np.deg2rad(hfov) / 2.0)
        K = np.array([[f, 0.0, (width - 1) / 2.0], [0.0, f, (height - 1) / 2.0], [0.0, 0.0, 1.0]])
        T = make_transform(optical_rotation(np.deg2rad(yaw), np.deg2rad(pitch_deg)), pos)
        cameras.append(Camera(name=name, K=K, width=width, height=height, T_base_cam=T))
    return CameraRig(cameras, base_frame)
