"""The node's fused cloud: filters on top of rig_depth_to_cloud, voxel grid."""
import numpy as np
import pytest

from surround_depth_ros.cloud import cloud_filter, voxel_downsample
from surround_depth_ros.messages import pack_cloud
from surround_depth_train.data.rosbag.messages import unpack_cloud
from surround_depth_train.geometry.lidar import rig_depth_to_cloud
from surround_depth_train.geometry.rig import synthetic_surround_rig

W, H = 40, 24


@pytest.fixture()
def rig():
    return synthetic_surround_rig(W, H)


def voxels(points, size):
    return {tuple(v) for v in np.floor(np.asarray(points, np.float64) / size).astype(int)}


def test_voxel_grid_keeps_exactly_one_point_in_every_occupied_voxel():
    pts = np.random.default_rng(0).uniform(-3, 3, size=(5000, 3)).astype(np.float32)
    idx = voxel_downsample(pts, 0.5)
    kept = pts[idx]
    assert len(voxels(kept, 0.5)) == len(kept)  # no two kept points share a voxel
    assert voxels(kept, 0.5) == voxels(pts, 0.5)  # and no occupied voxel lost its point
    assert np.all(np.diff(idx) > 0)
    np.testing.assert_array_equal(voxel_downsample(pts, 0.5), idx)  # deterministic
    np.testing.assert_array_equal(voxel_downsample(pts, 0.0), np.arange(len(pts)))


def test_voxel_grid_keeps_the_most_confident_point_of_each_voxel():
    pts = np.array([[0.1, 0.1, 0.1], [0.2, 0.2, 0.2], [0.3, 0.1, 0.4], [1.5, 0.0, 0.0], [1.6, 0.1, 0.0]])
    conf = np.array([0.2, 0.9, 0.5, 0.7, 0.7])
    np.testing.assert_array_equal(voxel_downsample(pts, 1.0, conf), [1, 3])  # ties: the first


def test_without_filters_the_cloud_is_exactly_rig_depth_to_cloud(rig):
    rng = np.random.default_rng(1)
    depths = [rng.uniform(1, 30, (H, W)).astype(np.float32) for _ in rig]
    colors = [rng.integers(0, 256, (H, W, 3)).astype(np.uint8) for _ in rig]
    ours = cloud_filter(depths, rig, colors=colors, stride=2)
    ref = rig_depth_to_cloud(depths, rig, stride=2, colors=colors)
    for key in ('points', 'camera', 'rgb'):
        np.testing.assert_array_equal(ours[key], ref[key])


def test_confidence_range_and_ego_masks_remove_what_they_should(rig):
    depths = [np.full((H, W), 10.0, np.float32) for _ in rig]
    conf = [np.full((H, W), 0.9, np.float32) for _ in rig]
    conf[1][:, :W // 2] = 0.1  # half of camera 1 is unsure
    conf[2][0, 0] = np.nan
    masks = [None] * len(rig)
    masks[0] = np.ones((H, W), bool)
    masks[0][H // 2:] = False  # the hood fills the lower half of the front camera
    depths[3][:, :] = 100.0  # the back camera sees only beyond max_range
    cloud = cloud_filter(depths, rig, masks=masks, confidences=conf, min_confidence=0.5, max_range=50.0)
    counts = np.bincount(cloud['camera'], minlength=6)
    assert counts.tolist() == [H * W // 2, H * W // 2, H * W - 1, 0, H * W, H * W]
    assert np.all(cloud['confidence'] >= 0.5) and cloud['confidence'].dtype == np.float32
    assert np.linalg.norm(cloud['points'], axis=1).max() <= 50.0


def test_missing_cameras_keep_the_rig_index_of_the_others(rig):
    depths = [np.full((H, W), 5.0, np.float32) for _ in rig]
    depths[0] = depths[4] = None
    colors = [np.full((H, W, 3), i, np.uint8) for i in range(6)]
    colors[0] = colors[4] = None
    cloud = cloud_filter(depths, rig, colors=colors, stride=4)
    assert sorted(set(cloud['camera'].tolist())) == [1, 2, 3, 5]
    np.testing.assert_array_equal(cloud['rgb'][:, 0], cloud['camera'])


def test_fused_cloud_packs_and_unpacks_to_the_same_points(rig):
    depths = [np.full((H, W), 8.0, np.float32) for _ in rig]
    conf = [np.full((H, W), 0.75, np.float32) for _ in rig]
    cloud = cloud_filter(depths, rig, confidences=conf, voxel_size=0.5)
    fields, step, data = pack_cloud(cloud['points'], cloud['camera'], None, cloud['confidence'])
    arr = unpack_cloud(fields, step, data)
    np.testing.assert_array_equal(np.stack([arr['x'], arr['y'], arr['z']], 1), cloud['points'])
    assert len(voxels(cloud['points'], 0.5)) == len(cloud['points'])

