"""The CDR bytes the bag writer stores deserialise into rclpy's own messages, field for field and byte for byte."""
import json

import numpy as np
import pytest
from rosbags.rosbag2 import Reader

from surround_depth_ros.bag.writer import TYPESTORE, BagError, BagWriter, stamp_ns
from surround_depth_ros.convert import main

rclpy_serialization = pytest.importorskip('rclpy.serialization')


def _rclpy_types() -> dict:
    from nav_msgs.msg import Odometry
    from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2

    return {'sensor_msgs/msg/Image': Image, 'sensor_msgs/msg/CompressedImage': CompressedImage,
            'sensor_msgs/msg/CameraInfo': CameraInfo, 'sensor_msgs/msg/PointCloud2': PointCloud2,
            'nav_msgs/msg/Odometry': Odometry}


def _same(ours, theirs, path='msg') -> None:
    """Every field of the rosbags message equals the rclpy one (arrays and byte payloads exactly)."""
    if hasattr(ours, '__dataclass_fields__'):
        for name in ours.__dataclass_fields__:
            if name == '__msgtype__':
                continue
            _same(getattr(ours, name), getattr(theirs, name), f'{path}.{name}')
    elif isinstance(ours, np.ndarray):
        theirs = np.asarray(theirs)
        assert ours.tobytes() == theirs.astype(ours.dtype).tobytes() and len(ours) == len(theirs), path
    elif isinstance(ours, list):
        assert len(ours) == len(theirs), path
        for i, (a, b) in enumerate(zip(ours, theirs)):
            _same(a, b, f'{path}[{i}]')
    else:
        assert ours == theirs, (path, ours, theirs)


@pytest.mark.parametrize('dataset', ['nuscenes', 'ddad'])
def test_image_camera_info_cloud_and_odometry_deserialize_into_rclpy_messages_exactly(dataset, tmp_path,
                                                                                      nuscenes_root, ddad_root):
    args = ['nuscenes', '--root', str(nuscenes_root), '--scenes', 'scene-0103'] if dataset == 'nuscenes' else \
        ['ddad', '--root', str(ddad_root), '--scenes', '000151', '--images', 'raw']
    assert main(args + ['--out', str(tmp_path / 'bag')]) == 0
    types = _rclpy_types()
    seen = set()
    with Reader(tmp_path / 'bag') as reader:
        for conn, _, raw in reader.messages():
            if conn.msgtype not in types:
                continue
            raw = bytes(raw)
            ours = TYPESTORE.deserialize_cdr(raw, conn.msgtype)
            theirs = rclpy_serialization.deserialize_message(raw, types[conn.msgtype])
            _same(ours, theirs)
            again = rclpy_serialization.serialize_message(theirs)
            assert len(again) == len(raw)
            # rclpy leaves CDR alignment padding uninitialised (rosbags writes zeros): all other bytes are equal
            differ = [i for i in range(len(raw)) if raw[i] != again[i]]
            assert all(raw[i] == 0 for i in differ), (conn.msgtype, differ)
            _same(ours, TYPESTORE.deserialize_cdr(again, conn.msgtype))
            seen.add(conn.msgtype)
    image = 'sensor_msgs/msg/CompressedImage' if dataset == 'nuscenes' else 'sensor_msgs/msg/Image'
    assert seen == {image, 'sensor_msgs/msg/CameraInfo', 'sensor_msgs/msg/PointCloud2', 'nav_msgs/msg/Odometry'}


def test_writer_refuses_an_existing_output_and_an_unknown_storage(tmp_path):
    with pytest.raises(BagError, match='already exists'):
        BagWriter(tmp_path)
    with pytest.raises(BagError, match='unknown bag storage'):
        BagWriter(tmp_path / 'x', storage='rosbag1')


def test_stamps_in_microseconds_stay_exact_in_nanoseconds():
    assert stamp_ns(1532402927.647951) == 1532402927647951000


def test_bag_type_hashes_equal_the_installed_ros_message_packages(tmp_path, nuscenes_root):
    """``ros2 bag play`` (Jazzy and later) checks each topic's RIHS01 type hash against its own packages."""
    import os
    import sys
    from pathlib import Path

    prefixes = [p for p in os.environ.get('AMENT_PREFIX_PATH', '').split(os.pathsep) if p] + [sys.prefix]
    assert main(['nuscenes', '--root', str(nuscenes_root), '--scenes', 'scene-0103', '--keyframes-only',
                 '--out', str(tmp_path / 'bag')]) == 0
    checked = 0
    with Reader(tmp_path / 'bag') as reader:
        for conn in reader.connections:
            pkg, _, name = conn.msgtype.split('/')
            found = [Path(p) / 'share' / pkg / 'msg' / f'{name}.json' for p in prefixes]
            found = [f for f in found if f.is_file()]
            if not found:
                continue  # tf2_msgs has no wheel here
            doc = json.loads(found[0].read_text())
            ref = next(h['hash_string'] for h in doc['type_hashes'] if h['type_name'] == conn.msgtype)
            assert conn.digest == ref, conn.msgtype
            checked += 1
    assert checked >= 4  # CompressedImage, CameraInfo, PointCloud2, Odometry
