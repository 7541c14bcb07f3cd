import numpy as np
import pytest

from surround_depth_train.data.surroundsim.dataset import SurroundSimDataset
from surround_depth_train.data.surroundsim.lidar import LidarConfig, simulate_sweep
from surround_depth_train.data.surroundsim.render import cast_rays
from surround_depth_train.data.surroundsim.rig import LIDAR_MOUNT, surroundsim_rig
from surround_depth_train.data.surroundsim.sequence import (BASE_FRAME, WORLD_FRAME, camera_stamps, ego_pose,
                                                            ego_transform_buffer, lidar_stamp)
from surround_depth_train.data.surroundsim.world import WorldConfig, generate_world
from surround_depth_train.geometry.transforms import invert_transform, transform_points


@pytest.fixture(scope='module')
def static_world():
    return generate_world(WorldConfig(moving_cars_per_100m=0.0), seed=11)


def test_sweep_has_32_beams_within_the_elevation_and_range_limits(static_world):
    cfg = LidarConfig()
    pts = simulate_sweep(static_world, 0.0, ego_pose(static_world, 0.0), cfg, np.random.default_rng(0))
    rel = pts[:, :3].astype(np.float64) - LIDAR_MOUNT
    rng = np.linalg.norm(rel, axis=1)
    elev = np.rad2deg(np.arcsin(rel[:, 2] / rng))
    assert rng.max() <= 80.0 + 1e-3 and rng.min() >= 1.0 - 1e-3
    assert elev.min() >= -30.01 and elev.max() <= 10.01
    assert len(np.unique(np.round(elev, 2))) <= 32
    assert np.all((pts[:, 3] >= 0) & (pts[:, 3] <= 1))


def test_dropout_removes_about_its_share_of_returns(static_world):
    T = ego_pose(static_world, 0.0)
    full = simulate_sweep(static_world, 0.0, T, LidarConfig(dropout=0.0), np.random.default_rng(0))
    some = simulate_sweep(static_world, 0.0, T, LidarConfig(dropout=0.3), np.random.default_rng(0))
    assert 0.65 < len(some) / len(full) < 0.75


def test_static_lidar_returns_agree_with_camera_depth_at_their_exact_pixel(static_world):
    """Each return, motion-compensated into a camera at its own shutter time, lies on the surface that camera
    sees through the return's (sub-pixel) projection: within 1 cm except where parallax between the roof LiDAR
    and the camera occludes it."""
    rig = surroundsim_rig(640, 384)
    frame = 7
    t_l = lidar_stamp(frame)
    pts = simulate_sweep(static_world, t_l, ego_pose(static_world, t_l), LidarConfig(), np.random.default_rng(1))
    buf = ego_transform_buffer(static_world, t_l - 0.05, t_l + 0.1)
    checked = 0
    for cam, t_c in zip(rig, camera_stamps(frame)):
        T_corr = buf.motion_compensation(WORLD_FRAME, BASE_FRAME, t_l, float(t_c))
        p_cam = transform_points(invert_transform(cam.T_base_cam) @ T_corr, pts[:, :3].astype(np.float64))
        z = p_cam[:, 2]
        front = z > 0.5
        u = cam.K[0, 0] * p_cam[:, 0] / np.where(front, z, 1) + cam.K[0, 2]
        v = cam.K[1, 1] * p_cam[:, 1] / np.where(front, z, 1) + cam.K[1, 2]
        inside = front & (u >= 0) & (u <= cam.width - 1) & (v >= 0) & (v <= cam.height - 1)
        T_wc = ego_pose(static_world, float(t_c)) @ cam.T_base_cam
        dirs = (p_cam[inside] / z[inside, None]) @ T_wc[:3, :3].T  # optical z = 1: the ray parameter is depth
        t, material, _ = cast_rays(static_world, float(t_c), T_wc[:3, 3], dirs)
        err = t - z[inside]
        assert not (material == -1).any(), 'a return can never project onto sky'
        agree = np.abs(err) < 0.01
        # a disagreement is only ever parallax: the camera sees a nearer surface that hides the return
        assert np.all(err[~agree] < 0), f'{cam.name}: returns in front of the surface the camera sees'
        assert np.mean(agree) > 0.9, f'{cam.name}: {np.mean(agree):.3f} of returns within 1 cm'
        assert np.median(np.abs(err)) < 1e-3
        checked += inside.sum()
    assert checked > 10000


def test_sparse_depth_matches_dense_depth_on_static_pixels():
    s = SurroundSimDataset('val', num_samples=1, image_size=(640, 384))[0]
    m = s['depth_mask'] & ~s['dynamic_mask'] & (s['depth_dense'] > 0)
    rel = ((s['depth'][m] - s['depth_dense'][m]).abs() / s['depth_dense'][m]).numpy()
    # pixel-level GT carries the half-pixel rounding of the projection (steep on grazing ground), hence relative
    assert m.sum() > 5000
    assert np.median(rel) < 0.01
    assert np.mean(rel < 0.05) > 0.9
