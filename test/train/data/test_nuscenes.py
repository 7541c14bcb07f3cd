"""nuScenes reader on a tiny dataroot in the real format, read through the real nuscenes-devkit."""
import re
import shutil

import numpy as np
import pytest
import torch

from surround_depth_train.data import schema as S
from surround_depth_train.data.nuscenes import NUSCENES_CAMERAS, NuScenesDataset, open_nuscenes
from surround_depth_train.geometry.camera import resize_intrinsics

SIZE = (96, 64)


@pytest.fixture(scope='module')
def nusc(nuscenes_root):
    return open_nuscenes(nuscenes_root, 'v1.0-mini')


@pytest.fixture(scope='module')
def train_set(nuscenes_root, nusc):
    return NuScenesDataset(nuscenes_root, version='v1.0-mini', split='train', image_size=SIZE, native_depth=True,
                           nusc=nusc)


def test_loader_yields_the_schema_with_six_cameras_in_cyclic_order(train_set):
    assert len(train_set) == 3  # scene-0061 (mini_train) has three key frames; scene-0103 is mini_val
    sample = train_set[1]
    S.validate_sample(sample, 6, SIZE)
    assert sample[S.META]['camera_names'] == list(NUSCENES_CAMERAS)
    assert sample[S.META]['scene'] == 'scene-0061' and sample[S.META]['frame'] == 1
    offsets = (sample[S.STAMPS] - sample[S.LIDAR_STAMP]).numpy()
    assert np.allclose(offsets, np.array([10, 49, 43, 35, 27, 18]) * 1e-3, atol=2e-6)  # each camera's own stamp
    # the ego pose at each camera stamp differs from the one at the LiDAR stamp (the ego drives at 8 m/s)
    shift = torch.linalg.norm(sample[S.T_WORLD_BASE_CAMS][:, :3, 3] - sample[S.T_WORLD_BASE][:3, 3], dim=1)
    assert torch.all(shift > 0.05) and torch.all(shift < 0.5)
    assert sample[S.DEPTH_MASK].sum() > 200 and sample[S.DEPTH][sample[S.DEPTH_MASK]].max() <= 80.0
    assert tuple(sample[S.DEPTH_NATIVE].shape) == (6, 1, 450, 800)


def test_intrinsics_follow_the_anisotropic_resize_of_the_whole_image(train_set, nusc):
    sample = train_set[0]
    cs = nusc.get('calibrated_sensor', nusc.get('sample_data', train_set.records[0]['cameras'][3]['token'])
                  ['calibrated_sensor_token'])
    K = resize_intrinsics(np.array(cs['camera_intrinsic']), (800, 450), SIZE)
    assert np.allclose(sample[S.K][3].numpy(), K, atol=1e-4)


def test_projected_lidar_depth_equals_the_devkit_projection(train_set, nusc):
    """Our native-resolution depth against ``NuScenesExplorer.map_pointcloud_to_image`` for the same sweep."""
    sample = train_set[0]
    rec = train_set.records[0]
    depth = sample[S.DEPTH_NATIVE][:, 0].numpy()
    compared = 0
    for i, cam in enumerate(rec['cameras']):
        uv, z, _ = nusc.explorer.map_pointcloud_to_image(rec['lidar']['token'], cam['token'], min_dist=0.0)
        h, w = depth.shape[1:]
        # devkit: points with 1 < u < W - 1, 1 < v < H - 1; z-buffer them onto the nearest pixel centre
        u, v = np.round(uv[0]).astype(int), np.round(uv[1]).astype(int)
        ref = np.full((h, w), np.inf)
        np.minimum.at(ref, (v, u), z)
        ref[np.isinf(ref)] = 0.0
        inner = np.zeros((h, w), bool)
        inner[2:h - 2, 2:w - 2] = True  # away from the devkit's one-pixel margin
        # the devkit works in float32 at global coordinates (~1.7 km here, as in nuScenes), so a point within
        # 0.02 px of a pixel boundary may round to either neighbour: leave both out
        near_edge = np.zeros((h, w), bool)
        tol = 0.02
        for du in (-tol, tol):
            for dv in (-tol, tol):
                uu = np.clip(np.round(uv[0] + du).astype(int), 0, w - 1)
                vv = np.clip(np.round(uv[1] + dv).astype(int), 0, h - 1)
                moved = (uu != u) | (vv != v)
                near_edge[vv[moved], uu[moved]] = True
                near_edge[v[moved], u[moved]] = True
        sel = inner & ~near_edge
        assert np.array_equal(depth[i][sel] > 0, ref[sel] > 0), NUSCENES_CAMERAS[i]
        hit = sel & (ref > 0)
        assert np.allclose(depth[i][hit], ref[hit], rtol=1e-5, atol=1e-4), NUSCENES_CAMERAS[i]
        compared += int(hit.sum())
    assert compared > 1000


def test_v1_0_mini_val_split_and_scene_filter(nuscenes_root, nusc):
    val = NuScenesDataset(nuscenes_root, version='v1.0-mini', split='val', image_size=SIZE, nusc=nusc)
    assert len(val) == 2 and {r['scene'] for r in val.records} == {'scene-0103'}
    assert S.DEPTH_NATIVE not in val[0]  # native GT only on request
    one = NuScenesDataset(nuscenes_root, version='v1.0-mini', split='train', scenes=['scene-0061'],
                          image_size=SIZE, nusc=nusc)
    assert len(one) == 3
    with pytest.raises(S.DatasetError, match=r"scene-0103.*not in split 'mini_train'"):
        NuScenesDataset(nuscenes_root, version='v1.0-mini', split='train', scenes=['scene-0103'], nusc=nusc)


def test_v1_0_test_and_wrong_roots_are_refused_with_the_fix(nuscenes_root, tmp_path):
    with pytest.raises(S.DatasetError, match='v1.0-test has no LiDAR ground truth'):
        NuScenesDataset(nuscenes_root, version='v1.0-test')
    with pytest.raises(S.DatasetError, match='does not exist'):
        NuScenesDataset(tmp_path / 'nowhere', version='v1.0-mini')
    with pytest.raises(S.DatasetError, match=r"no v1.0-trainval/ table folder \(found: \['v1.0-mini'\]\)"):
        NuScenesDataset(nuscenes_root, version='v1.0-trainval')
    broken = tmp_path / 'broken'
    shutil.copytree(nuscenes_root / 'v1.0-mini', broken / 'v1.0-mini')
    (broken / 'v1.0-mini' / 'ego_pose.json').unlink()
    with pytest.raises(S.DatasetError, match=r'ego_pose.json.*is missing'):
        NuScenesDataset(broken, version='v1.0-mini')


def test_missing_files_and_cameras_are_named(tmp_path, dataset_fixtures):
    root = dataset_fixtures.write_nuscenes(tmp_path / 'nusc', width=160, height=90, points=200, sweeps=False)
    ds = NuScenesDataset(root, version='v1.0-mini', split='train', image_size=SIZE)
    image = root / ds.records[1]['cameras'][2]['file']
    image.unlink()
    with pytest.raises(S.DatasetError, match=f'image file .*{re.escape(image.name)}.* is missing'):
        ds[1]
    (root / ds.records[2]['lidar']['file']).write_bytes(b'\0' * 7)
    with pytest.raises(S.DatasetError, match='not a multiple of 5'):
        ds[2]
    # a key frame without CAM_BACK is left out, and said so
    import json
    table = root / 'v1.0-mini' / 'sample_data.json'
    rows = json.loads(table.read_text())
    rows = [r for r in rows if not (r['token'] == ds.records[0]['cameras'][3]['token'])]
    table.write_text(json.dumps(rows))
    with pytest.warns(UserWarning, match=r'skipped 1 key frame.*scene-0061 frame 0 .* has no CAM_BACK.*sample_data.json'):
        again = NuScenesDataset(root, version='v1.0-mini', split='train', image_size=SIZE)
    assert len(again) == 2
