"""Bags as `ros2 bag record` of Humble writes them (sqlite3, metadata version 5, no message definitions, a custom
message type beside the sensors) read in every tool as the bag they were copied from: the bag evaluator, the rig
writer, the training dataset and replay. The custom topic is named once and skipped; a Humble bag without cameras
is refused with its topics and their types."""
from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import torch

from surround_depth_train.data.rosbag.reader import BagSource
from surround_depth_ros.evaluate_bag import main as evaluate_main
from surround_depth_train.metrics import METRIC_NAMES

CUSTOM = '/vehicle/status (acme_vehicle_msgs/msg/Status'


def test_a_humble_bag_opens_with_its_cameras_and_names_the_custom_topic_once(humble_bag, caplog):
    from surround_depth_train.data.rosbag import reader

    reader._WARNED.clear()
    with caplog.at_level(logging.WARNING, logger='surround_depth.bag'):
        for _ in range(2):  # a dataset opens each bag again in every worker: still one warning
            with BagSource(humble_bag) as source:
                assert sorted(source.cameras) == sorted(['front', 'front_left', 'back_left', 'back', 'back_right',
                                                         'front_right'])
    warnings = [r.getMessage() for r in caplog.records if 'cannot be decoded' in r.getMessage()]
    assert len(warnings) == 1 and CUSTOM in warnings[0] and 'ros2_humble typestore' in warnings[0]
    assert '/front/camera_info' not in warnings[0]


def test_a_humble_bag_is_evaluated_as_the_bag_it_was_copied_from(sim, humble_bag, tmp_path, capsys):
    results = {}
    for name, bag in (('mcap', sim['bag']), ('humble', humble_bag)):
        out = tmp_path / name
        assert evaluate_main([str(bag), '--model', str(sim['model']), '--out', str(out), '--pictures', '0']) == 0
        results[name] = json.loads((out / 'results.json').read_text())
    capsys.readouterr()
    want, got = results['mcap'], results['humble']
    assert got['bag']['sets'] == want['bag']['sets'] == 3 and got['bag']['partial_sets'] == 0
    for cam, expected in want['lidar']['cameras'].items():
        for k in METRIC_NAMES:
            assert got['lidar']['cameras'][cam][k] == pytest.approx(expected[k], rel=1e-9, abs=1e-12), (cam, k)


def test_rig_from_bag_reads_a_humble_bag_s_rig(sim, humble_bag, tmp_path):
    from surround_depth_ros.rig_from_bag import main as rig_main
    from surround_depth_train.geometry.rig import CameraRig

    out = tmp_path / 'rig.yaml'
    assert rig_main([str(humble_bag), '--out', str(out)]) == 0
    got, expected = CameraRig.from_yaml(out), CameraRig.from_yaml(sim['bag'] / 'rig.yaml')
    assert sorted(got.names) == sorted(expected.names) and got.lidar.frame_id == expected.lidar.frame_id
    for cam in expected:
        np.testing.assert_allclose(got[cam.name].K, cam.K, atol=1e-9)
        np.testing.assert_allclose(got[cam.name].T_base_cam, cam.T_base_cam, atol=1e-9)


def test_a_humble_bag_as_training_data_gives_the_samples_of_the_bag_it_was_copied_from(sim, humble_bag):
    from surround_depth_train.training.builders import build_dataset
    from surround_depth_train.training.config import DataConfig

    want = build_dataset(DataConfig(dataset='rosbag', root=str(sim['bag']), image_size=(96, 64)), 'val')
    got = build_dataset(DataConfig(dataset='rosbag', root=str(humble_bag), image_size=(96, 64)), 'val')
    assert len(got) == len(want) == 3
    order = [got.camera_names.index(c) for c in want.camera_names]
    for i in range(len(want)):
        a, b = got[i], want[i]
        assert torch.equal(a['image'][order], b['image'])
        assert torch.equal(a['depth'][order], b['depth'])
        torch.testing.assert_close(a['K'][order], b['K'])


def test_replay_plays_a_humble_bag_and_skips_only_the_custom_topic(humble_bag):
    pytest.importorskip('sensor_msgs.msg')
    from surround_depth_ros.bag.playback import Playback

    with Playback(humble_bag) as bag:
        skipped = {t.name for t in bag.skipped}
        assert '/vehicle/status' in skipped and '/front/image_raw' not in skipped
        assert '/front/camera_info' in {t.name for t in bag.playable}
        assert bag.topics['/tf_static'].transient_local  # Humble's QoS string is read
        assert sum(1 for _ in bag.messages()) == bag.count > 0


def test_a_humble_bag_without_cameras_is_refused_listing_its_topics_and_types(sim, humble_writer, tmp_path,
                                                                              capsys):
    bag = humble_writer(sim['bag'], tmp_path / 'no_cameras', keep=lambda t: not t.endswith(('image_raw', 'info')))
    out = tmp_path / 'never'
    assert evaluate_main([str(bag), '--model', str(sim['model']), '--out', str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith('error: ') and len(err.splitlines()) == 1 and not out.exists()
    assert 'no camera topics' in err and '/lidar/points (sensor_msgs/msg/PointCloud2, 3)' in err
    assert f'{CUSTOM}, ' in err  # listed, though it cannot be decoded
