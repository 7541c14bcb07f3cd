"""DDAD scenes (DGP layout) -> rosbag2, at native resolution (1936 x 1216), as recorded.

Images go out as stored (distorted when the calibration has coefficients); ``camera_info`` carries DGP's
coefficients in OpenCV order (``plumb_bob`` or ``rational_polynomial``), so the node undistorts them as it would a
live camera. The LiDAR sweep goes out in its own frame (``ring`` = 0: DDAD does not store it). DDAD's sensors share
one stamp per sample. Optional GT depth: SurroundDepth's preprocessed ``.npy`` when ``depth_root`` is given, else
the sweep projected into the (undistorted) camera.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from surround_depth_ros.bag.scene import CameraEvent, LidarEvent
from surround_depth_train.data.assemble import read_rgb
from surround_depth_train.data.ddad import MAX_DEPTH, load_ddad_index, read_dgp_points
from surround_depth_train.data.schema import DatasetError
from surround_depth_train.geometry.lidar import points_to_depth
from surround_depth_train.geometry.rig import Camera, CameraRig, LidarMount
from surround_depth_train.geometry.transforms import transform_points

__all__ = ['DDADScenes']


def _png(path: Path) -> tuple[bytes, str]:
    if not path.is_file():
        raise DatasetError(f'image file {str(path)!r} is missing; re-extract the DDAD archive')
    return path.read_bytes(), 'png'


def _points(path: Path) -> np.ndarray:
    xyzi = read_dgp_points(path)
    return np.concatenate([xyzi, np.zeros((len(xyzi), 1))], axis=1)


class DDADScenes:
    """The scenes of one DDAD split, as (rig, events) per scene.

    Args:
        root: the folder of ``ddad.json``.
        split: ``train`` or ``val``.
        scenes: scene folder names to keep.
        depth_root: SurroundDepth's preprocessed depth (for the optional GT topics).
    """

    def __init__(self, root: str | Path, split: str = 'val', scenes: Sequence[str] | None = None,
                 depth_root: str | Path | None = None):
        self.root = Path(root)
        self.depth_root = None if depth_root is None else Path(depth_root)
        self.records = load_ddad_index(self.root, split, scenes)
        self.names = list(dict.fromkeys(r['scene'] for r in self.records))

    def rig(self, name: str) -> CameraRig:
        rec = next(r for r in self.records if r['scene'] == name)
        cams = [Camera(name=c['name'], K=c['K'], width=c['width'], height=c['height'], T_base_cam=c['T_base_sensor'],
                       distortion=c['D']) for c in rec['cameras']]
        return CameraRig(cams, lidar=LidarMount('lidar', rec['lidar']['T_base_sensor']))

    def events(self, name: str, *, compressed: bool = False, depth: bool = False) -> list[CameraEvent | LidarEvent]:
        out: list[CameraEvent | LidarEvent] = []
        for rec in (r for r in self.records if r['scene'] == name):
            sdir = Path(rec['scene_dir'])
            lid = rec['lidar']
            out.append(LidarEvent(stamp=lid['stamp'], T_world_base=lid['T_world_base'],
                                  load=lambda p=sdir / lid['file']: _points(p)))
            for c in rec['cameras']:
                path = sdir / c['file']
                load = (lambda p=path: _png(p)) if compressed else (lambda p=path: read_rgb(p))
                gt = (lambda rec=rec, c=c: self._depth(rec, c)) if depth else None
                out.append(CameraEvent(camera=c['name'], stamp=c['stamp'], T_world_base=c['T_world_base'],
                                       load=load, compressed=compressed, depth=gt, K=c['K'], distortion=c['D'],
                                       distortion_model=c['distortion_model']))
        out.sort(key=lambda e: (e.stamp, isinstance(e, CameraEvent)))
        return out

    def _depth(self, rec: dict, cam: dict) -> np.ndarray:
        if self.depth_root is not None:
            path = self.depth_root / rec['scene'] / 'depth' / cam['name'] / f'{Path(cam["file"]).stem}.npy'
            if not path.is_file():
                raise DatasetError(f'preprocessed depth {str(path)!r} is missing; run SurroundDepth\'s export or '
                                   f'convert without --depth-root')
            return np.load(path)
        pts = transform_points(rec['lidar']['T_base_sensor'],
                               read_dgp_points(Path(rec['scene_dir']) / rec['lidar']['file'])[:, :3])
        camera = Camera(name=cam['name'], K=cam['K'], width=cam['width'], height=cam['height'],
                        T_base_cam=cam['T_base_sensor'])
        depth = points_to_depth(pts, camera, max_depth=MAX_DEPTH)  # DDAD: one stamp per sample, no ego motion
        if np.any(cam['D']):  # the image on the topic is distorted: move the depth onto its pixels as well
            depth = _distort_depth(depth, cam['K'], cam['D'])
        return depth


def _distort_depth(depth: np.ndarray, K: np.ndarray, D: np.ndarray) -> np.ndarray:
    """Move a pinhole depth map to the distorted image's pixels (nearest pixel, nearest depth wins)."""
    v, u = np.nonzero(depth > 0)
    z = depth[v, u]
    rays = np.stack([(u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1], np.ones_like(z, dtype=np.float64)], axis=1)
    uv, _ = cv2.projectPoints(rays.reshape(-1, 1, 3), np.zeros(3), np.zeros(3), K, D)
    uv = np.round(uv.reshape(-1, 2)).astype(np.int64)
    h, w = depth.shape
    ok = (uv[:, 0] >= 0) & (uv[:, 0] < w) & (uv[:, 1] >= 0) & (uv[:, 1] < h)
    out = np.full(depth.shape, np.inf, dtype=np.float32)
    np.minimum.at(out, (uv[ok, 1], uv[ok, 0]), z[ok])
    out[np.isinf(out)] = 0.0
    return out
