import numpy as np
import pytest
import torch

from surround_depth_train.data.surroundsim import SurroundSimDataset
from surround_depth_train.data.transforms import color_jitter, flip_permutation, flip_sample
from surround_depth_train.geometry.camera import project
from surround_depth_train.geometry.transforms import invert_transform, transform_points


@pytest.fixture(scope='module')
def sample():
    return SurroundSimDataset('val', num_samples=1, image_size=(96, 56))[0]


def _project(sample, cam, point_base):
    T = sample['T_base_cam'][cam].double().numpy()
    K = sample['K'][cam].double().numpy()
    uv, z = project(transform_points(invert_transform(T), point_base), K)
    return uv, z


def test_flip_swaps_left_and_right_cameras():
    assert flip_permutation(6) == [0, 5, 4, 3, 2, 1]


def test_flip_keeps_a_known_3d_point_consistent_across_the_swapped_cameras(sample):
    flipped = flip_sample(sample)
    width = sample['image'].shape[-1]
    point = np.array([8.0, 9.0, 1.2])  # ahead and to the left: seen by front_left
    uv, z = _project(sample, 1, point)
    assert 0 <= uv[0] < width and z > 0
    mirrored = point * np.array([1.0, -1.0, 1.0])
    uv_f, z_f = _project(flipped, 5, mirrored)  # the mirrored front_left now sits in the front_right slot
    np.testing.assert_allclose(uv_f, [width - 1 - uv[0], uv[1]], atol=1e-3)
    np.testing.assert_allclose(z_f, z, rtol=1e-6)
    assert torch.equal(flipped['image'][5], torch.flip(sample['image'][1], dims=[-1]))
    assert torch.equal(flipped['depth'][0], torch.flip(sample['depth'][0], dims=[-1]))
    assert torch.equal(flipped['stamps'], sample['stamps'][[0, 5, 4, 3, 2, 1]])


def test_flip_mirrors_and_reorders_the_ego_poses_at_camera_stamps(sample):
    flipped = flip_sample(sample)
    mirror = torch.diag(torch.tensor([1.0, -1.0, 1.0, 1.0]))
    for i, j in enumerate(flip_permutation(6)):
        assert torch.allclose(flipped['T_world_base_cams'][i], mirror @ sample['T_world_base_cams'][j] @ mirror)


def test_flipped_extrinsics_are_proper_rotations(sample):
    R = flip_sample(sample)['T_base_cam'][:, :3, :3].double()
    np.testing.assert_allclose(torch.linalg.det(R).numpy(), 1.0, atol=1e-5)


def test_flipped_lidar_lands_on_the_mirrored_pixels(sample):
    flipped = flip_sample(sample)
    width = sample['image'].shape[-1]
    pts = sample['lidar'][:, :3].double().numpy()
    uv, z = _project(sample, 0, pts)
    uv_f, z_f = _project(flipped, 0, flipped['lidar'][:, :3].double().numpy())
    front = z > 1
    np.testing.assert_allclose(uv_f[front, 0], width - 1 - uv[front, 0], atol=1e-3)
    np.testing.assert_allclose(z_f[front], z[front], rtol=1e-5)


def test_flip_twice_gives_back_the_sample(sample):
    twice = flip_sample(flip_sample(sample))
    for key in ('image', 'depth', 'K', 'lidar', 'stamps', 'self_mask'):
        assert torch.allclose(twice[key], sample[key]) if twice[key].is_floating_point() else \
            torch.equal(twice[key], sample[key]), key
    assert torch.allclose(twice['T_base_cam'], sample['T_base_cam'], atol=1e-6)


def test_color_jitter_is_seeded_and_stays_in_range(sample):
    a = color_jitter(sample['image'], torch.Generator().manual_seed(3), 0.4, 0.4, 0.4)
    b = color_jitter(sample['image'], torch.Generator().manual_seed(3), 0.4, 0.4, 0.4)
    c = color_jitter(sample['image'], torch.Generator().manual_seed(4), 0.4, 0.4, 0.4)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.min() >= 0 and a.max() <= 1 and not torch.equal(a, sample['image'])


def test_augmented_dataset_is_deterministic_per_epoch():
    ds = SurroundSimDataset('train', num_samples=1, image_size=(48, 32), augment=True)
    a, b = ds[0], ds[0]
    assert torch.equal(a['image'], b['image'])
    ds.set_epoch(1)
    assert not torch.equal(ds[0]['image'], a['image'])
