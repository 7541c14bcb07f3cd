"""DepthPipeline: one set in, depth per camera and one base_link cloud out, as the node and the bag tools run it."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from surround_depth_ros.engine import DepthEngine
from surround_depth_ros.messages import fill_message, image_fields
from surround_depth_ros.pipeline import CloudSettings, DepthPipeline
from surround_depth_train.data.rosbag.frames import CameraInput, FrameDecoder
from surround_depth_train.data.rosbag.messages import InputError, ns_to_stamp_fields
from surround_depth_train.geometry.camera import project
from surround_depth_train.geometry.rig import synthetic_surround_rig
from surround_depth_train.geometry.transforms import TransformBuffer, invert_transform, make_transform, \
    transform_points
from surround_depth_train.models import create_model, save_model

W, H = 96, 64
RIG = synthetic_surround_rig(W, H)


@pytest.fixture(scope='module')
def engine(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp('pipeline') / 'tiny.pt'
    save_model(path, create_model('tiny_student_mb'), name='tiny_student_mb', kwargs={}, input_size=(H, W))
    return DepthEngine(path, logger=lambda message: None)


def _inputs(names=None, stamp=10.0, dt=0.007):
    rng = np.random.default_rng(0)
    names = names or RIG.names
    return [CameraInput(name=n, stamp=stamp + RIG.index(n) * dt, rgb=rng.integers(0, 256, (H, W, 3), dtype=np.uint8),
                        K=RIG[n].K, frame_id=RIG[n].frame_id) for n in names]


def test_every_cloud_point_projects_back_onto_its_cameras_depth(engine):
    pipeline = DepthPipeline(engine, RIG, settings=CloudSettings(stride=1, max_range=1e3))
    result = pipeline.run(_inputs())
    cloud = result.cloud
    assert len(cloud['points']) == 6 * H * W and np.isfinite(cloud['points']).all()
    for i, cam in enumerate(RIG):
        pts = cloud['points'][cloud['camera'] == i].astype(np.float64)
        uv, z = project(transform_points(invert_transform(cam.T_base_cam), pts), cam.K)
        u, v = np.round(uv[:, 0]).astype(int), np.round(uv[:, 1]).astype(int)
        np.testing.assert_allclose(z, result.cameras[i].depth[v, u], rtol=1e-4)
    assert not result.compensated


def test_a_missing_camera_keeps_the_others_rig_indices(engine):
    pipeline = DepthPipeline(engine, RIG)
    present = [n for n in RIG.names if n != 'back_left']
    result = pipeline.run(_inputs(present))
    assert [o.name for o in result.cameras] == present
    assert set(np.unique(result.cloud['camera'])) == {RIG.index(n) for n in present}


def test_depth_outside_the_configured_range_is_nan(engine):
    pipeline = DepthPipeline(engine, RIG, settings=CloudSettings(max_depth=1e-3, min_depth=1e-4))
    result = pipeline.run(_inputs(['front']))
    assert np.isnan(result.cameras[0].depth).all() and len(result.cloud['points']) == 0


def test_confidence_threshold_and_ego_mask_thin_the_cloud(engine):
    mask = np.ones((H, W), bool)
    mask[H // 2:] = False  # the bonnet
    full = DepthPipeline(engine, RIG, settings=CloudSettings(stride=1, max_range=1e3)).run(_inputs(['front']))
    masked = DepthPipeline(engine, RIG, masks={'front': mask},
                           settings=CloudSettings(stride=1, max_range=1e3)).run(_inputs(['front']))
    assert len(masked.cloud['points']) == len(full.cloud['points']) // 2
    conf = full.cameras[0].confidence
    threshold = float(np.median(conf))
    confident = DepthPipeline(engine, RIG, settings=CloudSettings(stride=1, max_range=1e3,
                                                                   confidence_threshold=threshold)
                              ).run(_inputs(['front']))
    assert len(confident.cloud['points']) == int((conf >= threshold).sum())
    assert (confident.cloud['confidence'] >= threshold).all()


def test_motion_compensation_moves_each_camera_to_the_clouds_stamp(engine):
    tf = TransformBuffer()
    for t in np.arange(9.5, 10.6, 0.05):  # driving forward at 10 m/s
        tf.set_transform('odom', 'base_link', float(t), make_transform(np.eye(3), [10.0 * t, 0.0, 0.0]))
    pipeline = DepthPipeline(engine, RIG, settings=CloudSettings(stride=1, max_range=1e3))
    inputs = _inputs()
    still = pipeline.run(inputs)
    motion = pipeline.motion_corrections(inputs, tf)
    moving = pipeline.run(inputs, motion=motion)
    assert moving.compensated and moving.stamp == max(c.stamp for c in inputs)
    for i, cam in enumerate(inputs):
        shift = moving.cloud['points'][moving.cloud['camera'] == i] - still.cloud['points'][still.cloud['camera'] == i]
        # a camera that fired dt before the cloud's stamp saw the world from 10 * dt metres further back
        np.testing.assert_allclose(shift[:, 0], -10.0 * (moving.stamp - cam.stamp), atol=1e-4)
    assert pipeline.motion_corrections(inputs, TransformBuffer()) is None


def _image_msg(rgb, stamp_ns, frame):
    from sensor_msgs.msg import CameraInfo, Image

    image = fill_message(Image(), image_fields(rgb, 'rgb8'))
    info = CameraInfo(width=W, height=H, distortion_model='plumb_bob', d=[0.0] * 5,
                      k=RIG[0].K.reshape(-1).tolist())
    for msg in (image, info):
        msg.header.stamp.sec, msg.header.stamp.nanosec = ns_to_stamp_fields(stamp_ns)
        msg.header.frame_id = frame
    return image, info


def test_decoder_turns_messages_into_camera_inputs_and_names_a_missing_camera_info():
    pytest.importorskip('sensor_msgs.msg')
    rgb = np.random.default_rng(0).integers(0, 256, (H, W, 3), dtype=np.uint8)
    image, info = _image_msg(rgb, 12_345_000_000, 'front_optical_frame')
    cam = FrameDecoder().decode('front', image, info)
    assert cam.stamp == pytest.approx(12.345) and cam.frame_id == 'front_optical_frame'
    np.testing.assert_array_equal(cam.rgb, rgb)
    np.testing.assert_allclose(cam.K, RIG[0].K)
    with pytest.raises(InputError, match='front: no CameraInfo'):
        FrameDecoder().decode('front', image, None)


def test_keep_mask_joins_the_ego_mask_and_the_undistorted_area(engine):
    ego = np.ones((H, W), bool)
    ego[-8:] = False
    valid = np.ones((H, W), bool)
    valid[:, :4] = False
    cam = _inputs(['front'])[0]
    pipeline = DepthPipeline(engine, RIG, masks={'front': ego})
    np.testing.assert_array_equal(pipeline.keep_mask(cam), ego)
    cam.valid = valid
    np.testing.assert_array_equal(pipeline.keep_mask(cam), ego & valid)
    assert DepthPipeline(engine, RIG).keep_mask(_inputs(['back'])[0]) is None
