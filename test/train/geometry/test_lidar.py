import numpy as np
import pytest

from surround_depth_train.geometry.camera import project
from surround_depth_train.geometry.lidar import depth_to_points, points_to_depth, rig_depth_to_cloud
from surround_depth_train.geometry.rig import Camera, synthetic_surround_rig
from surround_depth_train.geometry.transforms import make_transform
from surround_depth_train.geometry.rig import optical_rotation


def front_camera(width=64, height=48):
    K = np.array([[50.0, 0, (width - 1) / 2], [0, 50.0, (height - 1) / 2], [0, 0, 1]])
    return Camera('front', K, width, height, make_transform(optical_rotation(0.0), [0.0, 0.0, 0.0]))


def test_nearest_of_two_points_on_one_pixel_wins_in_either_order():
    cam = front_camera()
    near, far = [5.0, 0.0, 0.0], [20.0, 0.0, 0.0]  # both on the optical axis
    for pts in ([near, far], [far, near]):
        depth = points_to_depth(np.array(pts), cam)
        assert depth.max() == pytest.approx(5.0) and np.count_nonzero(depth) == 1


def test_points_behind_or_outside_are_dropped_and_range_limits_apply():
    cam = front_camera()
    pts = np.array([[-5.0, 0, 0], [5.0, 100.0, 0], [3.0, 0, 0], [90.0, 0.5, 0]])
    depth = points_to_depth(pts, cam, min_depth=0.0, max_depth=80.0)
    assert np.count_nonzero(depth) == 1 and depth.max() == pytest.approx(3.0)
    assert np.count_nonzero(points_to_depth(pts, cam, min_depth=3.5, max_depth=80.0)) == 0
    assert points_to_depth(pts, cam, min_depth=3.5).max() == pytest.approx(90.0)


def test_point_lands_on_the_pixel_whose_centre_is_nearest():
    cam = front_camera()
    p = np.array([[10.0, -1.0, -0.5]])  # base: forward 10, right 1, down 0.5
    uv, _ = project(np.array([[1.0, 0.5, 10.0]]), cam.K)
    depth = points_to_depth(p, cam)
    v, u = np.argwhere(depth > 0)[0]
    assert (u, v) == (int(round(uv[0, 0])), int(round(uv[0, 1])))


def test_depth_lifted_to_points_and_projected_back_reproduces_the_depth_map():
    rig = synthetic_surround_rig(80, 48)
    rng = np.random.default_rng(0)
    depths = [rng.uniform(2, 60, size=(48, 80)).astype(np.float32) for _ in rig]
    for cam, depth in zip(rig, depths):
        pts, pix = depth_to_points(depth, cam)
        back = points_to_depth(pts, cam)
        np.testing.assert_allclose(back, depth, rtol=1e-5)


def test_fused_cloud_holds_every_valid_pixel_of_every_camera_with_its_index():
    rig = synthetic_surround_rig(40, 24)
    depths = [np.full((24, 40), 10.0, np.float32) for _ in rig]
    depths[2][:, :] = np.nan
    masks = [np.ones((24, 40), bool) for _ in rig]
    masks[0][:12] = False
    colors = [np.full((24, 40, 3), i, np.uint8) for i in range(6)]
    cloud = rig_depth_to_cloud(depths, rig, masks, colors=colors)
    counts = np.bincount(cloud['camera'], minlength=6)
    assert counts.tolist() == [480, 960, 0, 960, 960, 960]
    assert np.array_equal(cloud['rgb'][:, 0], cloud['camera'].astype(np.uint8))
    # every point is 10 m deep in its own camera: its distance from the camera centre is at least 10 m
    centres = rig.extrinsics()[cloud['camera'], :3, 3]
    assert np.all(np.linalg.norm(cloud['points'] - centres, axis=1) >= 10.0 - 1e-4)


def test_depth_of_the_wrong_size_is_refused_with_the_fix():
    cam = front_camera()
    with pytest.raises(ValueError, match='Camera.resized'):
        depth_to_points(np.ones((10, 10)), cam)


def test_fused_cloud_carries_each_pixels_extra_values_with_its_point():
    rig = synthetic_surround_rig(40, 24)
    depths = [np.full((24, 40), 10.0, np.float32) for _ in rig]
    depths[1][:, ::2] = np.nan
    conf = [np.arange(24 * 40, dtype=np.float32).reshape(24, 40) + 1000 * i for i in range(6)]
    cloud = rig_depth_to_cloud(depths, rig, stride=2, values={'confidence': conf})
    assert cloud['confidence'].dtype == np.float32 and len(cloud['confidence']) == len(cloud['points'])
    # the value's thousands name the camera, its remainder the pixel: every point got its own pixel's value
    assert np.array_equal(cloud['confidence'] // 1000, cloud['camera'])
    pix = cloud['confidence'] % 1000
    assert np.all((pix // 40) % 2 == 0) and np.all((pix % 40) % 2 == 0)
    assert np.count_nonzero(cloud['camera'] == 1) == 0
