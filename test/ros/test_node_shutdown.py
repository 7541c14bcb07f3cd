"""The node ends cleanly on SIGINT, every time, while camera sets keep coming: also on two SIGINTs in a row, which
is what one Ctrl-C under ``ros2 launch`` delivers (the terminal's to the process group, then launch's own)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

rclpy = pytest.importorskip('rclpy')

from rclpy.qos import qos_profile_sensor_data  # noqa: E402
from sensor_msgs.msg import CameraInfo, Image  # noqa: E402

from surround_depth_ros.messages import camera_messages  # noqa: E402
from surround_depth_train.data.rosbag import topics  # noqa: E402
from surround_depth_train.geometry.rig import CameraRig  # noqa: E402

pytestmark = [pytest.mark.ros, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
RIG = REPO / 'config' / 'rigs' / 'surroundsim.yaml'
DOMAIN = 150 + os.getpid() % 50


@pytest.fixture(scope='module')
def params_file(tmp_path_factory):
    import torch

    from surround_depth_train.models import create_model, save_model

    folder = tmp_path_factory.mktemp('shutdown')
    torch.manual_seed(0)
    save_model(folder / 'tiny.pt', create_model('tiny_student_mb', max_depth=80.0), name='tiny_student_mb',
               kwargs={'max_depth': 80.0}, input_size=(64, 96))
    path = folder / 'params.yaml'
    path.write_text(yaml.safe_dump({'/**': {'ros__parameters': {
        'model_file': str(folder / 'tiny.pt'), 'rig_file': str(RIG), 'diagnostics_period': 0.1,
        'publish': ['depth', 'depth_info', 'confidence', 'colorized', 'cloud']}}}))
    return path


@pytest.fixture(scope='module')
def camera_load():
    """Six cameras at ~30 sets/s on the test's domain, from a thread, for the whole module."""
    rig = CameraRig.from_yaml(RIG).resized(128, 96)
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=DOMAIN)
    node = rclpy.create_node('surround_depth_load', context=context)
    pubs = {c.name: (node.create_publisher(Image, topics.image_topic(c.name), qos_profile_sensor_data),
                     node.create_publisher(CameraInfo, topics.camera_info_topic(c.name), qos_profile_sensor_data))
            for c in rig}
    stop = threading.Event()

    def publish():
        rng = np.random.default_rng(0)
        while not stop.is_set():
            stamp = time.time_ns()
            for cam in rig:
                image, info = camera_messages(rng.integers(0, 256, (96, 128, 3), np.uint8), cam.K, stamp,
                                              f'{cam.name}_optical_frame')
                pubs[cam.name][1].publish(info)
                pubs[cam.name][0].publish(image)
            time.sleep(0.03)

    thread = threading.Thread(target=publish, daemon=True)
    thread.start()
    yield
    stop.set()
    thread.join()
    node.destroy_node()
    rclpy.shutdown(context=context)


@pytest.mark.parametrize('signals, after', [(1, 1.0), (1, 2.5), (2, 1.5), (2, 2.0)])
def test_sigint_under_load_ends_the_node_with_status_0_and_no_abort(params_file, camera_load, tmp_path, signals,
                                                                    after):
    log = tmp_path / 'node.log'
    env = dict(os.environ, ROS_DOMAIN_ID=str(DOMAIN), FASTDDS_BUILTIN_TRANSPORTS='LARGE_DATA', OMP_NUM_THREADS='1')
    with open(log, 'w') as out:
        proc = subprocess.Popen([sys.executable, '-m', 'surround_depth_ros.node', '--ros-args', '--params-file',
                                 str(params_file)], env=env, cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while 'allocator:' not in log.read_text() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert proc.poll() is None and 'allocator:' in log.read_text(), log.read_text()
        time.sleep(after)  # sets are flowing through the node now
        for i in range(signals):
            proc.send_signal(signal.SIGINT)
            time.sleep(0.02)
        code = proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    text = log.read_text()
    assert code == 0, f'exit {code}:\n{text[-3000:]}'
    assert 'terminate called' not in text and 'Traceback' not in text, text[-3000:]
