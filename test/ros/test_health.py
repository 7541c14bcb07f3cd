"""Depth health offline: SurroundSim's exact depth and LiDAR of one frame, with the ego moving between stamps."""
import numpy as np
import pytest

from surround_depth_ros.health import DIAGNOSTIC_LEVELS, DepthHealthMonitor
from surround_depth_train.data.rosbag.messages import InputError
from surround_depth_train.data.surroundsim import LidarConfig, WorldConfig, generate_world, render_sample, \
    surroundsim_rig
from surround_depth_train.data.surroundsim.sequence import ego_pose
from surround_depth_train.geometry.transforms import invert_transform, make_transform


@pytest.fixture(scope='module')
def scene():
    """One 96 x 64 frame of a static street (the ego drives at 8 m/s; shutters 7-49 ms after the LiDAR)."""
    world = generate_world(WorldConfig(moving_cars_per_100m=0.0), seed=11)
    rig = surroundsim_rig(96, 64)
    payload = render_sample(world, rig, frame=3, lidar=LidarConfig(columns=540, dropout=0.0))
    return world, rig, payload


def feed(monitor, scene, odometry=True, lidar_offset=0.0, roof_frame=False):
    world, rig, p = scene
    t_lidar = float(p['lidar_stamp'])
    if odometry:
        for t in np.arange(t_lidar - 0.1, t_lidar + 0.1001, 0.01):  # 100 Hz odometry around the frame
            monitor.add_odometry(float(t), ego_pose(world, float(t)))
    points = p['lidar'][:, :3]
    T_base_lidar = None
    if roof_frame:  # the same sweep as the LiDAR driver publishes it, in its own (roof, rotated) frame
        T_base_lidar = make_transform([0.0, 0.0, np.sin(0.4), np.cos(0.4)], [0.9, 0.0, 1.84])
        points = (invert_transform(T_base_lidar)[:3, :3] @ points.T).T + invert_transform(T_base_lidar)[:3, 3]
    monitor.add_lidar(t_lidar + lidar_offset, points, T_base_lidar)


def run_set(monitor, scene, scale=1.0, stamp_shift=0.0, cameras=None):
    _, rig, p = scene
    idx = range(len(rig)) if cameras is None else cameras
    return monitor.update([p['stamps'][i] + stamp_shift for i in idx], [p['depth_dense'][i] * scale for i in idx],
                          [rig.cameras[i] for i in idx], [p['self_mask'][i] for i in idx])


def test_exact_depth_agrees_with_the_lidar_at_scale_one(scene):
    monitor = DepthHealthMonitor(camera_names=scene[1].names)
    feed(monitor, scene, roof_frame=True)
    samples = run_set(monitor, scene)
    assert all(s is not None and s.compensated and s.n_points > 1000 for s in samples.values())
    for name, status in monitor.summary().items():
        assert status.level == 'OK', (name, status.message)
        assert abs(status.scale - 1.0) < 0.01
        assert status.abs_rel < 0.06  # pixel rounding of LiDAR hits and roof-to-camera parallax, at 96 x 64


def test_depth_thirty_percent_too_far_warns_with_scale_one_over_1_3(scene):
    # abs_rel threshold out of the way: the scale check alone must raise the warning
    monitor = DepthHealthMonitor(camera_names=scene[1].names, abs_rel_threshold=10.0)
    feed(monitor, scene)
    run_set(monitor, scene, scale=1.3)
    for status in monitor.summary().values():
        assert status.level == 'WARN'
        assert status.scale == pytest.approx(1 / 1.3, abs=0.01)
        assert status.abs_rel == pytest.approx(0.3, abs=0.05)
        assert 'scale' in status.message and 'calibration' in status.message
        assert dict(status.key_values())['scale'] == f'{status.scale:.4f}'
    assert DIAGNOSTIC_LEVELS['WARN'] == 1


def test_ego_motion_compensation_lowers_the_error(scene):
    errors = {}
    for odometry in (True, False):
        monitor = DepthHealthMonitor(camera_names=scene[1].names)
        feed(monitor, scene, odometry=odometry)
        samples = run_set(monitor, scene)
        assert all(s.compensated == odometry for s in samples.values())
        errors[odometry] = {name: s.abs_rel for name, s in samples.items()}
        assert ('not compensated' in monitor.summary()['front'].message) == (not odometry)
    # the front_left camera fires 49 ms after the sweep: 0.4 m of driving to compensate
    assert errors[True]['front_left'] < 0.7 * errors[False]['front_left']
    assert np.mean(list(errors[True].values())) < 0.7 * np.mean(list(errors[False].values()))


def test_statistics_follow_the_window_and_recover_after_a_bad_stretch(scene):
    monitor = DepthHealthMonitor(camera_names=scene[1].names, window=2)
    feed(monitor, scene)
    run_set(monitor, scene, scale=1.3)
    assert monitor.summary()['front'].level == 'WARN'
    run_set(monitor, scene)
    assert monitor.summary()['front'].samples == 2
    run_set(monitor, scene)
    status = monitor.summary()['front']
    assert status.level == 'OK' and status.samples == 2 and abs(status.scale - 1.0) < 0.01


def test_cameras_without_lidar_are_stale_and_say_why(scene):
    monitor = DepthHealthMonitor(camera_names=scene[1].names)
    assert {s.level for s in monitor.summary().values()} == {'STALE'}
    samples = run_set(monitor, scene)
    assert all(s is None for s in samples.values())
    assert 'no LiDAR sweep received' in monitor.summary()['back'].message
    feed(monitor, scene, lidar_offset=-0.5)  # only a sweep half a second older than the cameras
    run_set(monitor, scene)
    status = monitor.summary()['back']
    assert status.level == 'STALE' and 'no LiDAR sweep within 0.100 s' in status.message


def test_a_camera_missing_from_the_sets_goes_stale_while_the_others_stay_ok(scene):
    monitor = DepthHealthMonitor(camera_names=scene[1].names, stale_after=1.0)
    feed(monitor, scene)
    run_set(monitor, scene)
    # three seconds later the front camera is dead; the same view and sweep, restamped, for the other five
    feed(monitor, scene, odometry=False, lidar_offset=3.0)
    samples = run_set(monitor, scene, stamp_shift=3.0, cameras=[1, 2, 3, 4, 5])
    assert 'front' not in samples
    summary = monitor.summary()
    assert summary['front'].level == 'STALE'
    assert all(summary[n].level == 'OK' for n in scene[1].names[1:])
    # then no set at all for two seconds on the node's clock: every camera goes stale
    later = float(scene[2]['lidar_stamp']) + 5.5
    assert {s.level for s in monitor.summary(now=later).values()} == {'STALE'}


def test_odometry_memory_stays_bounded():
    monitor = DepthHealthMonitor(odom_horizon=0.5)
    for k in range(400):
        monitor.add_odometry(k * 0.01, make_transform(np.eye(3), [k * 0.08, 0.0, 0.0]))
    first, last = monitor.odometry_range
    assert last == pytest.approx(3.99) and 3.99 - 1.0 <= first <= 3.99 - 0.5
    with pytest.raises(InputError, match='not a rigid 4x4 pose'):
        monitor.add_odometry(5.0, np.zeros((4, 4)))


def test_depth_of_another_size_than_its_camera_is_refused(scene):
    _, rig, _ = scene
    monitor = DepthHealthMonitor()
    with pytest.raises(InputError, match='pass the camera that describes the depth map'):
        monitor.update([0.0], [np.ones((10, 10), np.float32)], [rig.cameras[0]])


def test_time_jumping_back_like_a_looping_bag_starts_the_statistics_afresh(scene):
    monitor = DepthHealthMonitor(camera_names=scene[1].names, stale_after=1.0)
    feed(monitor, scene, lidar_offset=20.0)
    run_set(monitor, scene, scale=1.3, stamp_shift=20.0)
    assert monitor.summary()['front'].level == 'WARN'
    feed(monitor, scene)  # the bag starts over: 20 s earlier
    run_set(monitor, scene)
    status = monitor.summary()['front']
    assert status.level == 'OK' and status.samples == 1 and status.scale == pytest.approx(1.0, abs=0.01)
