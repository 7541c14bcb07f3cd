"""DDAD in the one sample schema, read directly from the DGP layout users download (no ``dgp`` package needed).

Layout (``root`` = the folder of ``ddad.json``, e.g. ``ddad_train_val/``)::

    ddad.json                                   scene_splits: {"0": train files, "1": val files}
    <scene>/scene_<sha1>.json                   samples (datum_keys, calibration_key) and data (one per datum)
    <scene>/calibration/<calibration_key>.json  names, intrinsics (fx fy cx cy skew k1..k6 p1 p2), extrinsics
    <scene>/rgb/CAMERA_XX/<timestamp>.png
    <scene>/point_cloud/LIDAR/<timestamp>.npz   'data': N x 4 X, Y, Z, INTENSITY (or a structured array)

Conventions of DGP: ``extrinsics`` are the sensor's pose in the vehicle frame (base_link <- sensor; camera frames
are optical); each datum's ``pose`` is the sensor's pose in the scene's world frame at its stamp, so the ego pose
is ``T_world_base = pose @ inv(extrinsics)``; LiDAR points are in the LiDAR frame.

The six cameras in the cyclic order CAMERA_01, 05, 07, 09, 08, 06 (front, front_left, back_left, back, back_right,
front_right); 640 x 384; max depth 200 m. Cameras with distortion coefficients are undistorted the way the ROS node
does (``cv2.initUndistortRectifyMap`` with the new camera matrix = ``K``, so ``K`` and the extrinsics stay valid)
before resizing. SurroundDepth's files are optional: ``masks`` (``<masks>/<CAM>/<scene>/mask.png``; after
resizing to the network size, valid where channel 0 (OpenCV BGR) is 0, as SurroundDepth reads them) become
``self_mask``; ``depth_root`` (``<depth_root>/<scene>/depth/<CAM>/<timestamp>.npy``, native resolution) replaces
the projection of the LiDAR sweep.
"""
from __future__ import annotations

import json
import os
import warnings
from functools import lru_cache
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from surround_depth_train.data import schema as S
from surround_depth_train.data.assemble import assemble_sample, read_rgb
from surround_depth_train.geometry.rig import RIG_PRESETS, Camera, CameraRig, LidarMount
from surround_depth_train.geometry.transforms import invert_transform, make_transform, transform_points

__all__ = ['DDAD_CAMERAS', 'LIDAR_NAME', 'MIN_DEPTH', 'MAX_DEPTH', 'IMAGE_SIZE', 'dgp_pose', 'dgp_distortion',
           'read_dgp_points', 'load_ddad_index', 'undistort', 'DDADDataset']

DDAD_CAMERAS: tuple[str, ...] = RIG_PRESETS['ddad']
LIDAR_NAME = 'LIDAR'
MIN_DEPTH = 0.1
MAX_DEPTH = 200.0
IMAGE_SIZE = (640, 384)
_SPLIT_IDS = {'train': '0', 'val': '1', 'test': '2'}


def _load_json(path: Path, what: str) -> Any:
    if not path.is_file():
        raise S.DatasetError(f'DDAD {what} {str(path)!r} is missing; re-extract the DDAD archive (DGP layout)')
    try:
        return _snake(json.loads(path.read_text()))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise S.DatasetError(f'DDAD {what} {str(path)!r} is not valid JSON ({exc}); re-extract it') from None


def dgp_pose(pose: dict) -> np.ndarray:
    """4x4 of a DGP pose ``{translation: {x, y, z}, rotation: {qx, qy, qz, qw}}`` (missing fields are 0)."""
    t, r = pose.get('translation', {}), pose.get('rotation', {})
    q = np.array([r.get('qx', 0.0), r.get('qy', 0.0), r.get('qz', 0.0), r.get('qw', 0.0)], dtype=np.float64)
    if not np.any(q):
        q = np.array([0.0, 0.0, 0.0, 1.0])  # DGP: an empty pose is the identity
    return make_transform(q, [t.get('x', 0.0), t.get('y', 0.0), t.get('z', 0.0)])


def dgp_distortion(intr: dict) -> tuple[str, np.ndarray]:
    """``(distortion_model, D)`` of DGP intrinsics in OpenCV order (plumb_bob or rational_polynomial)."""
    k = [float(intr.get(f'k{i}', 0.0)) for i in range(1, 7)]
    p = [float(intr.get('p1', 0.0)), float(intr.get('p2', 0.0))]
    if intr.get('fisheye'):
        raise S.DatasetError('DDAD calibration marks a camera as fisheye; only pinhole cameras are supported')
    if any(k[3:]):
        return 'rational_polynomial', np.array(k[:2] + p + k[2:], dtype=np.float64)
    return 'plumb_bob', np.array(k[:2] + p + k[2:3], dtype=np.float64)


def read_dgp_points(path: Path) -> np.ndarray:
    """``[M, 4]`` x, y, z, intensity of a DGP ``.npz`` point cloud (the LiDAR's frame)."""
    if not path.is_file():
        raise S.DatasetError(f'point-cloud file {str(path)!r} is missing; re-extract the DDAD archive')
    try:
        with np.load(path) as z:
            x = z['data']
    except (OSError, ValueError, KeyError, EOFError) as exc:
        raise S.DatasetError(f'point-cloud file {str(path)!r} cannot be read ({exc}); it must be an .npz with a '
                             f"'data' array (N x 4 X, Y, Z, INTENSITY): re-extract it") from None
    if x.dtype.fields is not None:
        x = np.stack([x['X'], x['Y'], x['Z'], x['INTENSITY']], axis=1)
    if x.ndim != 2 or x.shape[1] < 4:
        raise S.DatasetError(f'point-cloud file {str(path)!r} holds shape {x.shape}; expected N x 4 (X, Y, Z, I)')
    return np.asarray(x[:, :4], dtype=np.float64)


def load_ddad_index(root: str | os.PathLike, split: str, scenes: Sequence[str] | None = None) -> list[dict]:
    """Every sample of ``split`` with all six cameras and the LiDAR, as plain records (see :class:`DDADDataset`).

    Returns records ``{scene, scene_dir, frame, cameras: [...], lidar: {...}}``; samples that lack a sensor are
    left out with a warning that counts them.
    """
    root = Path(root)
    if not root.is_dir():
        raise S.DatasetError(f'DDAD root {str(root)!r} does not exist; pass the folder that holds ddad.json '
                             f'(e.g. .../ddad_train_val)')
    index = _load_json(root / 'ddad.json', 'dataset file')
    if split not in _SPLIT_IDS:
        raise S.DatasetError(f'unknown DDAD split {split!r}; use train or val')
    files = index.get('scene_splits', {}).get(_SPLIT_IDS[split], {}).get('filenames', [])
    if not files:
        raise S.DatasetError(f'{str(root / "ddad.json")!r} lists no scene for split {split!r}; use train or val')
    by_name = {Path(f).parts[0]: f for f in files}
    if scenes:
        missing = [s for s in scenes if s not in by_name]
        if missing:
            raise S.DatasetError(f'scene(s) {missing} are not in the DDAD {split} split; its scenes: '
                                 f'{sorted(by_name)[:20]}{" ..." if len(by_name) > 20 else ""}')
        by_name = {s: by_name[s] for s in by_name if s in set(scenes)}
    records, skipped = [], 0
    for scene, rel in by_name.items():
        sdir = root / scene
        doc = _load_json(root / rel, 'scene file')
        data = {d['key']: d for d in doc.get('data', [])}
        calibs: dict[str, dict] = {}
        for frame, sample in enumerate(doc.get('samples', [])):
            ckey = sample['calibration_key']
            if ckey not in calibs:
                calibs[ckey] = _calibration(sdir / 'calibration' / f'{ckey}.json')
            datums = {data[k]['id']['name']: data[k] for k in sample.get('datum_keys', []) if k in data}
            if not all(n in datums for n in DDAD_CAMERAS + (LIDAR_NAME,)) \
                    or not all(n in calibs[ckey] for n in DDAD_CAMERAS + (LIDAR_NAME,)):
                skipped += 1
                continue
            records.append({'scene': scene, 'scene_dir': str(sdir), 'frame': frame,
                            'cameras': [_datum_record(datums[n], calibs[ckey][n], 'image') for n in DDAD_CAMERAS],
                            'lidar': _datum_record(datums[LIDAR_NAME], calibs[ckey][LIDAR_NAME], 'point_cloud')})
    if skipped:
        warnings.warn(f'DDAD {split}: skipped {skipped} sample(s) that lack one of the six cameras or the LiDAR',
                      stacklevel=2)
    if not records:
        raise S.DatasetError(f'DDAD {split} under {str(root)!r} has no complete sample (six cameras + LIDAR)')
    return records


def _calibration(path: Path) -> dict[str, dict]:
    doc = _load_json(path, 'calibration file')
    out = {}
    for name, intr, extr in zip(doc.get('names', []), doc.get('intrinsics', []), doc.get('extrinsics', [])):
        entry = {'T_base_sensor': dgp_pose(extr)}
        if intr and intr.get('fx'):
            entry['K'] = np.array([[intr['fx'], intr.get('skew', 0.0), intr['cx']], [0.0, intr['fy'], intr['cy']],
                                   [0.0, 0.0, 1.0]], dtype=np.float64)
            entry['distortion_model'], entry['D'] = dgp_distortion(intr)
        out[name] = entry
    return out


def _stamp(ident: dict, filename: str) -> float:
    """Seconds of a datum from its id's RFC 3339 timestamp (what DGP reads; DDAD's file names count 100 ns)."""
    import calendar
    import re

    text = str(ident.get('timestamp', ''))
    m = re.fullmatch(r'(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(?:\.(\d+))?Z', text)
    if m is None:
        raise S.DatasetError(f'DDAD datum {ident.get("name")!r} ({filename}) has timestamp {text!r}, not RFC 3339 '
                             f'(YYYY-MM-DDTHH:MM:SS.ffffffZ); the scene JSON is damaged: re-extract it')
    whole = calendar.timegm(tuple(int(g) for g in m.groups()[:6]))
    frac = m.group(7) or '0'
    return whole + int(frac) / 10 ** len(frac)


def _snake(obj: Any) -> Any:
    """DGP JSON keys in snake_case (``datum_keys``): protobuf's parser also accepts lowerCamelCase ones."""
    import re

    if isinstance(obj, dict):
        return {(re.sub(r'(?<=[a-z0-9])([A-Z])', lambda m: '_' + m.group(1).lower(), k)
                 if isinstance(k, str) and k[:1].islower() else k): _snake(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_snake(v) for v in obj]
    return obj


def _datum_record(datum: dict, calib: dict, kind: str) -> dict[str, Any]:
    body = datum['datum'].get(kind)
    if body is None:
        raise S.DatasetError(f'DDAD datum {datum["id"]["name"]!r} ({datum["key"]}) is not of type {kind}')
    T_world_sensor = dgp_pose(body.get('pose', {}))
    rec = {'name': datum['id']['name'], 'file': body['filename'], 'stamp': _stamp(datum['id'], body['filename']),
           'T_base_sensor': calib['T_base_sensor'],
           'T_world_base': T_world_sensor @ invert_transform(calib['T_base_sensor'])}
    if kind == 'image':
        rec.update(width=int(body.get('width', 0)), height=int(body.get('height', 0)), K=calib['K'],
                   D=calib['D'], distortion_model=calib['distortion_model'])
    return rec


@lru_cache(maxsize=12)
def _undistort_maps(K: tuple, D: tuple, width: int, height: int):
    import cv2

    Km = np.array(K).reshape(3, 3)
    # fixed-point maps, as the node's data.rosbag.undistort.Undistorter: the same pixels offline and live
    return cv2.initUndistortRectifyMap(Km, np.array(D), None, Km, (width, height), cv2.CV_16SC2)


def undistort(image: np.ndarray, K: np.ndarray, D: np.ndarray) -> np.ndarray:
    """The image as a pinhole camera with the same ``K`` (what the node does); unchanged when ``D`` is zero."""
    if not np.any(D):
        return image
    import cv2

    h, w = image.shape[:2]
    mx, my = _undistort_maps(tuple(np.asarray(K, float).ravel()), tuple(np.asarray(D, float)), w, h)
    return cv2.remap(np.ascontiguousarray(image), mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                     borderValue=0)


class DDADDataset(S.SurroundDataset):
    """DDAD samples in the shared schema (module docstring).

    Args:
        root: the folder of ``ddad.json``.
        split: ``train`` or ``val``.
        scenes: optional scene folder names (``000150``, ...) to keep.
        image_size: network ``(W, H)``.
        masks: SurroundDepth's self-occlusion mask folder, or None (every pixel valid).
        depth_root: SurroundDepth's preprocessed depth folder, or None (project the LiDAR sweep).
        native_depth: also yield ``depth_native`` at 1936 x 1216 (evaluation).
    """

    dataset_name = 'ddad'

    def __init__(self, root: str | os.PathLike, split: str = 'train', scenes: Sequence[str] | None = None,
                 image_size: tuple[int, int] = IMAGE_SIZE, min_depth: float = MIN_DEPTH, max_depth: float = MAX_DEPTH,
                 masks: str | os.PathLike | None = None, depth_root: str | os.PathLike | None = None,
                 native_depth: bool = False):
        w, h = (int(v) for v in image_size)
        if w < 8 or h < 8:
            raise S.DatasetError(f'image_size must be (width, height) of at least 8 x 8 pixels, got {image_size}')
        if not 0 <= min_depth < max_depth:
            raise S.DatasetError(f'need 0 <= min_depth < max_depth, got {min_depth}, {max_depth}')
        self.root = Path(root)
        self.split = split
        self.image_size = (w, h)
        self.min_depth = float(min_depth)
        self.max_depth = float(max_depth)
        self.masks = None if masks is None else Path(masks)
        self.depth_root = None if depth_root is None else Path(depth_root)
        self.native_depth = bool(native_depth)
        for what, path in (('masks', self.masks), ('depth_root', self.depth_root)):
            if path is not None and not path.is_dir():
                raise S.DatasetError(f'DDAD {what} folder {str(path)!r} does not exist; pass SurroundDepth\'s folder '
                                     f'or leave it out')
        self.records = load_ddad_index(self.root, split, scenes)
        self.rig = self.native_rig(0).resized(w, h)

    def __len__(self) -> int:
        return len(self.records)

    def native_rig(self, index: int) -> CameraRig:
        """The rig of sample ``index`` at native resolution (after undistortion: a pinhole with the same K)."""
        return CameraRig([Camera(name=c['name'], K=c['K'], width=c['width'], height=c['height'],
                                 T_base_cam=c['T_base_sensor'])
                          for c in self.records[index]['cameras']],
                         lidar=LidarMount('lidar', self.records[index]['lidar']['T_base_sensor']))

    def lidar_base(self, index: int) -> np.ndarray:
        """The sweep of sample ``index`` in base_link: ``[M, 4]`` x, y, z, intensity."""
        rec = self.records[index]
        raw = read_dgp_points(Path(rec['scene_dir']) / rec['lidar']['file'])
        return np.concatenate([transform_points(rec['lidar']['T_base_sensor'], raw[:, :3]), raw[:, 3:4]], axis=1)

    def _self_masks(self, scene: str) -> list[np.ndarray] | None:
        if self.masks is None:
            return None
        import cv2

        out = []
        for cam in DDAD_CAMERAS:
            path = self.masks / cam / scene / 'mask.png'
            m = cv2.imread(str(path))
            if m is None:
                raise S.DatasetError(f'self-occlusion mask {str(path)!r} is missing or unreadable; point data.masks '
                                     f'at SurroundDepth\'s mask folder (<CAM>/<scene>/mask.png) or leave it empty')
            out.append(cv2.resize(m, self.image_size)[..., 0] == 0)
        return out

    def _depth_given(self, rec: dict) -> list[np.ndarray] | None:
        if self.depth_root is None:
            return None
        out = []
        for cam in rec['cameras']:
            path = self.depth_root / rec['scene'] / 'depth' / cam['name'] / f'{Path(cam["file"]).stem}.npy'
            if not path.is_file():
                raise S.DatasetError(f'preprocessed depth {str(path)!r} is missing; run SurroundDepth\'s '
                                     f'export_gt_depth_ddad.py for this scene or leave data.depth_root empty')
            out.append(np.load(path))
        return out

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not 0 <= index < len(self.records):
            raise IndexError(f'index {index} out of range for {len(self.records)} samples')
        rec = self.records[index]
        cams = rec['cameras']
        images = [undistort(read_rgb(Path(rec['scene_dir']) / c['file']), c['K'], c['D']) for c in cams]
        meta = {'dataset': self.dataset_name, 'split': self.split, 'scene': rec['scene'], 'frame': rec['frame'],
                'index': index}
        return assemble_sample(
            images=images, rig_native=self.native_rig(index), lidar_base=self.lidar_base(index),
            lidar_stamp=rec['lidar']['stamp'], stamps=[c['stamp'] for c in cams],
            T_world_base=rec['lidar']['T_world_base'], T_world_base_cams=[c['T_world_base'] for c in cams],
            image_size=self.image_size, min_depth=self.min_depth, max_depth=self.max_depth, meta=meta,
            self_masks=self._self_masks(rec['scene']), native_depth=self.native_depth,
            depth_native_given=self._depth_given(rec))
