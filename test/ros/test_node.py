"""surround_depth_node over real DDS: a node process answers the six cameras this test process publishes.

One node process serves the whole module (starting it costs a torch import); the tests run in file order and
use ever-increasing stamps. Assertions are on counts, stamps, frames and values, never on wall-clock time.
"""
from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

rclpy = pytest.importorskip('rclpy')
from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from nav_msgs.msg import Odometry  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data  # noqa: E402
from sensor_msgs.msg import CameraInfo, Image, PointCloud2  # noqa: E402

from surround_depth_train.data.rosbag import topics  # noqa: E402
from surround_depth_ros.health import DepthHealthMonitor  # noqa: E402
from surround_depth_train.data.rosbag.messages import (depth_image_to_array, ns_to_stamp_fields,  # noqa: E402
                                                       stamp_to_ns, unpack_cloud)
from surround_depth_ros.messages import cloud_fields, fill_message, image_fields  # noqa: E402
from surround_depth_train.geometry.rig import Camera, CameraRig  # noqa: E402
from surround_depth_train.models import create_model, save_model  # noqa: E402

pytestmark = [pytest.mark.ros, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
RIG = CameraRig.from_yaml(REPO / 'config' / 'rigs' / 'surroundsim.yaml')
CAMS = RIG.names
W, H = 128, 96
DOMAIN = str(1 + os.getpid() % 50)  # 1..50 here, 51..99 for the ONNX node; other DDS tests use 100..229
# Both ends must use the transport that carries large images (REFERENCE section 7); `make test` exports it too.
os.environ.setdefault('FASTDDS_BUILTIN_TRANSPORTS', 'LARGE_DATA')


def _K():
    return RIG[0].resized(W, H).K


def _lidar_points():
    """A ring of walls 6-14 m around the car, in base_link, seen by every camera."""
    rng = np.random.default_rng(0)
    angle = rng.uniform(-np.pi, np.pi, 6000)
    radius = 6.0 + 8.0 * (np.sin(3 * angle) ** 2)
    z = rng.uniform(0.2, 2.5, angle.size)
    return np.stack([radius * np.cos(angle), radius * np.sin(angle), z], axis=1).astype(np.float32)


class Client:
    """Publishers for the six cameras, LiDAR and odometry; subscribers for every output of the node."""

    def __init__(self, domain: str = DOMAIN):
        self.context = rclpy.Context()
        rclpy.init(context=self.context, domain_id=int(domain))
        self.node = rclpy.create_node('surround_depth_test_client', context=self.context)
        self.lock = threading.RLock()
        self.images = {c: self.node.create_publisher(Image, topics.image_topic(c), qos_profile_sensor_data)
                       for c in CAMS}
        self.infos = {c: self.node.create_publisher(CameraInfo, topics.camera_info_topic(c),
                                                    qos_profile_sensor_data) for c in CAMS}
        self.lidar = self.node.create_publisher(PointCloud2, topics.LIDAR_TOPIC, qos_profile_sensor_data)
        self.odom = self.node.create_publisher(Odometry, topics.ODOM_TOPIC, qos_profile_sensor_data)
        self.depth = {c: [] for c in CAMS}          # best-effort subscription
        self.depth_reliable = {c: [] for c in CAMS}  # as RViz subscribes
        self.depth_info = {c: [] for c in CAMS}
        self.clouds, self.diagnostics = [], []
        self.sent_images = {}  # (camera, stamp ns) -> the RGB array published
        reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        for c in CAMS:
            self.node.create_subscription(Image, topics.depth_topic(c), self._keep(self.depth[c]),
                                          qos_profile_sensor_data)
            self.node.create_subscription(Image, topics.depth_topic(c), self._keep(self.depth_reliable[c]), reliable)
            self.node.create_subscription(CameraInfo, topics.depth_info_topic(c), self._keep(self.depth_info[c]),
                                          reliable)
        self.node.create_subscription(PointCloud2, topics.CLOUD_TOPIC, self._keep(self.clouds), reliable)
        self.node.create_subscription(DiagnosticArray, topics.DIAGNOSTICS_TOPIC, self._keep(self.diagnostics), 10)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.thread = threading.Thread(target=self.executor.spin, daemon=True)
        self.thread.start()
        self.rng = np.random.default_rng(1)
        self.stamp_ns = time.time_ns()

    def _keep(self, store):
        def callback(msg):
            with self.lock:
                store.append(msg)
        return callback

    def header(self, msg, stamp_ns, frame):
        msg.header.stamp.sec, msg.header.stamp.nanosec = ns_to_stamp_fields(stamp_ns)
        msg.header.frame_id = frame
        return msg

    def publish_camera(self, cam, stamp_ns, *, encoding='rgb8', size=(H, W), K=None):
        if encoding == '32FC1':
            fields = image_fields(self.rng.random(size, dtype=np.float32), encoding)
        else:
            pixels = self.rng.integers(0, 256, (*size, 3), dtype=np.uint8)
            self.sent_images[(cam, stamp_ns)] = pixels
            fields = image_fields(pixels, encoding)
        image = fill_message(self.header(Image(), stamp_ns, f'{cam}_optical_frame'), fields)
        K = _K() if K is None else K
        info = self.header(CameraInfo(), stamp_ns, f'{cam}_optical_frame')
        info.width, info.height = W, H
        info.k = np.asarray(K, float).reshape(-1).tolist()
        info.p = np.hstack([np.asarray(K, float), np.zeros((3, 1))]).reshape(-1).tolist()
        info.r = np.eye(3).reshape(-1).tolist()
        info.distortion_model, info.d = 'plumb_bob', [0.0] * 5
        self.infos[cam].publish(info)
        self.images[cam].publish(image)

    def publish_set(self, cameras=CAMS, spacing_ns=7_000_000, **kwargs):
        """Six cameras staggered 7 ms apart like nuScenes; returns the stamps used (ns)."""
        base = self.stamp_ns
        self.stamp_ns += 100_000_000
        stamps = {}
        for i, cam in enumerate(CAMS):
            stamps[cam] = base + i * spacing_ns
            if cam in cameras:
                self.publish_camera(cam, stamps[cam], **kwargs)
        return stamps

    def publish_lidar_and_odom(self, stamp_ns):
        pts = _lidar_points()
        fields = cloud_fields(pts, np.zeros(len(pts), np.float32))
        self.lidar.publish(fill_message(self.header(PointCloud2(), stamp_ns, 'base_link'), fields))
        for dt in (-200_000_000, 0, 200_000_000):  # the car stands still
            odom = self.header(Odometry(), stamp_ns + dt, 'odom')
            odom.child_frame_id = 'base_link'
            odom.pose.pose.orientation.w = 1.0
            self.odom.publish(odom)

    def wait_for(self, predicate, timeout=60.0):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            with self.lock:
                if predicate():
                    return True
            time.sleep(0.05)
        return False

    def latest_diagnostics(self, name):
        with self.lock:
            for array in reversed(self.diagnostics):
                for status in array.status:
                    if status.name == f'surround_depth_node: {name}':
                        return status.level[0] if isinstance(status.level, bytes) else status.level, \
                            status.message, {kv.key: kv.value for kv in status.values}
        return None

    def close(self):
        self.executor.shutdown()
        self.node.destroy_node()
        rclpy.shutdown(context=self.context)


def _node_env(domain: str = DOMAIN):
    env = dict(os.environ, ROS_DOMAIN_ID=domain, FASTDDS_BUILTIN_TRANSPORTS='LARGE_DATA', PYTHONUNBUFFERED='1',
               OMP_NUM_THREADS='1')
    return env


def _die_with_parent():
    """The node process gets SIGTERM when the test process dies, however it dies (Linux prctl)."""
    ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


@contextlib.contextmanager
def _running_node(folder: Path, parameters: dict, domain: str = DOMAIN):
    """A node process with these parameters and a client on the same domain, both closed afterwards."""
    params_file = folder / 'params.yaml'
    params_file.write_text(yaml.safe_dump({'surround_depth_node': {'ros__parameters': parameters}}))
    log_path = folder / 'node.log'
    log = open(log_path, 'w+')
    proc = subprocess.Popen([sys.executable, '-m', 'surround_depth_ros.node', '--ros-args', '--params-file',
                             str(params_file)], env=_node_env(domain), stdout=log, stderr=subprocess.STDOUT, text=True,
                            preexec_fn=_die_with_parent)
    client = Client(domain)
    try:
        ok = client.wait_for(lambda: bool(client.diagnostics) or proc.poll() is not None, timeout=120)
        ok = ok and proc.poll() is None
        assert ok, f'the node published no diagnostics; its log:\n{log_path.read_text()}'
        yield client, proc, log_path
    finally:
        client.close()
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@pytest.fixture(scope='module')
def model_file(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp('node') / 'tiny.pt'
    save_model(path, create_model('tiny_student_mb', max_depth=80.0), name='tiny_student_mb',
               kwargs={'max_depth': 80.0}, input_size=(64, 96))
    return path


@pytest.fixture(scope='module')
def node(model_file, tmp_path_factory):
    parameters = {'model_file': str(model_file), 'rig_file': str(REPO / 'config' / 'rigs' / 'surroundsim.yaml'),
                  'timeout': 0.4, 'lidar_topic': topics.LIDAR_TOPIC, 'health_window': 200,
                  'diagnostics_period': 0.25, 'cloud_stride': 2, 'health_max_lidar_age': 0.05}
    with _running_node(tmp_path_factory.mktemp('node_run'), parameters) as running:
        yield running


def _pace(client, n, **kwargs):
    """Publish ``n`` sets at the node's pace: each waits for the previous set's cloud."""
    sent = []
    for _ in range(n):
        have = len(client.clouds)
        sent.append(client.publish_set(**kwargs))
        client.wait_for(lambda: len(client.clouds) > have, timeout=10)
    return sent


def test_node_publishes_depth_per_camera_and_one_cloud_with_the_input_stamps(node):
    client, proc, _ = node
    sent = _pace(client, 6)
    assert proc.poll() is None
    assert client.wait_for(lambda: all(len(client.depth_reliable[c]) >= 4 for c in CAMS))
    sent_stamps = {c: {s[c] for s in sent} for c in CAMS}
    for cam in CAMS:
        for msg in client.depth_reliable[cam]:
            assert stamp_to_ns(msg.header.stamp) in sent_stamps[cam]
            assert msg.header.frame_id == f'{cam}_optical_frame'
            assert (msg.encoding, msg.height, msg.width) == ('32FC1', H, W)
            depth = depth_image_to_array(msg)
            assert np.isfinite(depth).mean() > 0.9
        info = client.depth_info[cam][-1]
        assert (info.width, info.height) == (W, H) and info.header.frame_id == f'{cam}_optical_frame'
        np.testing.assert_allclose(np.reshape(info.k, (3, 3)), _K())
    newest = {max(s.values()) for s in sent}
    assert len(client.clouds) >= 4
    for cloud in client.clouds:
        assert cloud.header.frame_id == 'base_link' and stamp_to_ns(cloud.header.stamp) in newest
        points = unpack_cloud(cloud.fields, cloud.point_step, cloud.data)
        xyz = np.stack([points['x'], points['y'], points['z']], axis=1)
        assert len(xyz) > 100 and np.isfinite(xyz).all()
        assert set(np.unique(points['camera']).astype(int)) == set(range(6))
        assert [f.name for f in cloud.fields][:4] == ['x', 'y', 'z', 'camera']


def test_a_best_effort_subscriber_receives_the_same_outputs(node):
    client, _, _ = node
    received = (lambda: all(len(client.depth[c]) >= 3 for c in CAMS))
    # best effort may drop a large message now and then (it does under the TCP transport): more sets until each
    # camera's best-effort depth has come three times, at most 20
    for _ in range(20):
        with client.lock:
            if received():
                break
        have = len(client.clouds)
        client.publish_set()
        client.wait_for(lambda: len(client.clouds) > have, timeout=10)
    assert client.wait_for(received, timeout=10), {c: len(client.depth[c]) for c in CAMS}


def test_bad_frames_are_logged_once_and_skipped_while_the_others_go_on(node):
    client, proc, log = node
    before = {c: len(client.depth_reliable[c]) for c in CAMS}
    nan_K = _K().copy()
    nan_K[0, 0] = np.nan
    bad = {'front': {'size': (H // 2, W)},          # image size differs from its CameraInfo
           'back': {'K': np.zeros((3, 3))},          # an all-zero K
           'back_right': {'K': nan_K},               # NaN in the calibration
           'front_left': {'encoding': '32FC1'}}      # not a camera encoding
    bad_stamps = {c: set() for c in bad}
    for _ in range(3):
        have = len(client.clouds)
        stamps = client.publish_set(cameras=[c for c in CAMS if c not in bad])
        for cam, kwargs in bad.items():
            client.publish_camera(cam, stamps[cam], **kwargs)
            bad_stamps[cam].add(stamps[cam])
        client.wait_for(lambda: len(client.clouds) > have, timeout=10)
    assert client.wait_for(lambda: all(len(client.depth_reliable[c]) >= before[c] + 2
                                       for c in CAMS if c not in bad))
    for cam in bad:
        published = {stamp_to_ns(m.header.stamp) for m in client.depth_reliable[cam]}
        assert not published & bad_stamps[cam], cam
    assert proc.poll() is None
    text = log.read_text()
    assert text.count('CameraInfo describes') == 1, text
    assert text.count('K is all zero') == 1, text
    assert text.count('NaN or Inf') == 1, text
    assert text.count("unsupported encoding '32FC1'") == 1, text
    _pace(client, 2)  # the cameras recover as soon as their frames are good again
    assert client.wait_for(lambda: all(len(client.depth_reliable[c]) > before[c] for c in bad))
    assert proc.poll() is None


def test_a_silent_camera_leaves_five_cameras_going_and_diagnostics_name_it(node):
    client, _, _ = node
    before = {c: len(client.depth_reliable[c]) for c in CAMS}
    five = [c for c in CAMS if c != 'back_left']
    silent_stamps = set()
    for _ in range(12):  # 1.2 s of five cameras, three times the node's timeout
        silent_stamps.add(client.publish_set(cameras=five)['back_left'])
        time.sleep(0.1)
    assert client.wait_for(lambda: all(len(client.depth_reliable[c]) >= before[c] + 3 for c in five))
    assert client.wait_for(lambda: 'back_left' in (client.latest_diagnostics('pipeline') or (0, '', {}))[2]
                           .get('missing_cameras', ''))
    level, message, _ = client.latest_diagnostics('camera back_left')
    assert level == 1 and 'silent' in message
    assert client.latest_diagnostics('camera front')[0] == 0
    assert not {stamp_to_ns(m.header.stamp) for m in client.depth_reliable['back_left']} & silent_stamps
    _pace(client, 2)
    assert client.wait_for(lambda: len(client.depth_reliable['back_left']) > before['back_left'])


def test_health_diagnostics_equal_the_offline_computation_on_the_same_inputs(node):
    client, _, _ = node
    with client.lock:
        for c in CAMS:  # the subscriptions append to these very lists
            client.depth_reliable[c].clear()
    monitor = DepthHealthMonitor(camera_names=CAMS, window=200, max_lidar_age=0.05, abs_rel_threshold=0.5)
    sets = []
    pipeline = (lambda: (client.latest_diagnostics('pipeline') or (0, '', {}))[2])
    counted = (lambda key: int(pipeline().get(key, 0)))
    for _ in range(4):
        stamp = client.stamp_ns
        lidar, odometry = counted('lidar_sweeps'), counted('odometry_poses')
        client.publish_lidar_and_odom(stamp + 20_000_000)
        # LiDAR and odometry reach the node before the cameras: its diagnostics count what it took
        assert client.wait_for(lambda: counted('lidar_sweeps') >= lidar + 1
                               and counted('odometry_poses') >= odometry + 3, timeout=20), pipeline()
        sets.append(_pace(client, 1)[0])
    assert client.wait_for(lambda: all(len(client.depth_reliable[c]) >= 4 for c in CAMS)), \
        {c: len(client.depth_reliable[c]) for c in CAMS}
    # the same computation offline, on the depth the node published and the LiDAR this test sent
    with client.lock:
        depths = {c: {stamp_to_ns(m.header.stamp): m for m in client.depth_reliable[c]} for c in CAMS}
    for stamps in sets:
        lidar_stamp = min(stamps.values()) + 20_000_000
        monitor.add_lidar(lidar_stamp * 1e-9, _lidar_points())
        for dt in (-200_000_000, 0, 200_000_000):
            monitor.add_odometry((lidar_stamp + dt) * 1e-9, np.eye(4))
        cams = [c for c in CAMS if stamps[c] in depths[c]]
        cameras = [Camera(name=c, K=_K(), width=W, height=H, T_base_cam=RIG[c].T_base_cam) for c in cams]
        monitor.update([stamps[c] * 1e-9 for c in cams], [depth_image_to_array(depths[c][stamps[c]]) for c in cams],
                       cameras)
    offline = monitor.summary()
    ok = client.wait_for(lambda: all((client.latest_diagnostics(f'health {c}') or (0, '', {}))[2].get('sets')
                                     == str(offline[c].samples) for c in CAMS), timeout=20)
    assert ok, ({c: client.latest_diagnostics(f'health {c}')[2] for c in CAMS}, offline)
    for cam in CAMS:
        level, message, values = client.latest_diagnostics(f'health {cam}')
        assert values == dict(offline[cam].key_values()), cam
        assert message == offline[cam].message


def test_thresholds_change_at_runtime_and_start_up_parameters_are_read_only(node):
    from rcl_interfaces.srv import SetParameters
    from rclpy.parameter import Parameter

    client, proc, _ = node
    service = client.node.create_client(SetParameters, '/surround_depth_node/set_parameters')
    assert service.wait_for_service(timeout_sec=30)

    def set_parameter(name, value):
        future = service.call_async(SetParameters.Request(parameters=[Parameter(name, value=value)
                                                                      .to_parameter_msg()]))
        end = time.monotonic() + 30
        while not future.done() and time.monotonic() < end:
            time.sleep(0.02)
        return future.result().results[0]

    assert set_parameter('max_depth', 0.05).successful is False  # below min_depth: refused, reason given
    assert set_parameter('model_file', '/elsewhere.pt').successful is False  # read-only
    assert set_parameter('max_depth', 0.3).successful  # below every depth this untrained model predicts
    sent = _pace(client, 3)
    last = {c: max(s[c] for s in sent) for c in CAMS}
    assert client.wait_for(lambda: all(any(stamp_to_ns(m.header.stamp) == last[c] for m in client.depth_reliable[c])
                                       for c in CAMS))
    for cam in CAMS:
        msg = next(m for m in client.depth_reliable[cam] if stamp_to_ns(m.header.stamp) == last[cam])
        assert np.isnan(depth_image_to_array(msg)).all()
    assert set_parameter('max_depth', 0.0).successful  # back to the model's range
    sent = _pace(client, 2)
    last = {c: max(s[c] for s in sent) for c in CAMS}
    assert client.wait_for(lambda: all(any(stamp_to_ns(m.header.stamp) == last[c] for m in client.depth_reliable[c])
                                       for c in CAMS))
    msg = next(m for m in client.depth_reliable['front'] if stamp_to_ns(m.header.stamp) == last['front'])
    assert np.isfinite(depth_image_to_array(msg)).mean() > 0.9
    assert proc.poll() is None


def test_a_flood_drops_old_sets_keeps_the_queue_bounded_and_outputs_keep_coming(node):
    client, proc, _ = node
    before_clouds = len(client.clouds)
    sent = [client.publish_set() for _ in range(150)]  # as fast as this process can publish
    last = max(sent[-1].values())
    assert client.wait_for(lambda: any(stamp_to_ns(c.header.stamp) == last for c in client.clouds), timeout=60)
    assert len(client.clouds) - before_clouds < 150
    assert client.wait_for(lambda: int((client.latest_diagnostics('pipeline') or (0, '', {}))[2]
                                       .get('dropped_sets', 0)) > 0, timeout=10)
    _, _, values = client.latest_diagnostics('pipeline')
    assert int(values['queue_max_depth']) <= int(values['queue_bound']) == 1
    stamps = [stamp_to_ns(c.header.stamp) for c in client.clouds[before_clouds:]]
    assert stamps == sorted(stamps) and len(stamps) >= 2
    assert proc.poll() is None


def test_node_without_a_model_file_refuses_to_start_with_a_clear_message(tmp_path):
    result = subprocess.run([sys.executable, '-m', 'surround_depth_ros.node', '--ros-args', '-p',
                             f'model_file:={tmp_path / "missing.pt"}', '-p',
                             f'rig_file:={REPO / "config" / "rigs" / "surroundsim.yaml"}'],
                            env=_node_env(), capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert 'does not exist' in result.stderr and 'Traceback' not in result.stderr


def test_training_cameras_reach_the_engine_which_refuses_a_camera_the_model_was_not_trained_on(tmp_path):
    model = tmp_path / 'rigged.pt'
    save_model(model, create_model('tiny_student_mb', max_depth=80.0), name='tiny_student_mb',
               kwargs={'max_depth': 80.0}, input_size=(64, 96), training_rig=RIG)
    result = subprocess.run([sys.executable, '-m', 'surround_depth_ros.node', '--ros-args', '-p',
                             f'model_file:={model}', '-p', f'rig_file:={REPO / "config" / "rigs" / "surroundsim.yaml"}',
                             '-p', "training_cameras:=['front:front', 'back:rear']"],
                            env=_node_env(), capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr[-2000:]
    assert "training_cameras {'back': 'rear'}" in result.stderr and 'Traceback' not in result.stderr


def test_node_runs_an_onnx_export_end_to_end_with_confidence(model_file, tmp_path):
    from surround_depth_train.export.onnx_export import export_onnx

    onnx = tmp_path / 'tiny.onnx'
    export_onnx(model_file, onnx, outputs=('depth', 'confidence'), log=lambda line: None)
    parameters = {'model_file': str(onnx), 'backend': 'onnxruntime',
                  'rig_file': str(REPO / 'config' / 'rigs' / 'surroundsim.yaml'), 'timeout': 0.4,
                  'publish': ['depth', 'confidence', 'cloud']}
    domain = str(51 + os.getpid() % 49)
    with _running_node(tmp_path, parameters, domain) as (client, proc, log):
        confidence = {c: [] for c in CAMS}
        for c in CAMS:
            client.node.create_subscription(Image, topics.confidence_topic(c), client._keep(confidence[c]),
                                            QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE))
        time.sleep(1.0)  # discovery of the new subscriptions
        sent = _pace(client, 3)
        assert client.wait_for(lambda: all(len(client.depth_reliable[c]) >= 2 and confidence[c] for c in CAMS))
        stamps = {c: {s[c] for s in sent} for c in CAMS}
        for cam in CAMS:
            depth = client.depth_reliable[cam][-1]
            assert stamp_to_ns(depth.header.stamp) in stamps[cam] and (depth.height, depth.width) == (H, W)
            conf = depth_image_to_array(confidence[cam][-1])
            assert conf.shape == (H, W) and np.nanmin(conf) >= 0.0 and np.nanmax(conf) <= 1.0
        assert 'onnxruntime' in log.read_text() and proc.poll() is None


def test_node_runs_an_int8_export_with_the_bins_head_at_half_resolution_close_to_the_fp32_model(model_file,
                                                                                                   tmp_path):
    # the fastest CPU path of `bench precision`: int8 ONNX Runtime with bins_downsample 2
    from surround_depth_ros.engine import DepthEngine
    from surround_depth_train.export.calibration import calibration_from_dataset
    from surround_depth_train.export.int8 import export_int8

    calibration = calibration_from_dataset([f'data.cache_dir={tmp_path / "cache"}'], input_size=(64, 96),
                                           samples=1, check_samples=1)
    int8 = export_int8(model_file, tmp_path / 'tiny.int8.onnx', calibration, bins_downsample=2,
                       log=lambda line: None).onnx_path
    parameters = {'model_file': str(int8), 'backend': 'onnxruntime', 'precision': 'int8', 'bins_downsample': 2,
                  'rig_file': str(REPO / 'config' / 'rigs' / 'surroundsim.yaml'), 'timeout': 0.4,
                  'publish': ['depth', 'cloud']}
    domain = str(51 + os.getpid() % 49)  # the ONNX node's range: that node has stopped
    with _running_node(tmp_path, parameters, domain) as (client, proc, log):
        sent = _pace(client, 2)
        assert client.wait_for(lambda: all(client.depth_reliable[c] for c in CAMS))
        stamps = {c: {s[c] for s in sent} for c in CAMS}
        depths, images = {}, []
        for cam in CAMS:
            message = client.depth_reliable[cam][-1]
            stamp = stamp_to_ns(message.header.stamp)
            assert stamp in stamps[cam] and (message.height, message.width) == (H, W)
            depths[cam] = depth_image_to_array(message)
            images.append(client.sent_images[(cam, stamp)])
        assert '(int8, onnxruntime), input 96x64, bins at 1/2;' in log.read_text() and proc.poll() is None
    # The same images through the fp32 model with the same head: the int8 node's depth is close to it.
    fp32 = DepthEngine(model_file, bins_downsample=2).predict(images, [_K()] * len(CAMS), names=list(CAMS)).depths
    for cam, reference in zip(CAMS, fp32):
        valid = np.isfinite(depths[cam])
        assert valid.mean() > 0.9
        assert np.median(np.abs(depths[cam][valid] - reference[valid]) / reference[valid]) < 0.05
