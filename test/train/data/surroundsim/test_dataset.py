import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from surround_depth_train.config import ConfigError
from surround_depth_train.data.surroundsim import dataset as dataset_module
from surround_depth_train.data.surroundsim import SurroundSimDataset, WorldConfig, generate_world, load_world_config
from surround_depth_train.data.surroundsim.rig import surroundsim_rig
from surround_depth_train.geometry.camera import project
from surround_depth_train.geometry.rig import CameraRig
from surround_depth_train.geometry.transforms import invert_transform, transform_points

REPO = Path(__file__).resolve().parents[4]

_DIGEST = '''
import hashlib, sys, torch
torch.set_num_threads(int(sys.argv[1]))
from surround_depth_train.data.surroundsim import SurroundSimDataset
ds = SurroundSimDataset('train', num_samples=8, image_size=(112, 64), frames_per_scene=4)
for index in (1, 5):
    h = hashlib.sha256()
    for key, value in sorted(ds.payload(index).items()):
        h.update(key.encode()); h.update(value.tobytes())
    print(h.hexdigest())
'''


def _digests(threads: int) -> list[str]:
    out = subprocess.run([sys.executable, '-c', _DIGEST, str(threads)], capture_output=True, text=True, check=True,
                         cwd=REPO)
    return out.stdout.split()


def test_same_seed_gives_identical_bytes_across_processes_with_different_thread_counts():
    one, two = _digests(1), _digests(2)
    assert one == two
    assert one[0] != one[1], 'different scenes must render differently'


def test_different_seed_offsets_draw_different_scenes():
    a = SurroundSimDataset('train', num_samples=1, image_size=(48, 32))
    b = SurroundSimDataset('train', num_samples=1, image_size=(48, 32), seed_offset=1)
    assert a.locate(0) != b.locate(0)
    assert not np.array_equal(a.payload(0)['image'], b.payload(0)['image'])


def test_splits_draw_from_disjoint_seed_ranges():
    seeds = {split: {SurroundSimDataset(split, num_samples=4000, image_size=(16, 16)).locate(i)[0]
                     for i in range(4000)} for split in ('train', 'val', 'test')}
    assert not (seeds['train'] & seeds['val']) and not (seeds['val'] & seeds['test'])
    assert not (seeds['train'] & seeds['test'])
    with pytest.raises(ValueError, match='seed range'):
        SurroundSimDataset('train', num_samples=10, image_size=(16, 16), seed_offset=999_999)
    with pytest.raises(ValueError, match='unknown split'):
        SurroundSimDataset('training')


def test_cache_serves_identical_samples_without_rendering_again(tmp_path, monkeypatch):
    first = SurroundSimDataset('val', num_samples=1, image_size=(48, 32), cache_dir=tmp_path)[0]
    assert len(list(tmp_path.glob('*.npz'))) == 1

    def no_render(*args, **kwargs):
        raise AssertionError('rendered although the sample is cached')

    monkeypatch.setattr(dataset_module, 'render_sample', no_render)
    again = SurroundSimDataset('val', num_samples=1, image_size=(48, 32), cache_dir=tmp_path)[0]
    for key, value in first.items():
        if isinstance(value, torch.Tensor):
            assert torch.equal(value, again[key]), key


def test_a_crashed_cache_write_leaves_no_entry(tmp_path, monkeypatch):
    def crash(*args, **kwargs):
        raise RuntimeError('disk full')

    monkeypatch.setattr(dataset_module.np, 'savez', crash)
    with pytest.raises(RuntimeError):
        SurroundSimDataset('val', num_samples=1, image_size=(48, 32), cache_dir=tmp_path)[0]
    assert list(tmp_path.iterdir()) == []


def test_cameras_have_their_own_shutter_stamps_within_50_ms_of_the_lidar():
    s = SurroundSimDataset('val', num_samples=1, image_size=(48, 32))[0]
    offsets = (s['stamps'] - s['lidar_stamp']).numpy()
    assert len(np.unique(offsets)) == 6
    assert np.all((offsets >= 0) & (offsets <= 0.05))


def test_samples_carry_the_ego_pose_at_each_camera_stamp():
    from surround_depth_train.data.surroundsim.sequence import ego_pose

    ds = SurroundSimDataset('val', num_samples=1, image_size=(48, 32))
    s = ds[0]
    world = ds.world(ds.locate(0)[0])
    for i, t in enumerate(s['stamps'].tolist()):
        assert np.allclose(s['T_world_base_cams'][i].numpy(), ego_pose(world, t), atol=1e-3)
    assert not np.allclose(s['T_world_base_cams'][1].numpy(), s['T_world_base'].numpy(), atol=1e-3)


def test_moving_cars_move_between_the_camera_shutters():
    world = generate_world(WorldConfig(moving_cars_per_100m=5.0), seed=3)
    moving = world.box_velocity != 0
    assert moving.any()
    lo0, _ = world.boxes_at(0.007)
    lo1, _ = world.boxes_at(0.049)
    np.testing.assert_allclose(lo1[moving, 0] - lo0[moving, 0], world.box_velocity[moving] * 0.042)
    ds = SurroundSimDataset('val', num_samples=12, image_size=(96, 56), world=WorldConfig(moving_cars_per_100m=8.0),
                            frames_per_scene=1)
    assert any(ds[i]['dynamic_mask'].any() for i in range(len(ds)))


def _yaw_and_hfov(cam):
    forward = cam.T_base_cam[:3, 2]
    return np.degrees(np.arctan2(forward[1], forward[0])), np.degrees(2 * np.arctan(cam.width / 2 / cam.K[0, 0]))


def test_adjacent_cameras_overlap_by_10_to_20_percent():
    rig = surroundsim_rig()
    assert rig.names == ['front', 'front_left', 'back_left', 'back', 'back_right', 'front_right']
    for i, j in rig.adjacent_pairs():
        (yi, fi), (yj, fj) = _yaw_and_hfov(rig[i]), _yaw_and_hfov(rig[j])
        gap = abs((yj - yi + 180) % 360 - 180)
        overlap = (fi + fj) / 2 - gap
        for f in (fi, fj):
            assert 0.10 <= overlap / f <= 0.20, f'{rig[i].name}/{rig[j].name}: {overlap / f:.3f}'


def test_a_point_in_the_overlap_of_adjacent_cameras_projects_into_both():
    rig = surroundsim_rig()
    for i, j in rig.adjacent_pairs():
        (yi, fi), (yj, fj) = _yaw_and_hfov(rig[i]), _yaw_and_hfov(rig[j])
        # the bisector of the overlap wedge, 30 m out at camera height
        d = (yj - yi + 180) % 360 - 180
        edge_i = yi + np.sign(d) * fi / 2
        edge_j = yi + d - np.sign(d) * fj / 2
        yaw = np.radians((edge_i + edge_j) / 2)
        point = np.array([30 * np.cos(yaw), 30 * np.sin(yaw), 1.55])
        for cam in (rig[i], rig[j]):
            uv, z = project(transform_points(invert_transform(cam.T_base_cam), point), cam.K)
            assert z > 0 and 0 <= uv[0] <= cam.width - 1 and 0 <= uv[1] <= cam.height - 1, cam.name


def test_committed_rig_yaml_matches_the_generated_rig():
    committed = CameraRig.from_yaml(REPO / 'config' / 'rigs' / 'surroundsim.yaml')
    rig = surroundsim_rig()
    assert committed.names == rig.names
    np.testing.assert_allclose(committed.intrinsics(), rig.intrinsics())
    np.testing.assert_allclose(committed.extrinsics(), rig.extrinsics(), atol=1e-9)


def test_the_two_city_configs_draw_different_streets():
    downtown = load_world_config(REPO / 'config' / 'surroundsim' / 'downtown.yaml')
    suburb = load_world_config(REPO / 'config' / 'surroundsim' / 'suburb.yaml')
    heights = []
    for cfg in (downtown, suburb):
        w = generate_world(cfg, seed=0)
        buildings = w.box_material == 2
        heights.append(np.mean(w.box_hi[buildings, 2]))
    assert heights[0] > 2 * heights[1]


def test_an_unknown_world_key_is_named_in_the_error(tmp_path):
    path = tmp_path / 'city.yaml'
    path.write_text('building_hieght: [5, 10]\n')
    with pytest.raises(ConfigError, match='building_hieght'):
        SurroundSimDataset('train', world=path)
    with pytest.raises(ConfigError, match='setback'):
        WorldConfig(setback=(5.0, 1.0))


def test_dataloader_workers_give_the_same_batches_as_the_main_process():
    from torch.utils.data import DataLoader

    from surround_depth_train.data import collate_surround

    ds = SurroundSimDataset('train', num_samples=4, image_size=(48, 32), augment=True)
    main = list(DataLoader(ds, batch_size=2, collate_fn=collate_surround))
    workers = list(DataLoader(ds, batch_size=2, collate_fn=collate_surround, num_workers=2))
    for a, b in zip(main, workers):
        assert torch.equal(a['image'], b['image']) and torch.equal(a['lidar'], b['lidar'])
