"""Replay over real DDS: a replay process publishes a short bag; this process receives every message of every
publishable topic in recorded order, and /clock steps through the recorded stamps. Counts, order and stamps only,
never wall-clock time."""
from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

rclpy = pytest.importorskip('rclpy')
from nav_msgs.msg import Odometry  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.qos import QoSProfile, ReliabilityPolicy  # noqa: E402
from rosgraph_msgs.msg import Clock  # noqa: E402
from sensor_msgs.msg import CameraInfo, Image, PointCloud2  # noqa: E402

from surround_depth_train.data.rosbag import topics  # noqa: E402
from surround_depth_ros.bag.writer import (BagWriter, camera_info_msg, image_msg, odometry_msg,  # noqa: E402
                                           pointcloud_msg, tf_msg, transform_msg)
from surround_depth_train.data.rosbag.messages import stamp_to_ns  # noqa: E402
from surround_depth_ros.replay import main as replay_main  # noqa: E402

pytestmark = [pytest.mark.ros, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[3]
DOMAIN = str(160 + os.getpid() % 60)
os.environ.setdefault('FASTDDS_BUILTIN_TRANSPORTS', 'LARGE_DATA')
T0 = 1_700_000_000_000_000_000
STEP = 50_000_000  # 20 Hz: 10 stamps in 0.45 s of recording


def _short_bag(path: Path) -> dict[str, list[int]]:
    """Ten stamps: an image + camera_info of one camera, odometry, /tf (not publishable here), a LiDAR sweep at
    every other stamp. Returns the stamps written per topic."""
    written: dict[str, list[int]] = {}
    rng = np.random.default_rng(0)
    K = np.array([[40.0, 0, 16], [0, 40.0, 12], [0, 0, 1]])
    with BagWriter(path) as bag:
        def put(topic, msg, ns):
            bag.write(topic, msg, ns)
            written.setdefault(topic, []).append(ns)

        for i in range(10):
            ns = T0 + i * STEP
            T = np.eye(4)
            T[0, 3] = 0.4 * i
            put(topics.TF_TOPIC, tf_msg([transform_msg(ns, 'odom', 'base_link', T)]), ns)
            put(topics.ODOM_TOPIC, odometry_msg(ns, 'odom', 'base_link', T), ns)
            if i % 2 == 0:
                put(topics.LIDAR_TOPIC, pointcloud_msg(ns, 'lidar', rng.normal(size=(50, 5))), ns)
            ns_cam = ns + 7_000_000
            put(topics.image_topic('front'), image_msg(ns_cam, 'front_optical_frame',
                                                       rng.integers(0, 255, (24, 32, 3), dtype=np.uint8)), ns_cam)
            put(topics.camera_info_topic('front'), camera_info_msg(ns_cam, 'front_optical_frame', K, 32, 24), ns_cam)
    return written


class Receiver:
    def __init__(self):
        self.context = rclpy.Context()
        rclpy.init(context=self.context, domain_id=int(DOMAIN))
        self.node = rclpy.create_node('replay_test_receiver', context=self.context)
        self.got: dict[str, list[int]] = {}
        self.lock = threading.Lock()
        qos = QoSProfile(depth=1000, reliability=ReliabilityPolicy.RELIABLE)
        for topic, cls in ((topics.ODOM_TOPIC, Odometry), (topics.LIDAR_TOPIC, PointCloud2),
                           ('/camera/front', Image), (topics.camera_info_topic('front'), CameraInfo)):
            self.node.create_subscription(cls, topic, self._keep(topic, lambda m: stamp_to_ns(m.header.stamp)), qos)
        self.node.create_subscription(Clock, topics.CLOCK_TOPIC,
                                      self._keep(topics.CLOCK_TOPIC, lambda m: stamp_to_ns(m.clock)), qos)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.thread = threading.Thread(target=self.executor.spin, daemon=True)
        self.thread.start()

    def _keep(self, topic, stamp):
        def callback(msg):
            with self.lock:
                self.got.setdefault(topic, []).append(stamp(msg))
        return callback

    def close(self):
        self.executor.shutdown()
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)


def test_replay_publishes_every_message_in_order_with_clock_following_the_recorded_stamps(tmp_path):
    bag = tmp_path / 'short'
    written = _short_bag(bag)
    receiver = Receiver()
    try:
        env = dict(os.environ, ROS_DOMAIN_ID=DOMAIN, PYTHONPATH=str(REPO))
        proc = subprocess.run([sys.executable, '-m', 'surround_depth_ros.replay', str(bag), '--rate', '2',
                               '--remap', f'{topics.image_topic("front")}:=/camera/front',
                               '--wait-for-subscribers', '60', '--quiet'],
                              env=env, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        deadline = time.monotonic() + 20
        expected_total = sum(len(v) for k, v in written.items() if k != topics.TF_TOPIC)
        while time.monotonic() < deadline:
            with receiver.lock:
                if sum(len(v) for k, v in receiver.got.items() if k != topics.CLOCK_TOPIC) >= expected_total:
                    break
            time.sleep(0.05)
    finally:
        receiver.close()
    got = receiver.got
    assert proc.stdout.count('skipping topics') == 1 and '/tf (tf2_msgs/msg/TFMessage)' in proc.stdout
    assert got[topics.ODOM_TOPIC] == written[topics.ODOM_TOPIC]
    assert got[topics.LIDAR_TOPIC] == written[topics.LIDAR_TOPIC]
    assert got['/camera/front'] == written[topics.image_topic('front')]  # remapped
    assert got[topics.camera_info_topic('front')] == written[topics.camera_info_topic('front')]
    recorded = sorted({ns for k, v in written.items() if k != topics.TF_TOPIC for ns in v})
    assert got[topics.CLOCK_TOPIC] == recorded  # one /clock per distinct recorded time, in order
    assert f'published {expected_total} messages on 4 topics' in proc.stdout


def test_replay_refuses_a_topic_the_bag_does_not_have_listing_what_it_has(tmp_path, capsys):
    bag = tmp_path / 'short'
    _short_bag(bag)
    assert replay_main([str(bag), '--topics', '/nope']) == 2
    err = capsys.readouterr().err
    assert "--topics ['/nope'] are not in the bag" in err and '/odom (nav_msgs/msg/Odometry, 10)' in err
    assert replay_main([str(bag), '--remap', 'odom:=x']) == 2
    assert 'expected /from:=/to' in capsys.readouterr().err
