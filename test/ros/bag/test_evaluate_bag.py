"""Offline bag evaluation: the node's path on a converted SurroundSim bag agrees with the dataset evaluation on the
same frames; bags it cannot use are refused with one message listing their topics, and nothing is written."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from rosbags.rosbag2 import Reader, Writer

from surround_depth_train.data.rosbag import topics
from surround_depth_ros.evaluate_bag import main as evaluate_main
from surround_depth_train.evaluation.runner import evaluate_model
from surround_depth_train.metrics import METRIC_NAMES
from surround_depth_train.models.modelfile import load_model

FRAMES = 3  # the sim fixture's (conftest.py)

def test_bag_evaluation_agrees_with_the_dataset_evaluation_on_the_same_frames(sim, tmp_path):
    out = tmp_path / 'eval'
    assert evaluate_main([str(sim['bag']), '--model', str(sim['model']), '--out', str(out), '--pictures', '1',
                          '--mask-files', *sim['masks']]) == 0
    bag = json.loads((out / 'results.json').read_text())
    model, _ = load_model(sim['model'])
    ref = evaluate_model(model, sim['dataset'], pictures=0, latency_runs=1, consistency=False, progress=False)
    assert bag['bag']['sets'] == FRAMES and bag['bag']['partial_sets'] == 0 and not bag['bag']['unscored']
    assert len(bag['frames']) == FRAMES * 6
    for cam, expected in ref['lidar']['cameras'].items():
        got = bag['lidar']['cameras'][cam]
        assert got['images'] == expected['images'] == FRAMES
        for k in METRIC_NAMES:
            assert got[k] == pytest.approx(expected[k], rel=1e-3, abs=1e-6), (cam, k)
    for k in METRIC_NAMES:
        assert bag['lidar']['mean'][k] == pytest.approx(ref['lidar']['mean'][k], rel=1e-3, abs=1e-6)
    md = (out / 'results.md').read_text()
    assert '| Method | Params | Latency | AbsRel' in md and f'{bag["lidar"]["mean"]["abs_rel"]:.3f}' in md
    assert (out / 'pictures' / 'mosaic_000.png').is_file() and (out / 'pictures' / 'bev_000.png').is_file()


def test_without_the_ego_masks_the_cameras_that_see_the_car_body_score_differently(sim, tmp_path):
    """The masks matter (LiDAR points behind the car body project onto it): the agreement above is not luck."""
    out = tmp_path / 'eval'
    assert evaluate_main([str(sim['bag']), '--model', str(sim['model']), '--out', str(out), '--pictures', '0']) == 0
    bag = json.loads((out / 'results.json').read_text())
    model, _ = load_model(sim['model'])
    ref = evaluate_model(model, sim['dataset'], pictures=0, latency_runs=1, consistency=False, progress=False)
    diffs = [abs(bag['lidar']['cameras'][c]['abs_rel'] / ref['lidar']['cameras'][c]['abs_rel'] - 1)
             for c in ref['lidar']['cameras']]
    assert max(diffs) > 1e-3


def test_an_export_with_the_bins_head_at_half_resolution_is_evaluated_as_exported(sim, tmp_path):
    from surround_depth_train.export.onnx_export import export_onnx

    onnx = export_onnx(sim['model'], tmp_path / 'half.onnx', bins_downsample=2, log=lambda _: None).onnx_path
    results = {}
    for name, args in {'onnx': ['--model', str(onnx), '--backend', 'onnxruntime'],
                       'torch': ['--model', str(sim['model']), '--bins-downsample', '2'],
                       'full': ['--model', str(sim['model'])]}.items():
        out = tmp_path / name
        assert evaluate_main([str(sim['bag']), *args, '--out', str(out), '--pictures', '0']) == 0
        results[name] = json.loads((out / 'results.json').read_text())['lidar']['mean']
    for k in METRIC_NAMES:
        assert results['onnx'][k] == pytest.approx(results['torch'][k], rel=1e-3, abs=1e-6), k
    assert results['torch']['abs_rel'] != results['full']['abs_rel']  # the cheaper head was the one evaluated


def _copy_bag(src: Path, dst: Path, keep=lambda topic: True, retype: dict | None = None) -> None:
    """A new bag with the messages of ``src`` on the topics ``keep`` accepts (raw CDR copied)."""
    from surround_depth_ros.bag.writer import TYPESTORE

    with Reader(src) as reader, Writer(dst, version=9) as writer:
        conns = {}
        for conn in reader.connections:
            if keep(conn.topic):
                msgtype = (retype or {}).get(conn.topic, conn.msgtype)
                conns[conn.id] = writer.add_connection(conn.topic, msgtype, typestore=TYPESTORE)
        for conn, ns, raw in reader.messages():
            if conn.id in conns:
                writer.write(conns[conn.id], ns, raw)


def _refused(sim, bag: Path, tmp_path, capsys) -> str:
    out = tmp_path / 'never'
    assert evaluate_main([str(bag), '--model', str(sim['model']), '--out', str(out)]) == 2
    assert not out.exists()  # nothing half-written
    err = capsys.readouterr().err.strip()
    assert err.startswith('error: ') and len(err.splitlines()) == 1 and 'Traceback' not in err
    return err


def test_a_bag_without_camera_topics_is_refused_listing_its_topics(sim, tmp_path, capsys):
    bag = tmp_path / 'lidar_only'
    _copy_bag(sim['bag'], bag, keep=lambda t: not t.startswith('/front') and not t.startswith('/back'))
    err = _refused(sim, bag, tmp_path, capsys)
    assert 'no camera topics' in err and '/lidar/points (sensor_msgs/msg/PointCloud2, 3)' in err
    shutil.copy(sim['bag'] / 'rig.yaml', bag / 'rig.yaml')  # the rig names the cameras: their topics are missing
    err = _refused(sim, bag, tmp_path, capsys)
    assert "camera topic(s) ['/front/image_raw or /front/image_raw/compressed', '/front/camera_info'" in err


def test_a_bag_without_lidar_is_refused_naming_the_missing_topic(sim, tmp_path, capsys):
    bag = tmp_path / 'no_lidar'
    _copy_bag(sim['bag'], bag, keep=lambda t: t != topics.LIDAR_TOPIC)
    err = _refused(sim, bag, tmp_path, capsys)
    assert "no LiDAR: topic '/lidar/points'" in err and '/front/camera_info (sensor_msgs/msg/CameraInfo' in err


def test_a_camera_topic_of_an_unknown_type_is_refused_naming_both_types(sim, tmp_path, capsys):
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    store = get_typestore(Stores.LATEST)  # a private store: the writer's shared one stays as it is
    store.register(get_types_from_msg('string text', 'acme_msgs/msg/Frame'))
    ser = store.serialize_cdr(store.types['acme_msgs/msg/Frame'](text='x'), 'acme_msgs/msg/Frame')
    bag = tmp_path / 'retyped'
    with Reader(sim['bag']) as reader:  # /front/image_raw as a type the evaluator does not know
        with Writer(bag, version=9) as writer:
            conns = {}
            for conn in reader.connections:
                conns[conn.id] = writer.add_connection(
                    conn.topic, 'acme_msgs/msg/Frame' if conn.topic == '/front/image_raw' else conn.msgtype,
                    typestore=store)
            for conn, ns, raw in reader.messages():
                writer.write(conns[conn.id], ns, ser if conn.topic == '/front/image_raw' else raw)
    err = _refused(sim, bag, tmp_path, capsys)
    assert '/front/image_raw is acme_msgs/msg/Frame, not sensor_msgs/msg/Image' in err


def test_a_truncated_bag_is_refused_with_one_line(sim, tmp_path, capsys):
    bag = tmp_path / 'truncated'
    shutil.copytree(sim['bag'], bag)
    data = next(bag.glob('*.mcap'))
    raw = data.read_bytes()
    data.write_bytes(raw[:len(raw) // 2])
    err = _refused(sim, bag, tmp_path, capsys)
    assert 'truncated or damaged' in err


def test_a_missing_bag_is_refused_with_the_fix(sim, tmp_path, capsys):
    err = _refused(sim, tmp_path / 'nothing_here', tmp_path, capsys)
    assert 'does not exist' in err


def test_rig_from_bag_rebuilds_the_converters_rig_from_camera_info_and_tf_static(sim, tmp_path, capsys):
    from surround_depth_ros.rig_from_bag import main as rig_main
    from surround_depth_train.geometry.rig import CameraRig

    out = tmp_path / 'rig.yaml'
    assert rig_main([str(sim['bag']), '--out', str(out)]) == 0
    got, expected = CameraRig.from_yaml(out), CameraRig.from_yaml(sim['bag'] / 'rig.yaml')
    assert got.names == expected.names and got.base_frame == expected.base_frame
    for a, b in zip(got, expected):
        assert (a.width, a.height, a.frame_id) == (b.width, b.height, b.frame_id)
        np.testing.assert_allclose(a.K, b.K, atol=1e-9)
        np.testing.assert_allclose(a.T_base_cam, b.T_base_cam, atol=1e-9)
    assert got.lidar.frame_id == expected.lidar.frame_id
    np.testing.assert_allclose(got.lidar.T_base_lidar, expected.lidar.T_base_lidar, atol=1e-9)
