"""DDAD reader on a tiny tree in the DGP layout (with SurroundDepth's masks and preprocessed depth beside it)."""
import json
import re

import cv2
import numpy as np
import pytest
import torch

from surround_depth_train.data import schema as S
from surround_depth_train.data.ddad import DDAD_CAMERAS, DDADDataset, dgp_distortion, undistort
from surround_depth_train.geometry.transforms import invert_transform

SIZE = (96, 64)


def test_loader_yields_the_schema_in_ddad_cyclic_order_with_ego_poses(ddad_root):
    ds = DDADDataset(ddad_root, split='train', image_size=SIZE, native_depth=True)
    assert len(ds) == 3 and ds.max_depth == 200.0
    sample = ds[2]
    S.validate_sample(sample, 6, SIZE)
    assert sample[S.META]['camera_names'] == ['CAMERA_01', 'CAMERA_05', 'CAMERA_07', 'CAMERA_09', 'CAMERA_08',
                                              'CAMERA_06']
    assert sample[S.META]['scene'] == '000150' and sample[S.META]['frame'] == 2
    # DGP poses are the sensors' poses in the world: the ego pose recovered from each camera is the same one
    assert torch.allclose(sample[S.T_WORLD_BASE_CAMS], sample[S.T_WORLD_BASE].expand(6, 4, 4), atol=1e-3)
    assert bool(sample[S.SELF_MASK].all())  # no mask folder given: every pixel sees the scene
    assert tuple(sample[S.DEPTH_NATIVE].shape) == (6, 1, 304, 484)
    assert sample[S.DEPTH_MASK].sum() > 300


def test_projected_depth_matches_the_points_in_each_camera(ddad_root):
    ds = DDADDataset(ddad_root, split='train', image_size=SIZE, native_depth=True)
    sample = ds[0]
    pts = ds.lidar_base(0)[:, :3]
    cam = ds.native_rig(0)[0]
    p = (invert_transform(cam.T_base_cam)[:3, :3] @ pts.T).T + invert_transform(cam.T_base_cam)[:3, 3]
    front = p[:, 2] > 0.5
    u = np.round(cam.K[0, 0] * p[front, 0] / p[front, 2] + cam.K[0, 2]).astype(int)
    v = np.round(cam.K[1, 1] * p[front, 1] / p[front, 2] + cam.K[1, 2]).astype(int)
    inside = (u >= 0) & (u < cam.width) & (v >= 0) & (v < cam.height)
    depth = sample[S.DEPTH_NATIVE][0, 0].numpy()
    # every pixel a point lands on holds that point's depth or a nearer one (z-buffer)
    assert np.all(depth[v[inside], u[inside]] <= p[front, 2][inside] + 1e-4)
    assert np.all(depth[v[inside], u[inside]] > 0)


def test_surrounddepth_masks_and_preprocessed_depth_are_used_when_given(ddad_root):
    ds = DDADDataset(ddad_root, split='val', image_size=SIZE, masks=ddad_root / 'mask',
                     depth_root=ddad_root / 'depth', native_depth=True)
    sample = ds[0]
    # the mask's ego body (bottom 15 %) is invalid after resizing, as SurroundDepth reads it (channel 0 == 0)
    assert not bool(sample[S.SELF_MASK][:, :, -3:].any()) and bool(sample[S.SELF_MASK][:, :, :40].all())
    stem = ds.records[0]['cameras'][1]['file'].split('/')[-1][:-4]
    npy = np.load(ddad_root / 'depth' / '000151' / 'depth' / 'CAMERA_05' / f'{stem}.npy')
    assert np.array_equal(sample[S.DEPTH_NATIVE][1, 0].numpy(), npy)
    assert not bool((sample[S.DEPTH_MASK] & ~sample[S.SELF_MASK]).any())


def test_distorted_cameras_are_undistorted_with_the_same_K(tmp_path, dataset_fixtures):
    root = dataset_fixtures.write_ddad(tmp_path / 'ddad', distortion=True, masks=False, depth=False, points=200)
    ds = DDADDataset(root, split='val', image_size=SIZE)
    rec = ds.records[0]['cameras'][0]
    model, D = dgp_distortion({'k1': -0.05, 'k2': 0.01})
    assert model == 'plumb_bob' and np.allclose(rec['D'], D)
    raw = cv2.imread(str(root / '000151' / rec['file']))[..., ::-1]
    out = undistort(np.ascontiguousarray(raw), rec['K'], rec['D'])
    # the same pixels as the ROS node's undistorter fed the CameraInfo the converter writes
    from surround_depth_train.data.rosbag.messages import CameraIntrinsics
    from surround_depth_train.data.rosbag.undistort import Undistorter

    node = Undistorter('CAMERA_01')
    node.set_intrinsics(CameraIntrinsics(K=rec['K'], D=rec['D'], model=model, width=raw.shape[1],
                                         height=raw.shape[0]))
    assert np.array_equal(out, node.undistort(np.ascontiguousarray(raw)))
    assert not np.array_equal(out, raw)
    assert np.allclose(ds[0][S.K][0].numpy(), ds.rig[0].K, atol=1e-5)
    assert dgp_distortion({'k1': 0.1, 'k4': 0.01})[0] == 'rational_polynomial'


def test_bad_inputs_name_the_file_and_the_fix(tmp_path, dataset_fixtures, ddad_root):
    with pytest.raises(S.DatasetError, match='does not exist'):
        DDADDataset(tmp_path / 'nowhere')
    with pytest.raises(S.DatasetError, match=r"ddad.json.* is missing"):
        DDADDataset(tmp_path)
    with pytest.raises(S.DatasetError, match=r"scene\(s\) \['000999'\] are not in the DDAD train split"):
        DDADDataset(ddad_root, scenes=['000999'])
    with pytest.raises(S.DatasetError, match='masks folder .* does not exist'):
        DDADDataset(ddad_root, masks=tmp_path / 'no_masks')
    root = dataset_fixtures.write_ddad(tmp_path / 'ddad', masks=False, depth=False, points=100)
    index = json.loads((root / 'ddad.json').read_text())
    del index['scene_splits']['1']
    (root / 'ddad.json').write_text(json.dumps(index))
    with pytest.raises(S.DatasetError, match=r"ddad.json' lists no scene for split 'val'"):
        DDADDataset(root, split='val')
    ds = DDADDataset(root, split='train', image_size=SIZE)
    lidar = root / '000150' / ds.records[1]['lidar']['file']
    lidar.unlink()
    with pytest.raises(S.DatasetError, match=f'point-cloud file .*{re.escape(lidar.name)}.* is missing'):
        ds[1]
    calib = next((root / '000150' / 'calibration').glob('*.json'))
    doc = json.loads(calib.read_text())
    doc['names'][doc['names'].index('CAMERA_09')] = 'CAMERA_99'  # CAMERA_09 missing from every sample
    calib.write_text(json.dumps(doc))
    with pytest.warns(UserWarning, match='skipped 3 sample'):
        with pytest.raises(S.DatasetError, match='no complete sample'):
            DDADDataset(root, split='train', scenes=['000150'])
    assert DDAD_CAMERAS[3] == 'CAMERA_09'


def test_lower_camel_case_dgp_json_reads_the_same(tmp_path, dataset_fixtures):
    """protobuf's JSON parser accepts both spellings, so DGP files may carry either."""
    root = dataset_fixtures.write_ddad(tmp_path / 'ddad', masks=False, depth=False, points=100)
    before = DDADDataset(root, split='val', image_size=SIZE)

    def camel(obj):
        if isinstance(obj, dict):
            return {re.sub(r'_([a-z])', lambda m: m.group(1).upper(), k): camel(v) for k, v in obj.items()}
        return [camel(v) for v in obj] if isinstance(obj, list) else obj

    for path in [root / 'ddad.json', *root.glob('*/scene_*.json'), *root.glob('*/calibration/*.json')]:
        path.write_text(json.dumps(camel(json.loads(path.read_text()))))
    assert 'datumKeys' in next(root.glob('000151/scene_*.json')).read_text()
    after = DDADDataset(root, split='val', image_size=SIZE)
    assert [c['stamp'] for r in after.records for c in r['cameras']] == \
        [c['stamp'] for r in before.records for c in r['cameras']]
    assert torch.equal(after[1][S.DEPTH], before[1][S.DEPTH])


def test_stamps_come_from_the_rfc3339_datum_timestamps(ddad_root):
    ds = DDADDataset(ddad_root, split='train', image_size=SIZE)
    stamps = [r['lidar']['stamp'] for r in ds.records]
    assert np.allclose(np.diff(stamps), 0.1, atol=1e-6) and abs(stamps[0] - 1567566724.0) < 1e-6
