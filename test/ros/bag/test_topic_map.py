"""The README's nuScenes topic map on a bag in the common nuScenes converters' layout (CAM_* cameras, compressed
images, /LIDAR_TOP, ego motion on /tf from map): the cameras are matched to a SurroundSim-trained model's rig by
name only. Unmapped, no camera is focal-checked or corrected and one warning says how to map them; mapped with
``training_cameras``, every camera is checked and, its K being the training K, passes."""
from __future__ import annotations

import json
import logging
from pathlib import Path

import cv2
import pytest
import yaml
from rosbags.rosbag2 import Reader, Writer

from surround_depth_ros.bag.writer import TYPESTORE, compressed_msg
from surround_depth_ros.evaluate_bag import main as evaluate_main

NUSCENES = {'front': 'CAM_FRONT', 'front_left': 'CAM_FRONT_LEFT', 'back_left': 'CAM_BACK_LEFT', 'back': 'CAM_BACK',
            'back_right': 'CAM_BACK_RIGHT', 'front_right': 'CAM_FRONT_RIGHT'}
README_MAP = {'compressed_image': '/{cam}/image_rect_compressed', 'image': '', 'lidar': '/LIDAR_TOP', 'odom': '',
              'odom_frame': 'map'}


def _nuscenes_layout(src: Path, dst: Path) -> None:
    """The sim bag under nuScenes names: JPEG images on /CAM_*/image_rect_compressed, /LIDAR_TOP, no /odom, the ego
    motion as map -> base_link on /tf; the cameras in the order of their names (CAM_BACK first), so that matching by
    position pairs CAM_BACK with front and CAM_FRONT with back (focal lengths x0.535 and x1.871)."""
    def order(conn):
        cam = conn.topic[1:].partition('/')[0]
        return (cam in NUSCENES, NUSCENES.get(cam, ''), conn.id)

    with Reader(src) as reader, Writer(dst, version=9) as writer:
        conns = {}
        for conn in sorted(reader.connections, key=order):
            cam, _, rest = conn.topic[1:].partition('/')
            if conn.topic == '/odom' or rest == 'depth/image_gt':
                continue
            if cam in NUSCENES and rest == 'image_raw':
                conns[conn.id] = writer.add_connection(f'/{NUSCENES[cam]}/image_rect_compressed',
                                                       'sensor_msgs/msg/CompressedImage', typestore=TYPESTORE)
            elif cam in NUSCENES:
                conns[conn.id] = writer.add_connection(f'/{NUSCENES[cam]}/{rest}', conn.msgtype, typestore=TYPESTORE)
            else:
                conns[conn.id] = writer.add_connection('/LIDAR_TOP' if conn.topic == '/lidar/points' else conn.topic,
                                                       conn.msgtype, typestore=TYPESTORE)
        for conn, ns, raw in reader.messages():
            if conn.id not in conns:
                continue
            out = conns[conn.id]
            if out.msgtype == 'sensor_msgs/msg/CompressedImage':
                msg = TYPESTORE.deserialize_cdr(raw, conn.msgtype)
                rgb = msg.data.reshape(msg.height, msg.width, 3)
                ok, jpeg = cv2.imencode('.jpg', cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95])
                assert ok
                raw = TYPESTORE.serialize_cdr(compressed_msg(ns, msg.header.frame_id, jpeg.tobytes()), out.msgtype)
            elif conn.topic == '/tf':
                msg = TYPESTORE.deserialize_cdr(raw, conn.msgtype)
                for t in msg.transforms:
                    t.header.frame_id = 'map' if t.header.frame_id == 'odom' else t.header.frame_id
                raw = TYPESTORE.serialize_cdr(msg, conn.msgtype)
            writer.write(out, ns, raw)


@pytest.fixture(scope='module')
def nuscenes_bag(sim, tmp_path_factory) -> Path:
    bag = tmp_path_factory.mktemp('nuscenes_layout') / 'scene'
    _nuscenes_layout(sim['bag'], bag)
    return bag


def _evaluate(sim, bag: Path, tmp_path: Path, topic_map: dict, caplog) -> tuple[dict, list[str]]:
    map_file = tmp_path / 'map.yaml'
    map_file.write_text(yaml.safe_dump(topic_map))
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger='surround_depth.engine'):
        assert evaluate_main([str(bag), '--model', str(sim['model']), '--topic-map', str(map_file),
                              '--out', str(tmp_path / 'eval'), '--pictures', '0']) == 0
    return json.loads((tmp_path / 'eval' / 'results.json').read_text()), [r.getMessage() for r in caplog.records]


def test_cameras_named_otherwise_than_the_training_rig_get_no_focal_check_and_one_warning(sim, nuscenes_bag,
                                                                                      tmp_path, caplog):
    result, warnings = _evaluate(sim, nuscenes_bag, tmp_path, README_MAP, caplog)
    assert result['bag']['sets'] == 3 and result['dataset']['cameras'][:4] == ['CAM_BACK', 'CAM_BACK_LEFT',
                                                                                'CAM_BACK_RIGHT', 'CAM_FRONT']
    assert not [w for w in warnings if 'focal length at the network input differs' in w]  # no x0.535, no x1.871
    (warning,) = [w for w in warnings if 'not in the training rig' in w]
    assert 'CAM_FRONT' in warning and 'training_cameras: {' in warning and 'never corrected' in warning


def test_a_topic_map_naming_the_training_camera_each_plays_checks_every_focal_length(sim, nuscenes_bag, tmp_path,
                                                                                   caplog):
    mapped = dict(README_MAP, training_cameras={v: k for k, v in NUSCENES.items()})
    result, warnings = _evaluate(sim, nuscenes_bag, tmp_path, mapped, caplog)
    assert result['bag']['sets'] == 3 and warnings == []  # K equal to the training K: checked, and silent


def test_a_training_camera_the_model_does_not_have_is_refused(sim, nuscenes_bag, tmp_path, capsys):
    map_file = tmp_path / 'map.yaml'
    map_file.write_text(yaml.safe_dump(dict(README_MAP, training_cameras={'CAM_FRONT': 'CAM_FRONT'})))
    assert evaluate_main([str(nuscenes_bag), '--model', str(sim['model']), '--topic-map', str(map_file),
                          '--out', str(tmp_path / 'never')]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: training_cameras {'CAM_FRONT': 'CAM_FRONT'}") and 'front_left' in err
    assert not (tmp_path / 'never').exists()
