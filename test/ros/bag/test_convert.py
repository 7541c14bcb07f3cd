"""Converters to rosbag2 on the real-format fixtures: every topic, count, frame and stamp read back with rosbags;
the messages deserialise into rclpy messages; broken inputs are skipped and counted, and the bag always opens."""
import json
from pathlib import Path

import numpy as np
import pytest
from rosbags.rosbag2 import Reader

from surround_depth_train.data.rosbag import topics
from surround_depth_ros.bag.scene import CameraEvent, LidarEvent, write_scene
from surround_depth_ros.bag.writer import TYPESTORE, BagWriter
from surround_depth_ros.convert import main
from surround_depth_train.data.nuscenes import NUSCENES_CAMERAS, nuscenes_transform, open_nuscenes
from surround_depth_train.data.surroundsim.sequence import camera_stamps, lidar_stamp
from surround_depth_train.geometry.rig import RIG_PRESETS, CameraRig
from surround_depth_train.geometry.transforms import invert_transform, quat_to_matrix


def read_bag(path: Path) -> dict:
    """``{topic: [(log_ns, msg)]}`` plus the connections, read with rosbags."""
    out = {'_connections': {}}
    with Reader(path) as reader:
        for conn in reader.connections:
            out['_connections'][conn.topic] = conn
        for conn, ns, raw in reader.messages():
            out.setdefault(conn.topic, []).append((ns, TYPESTORE.deserialize_cdr(raw, conn.msgtype), bytes(raw)))
    return out


def header_ns(msg) -> int:
    return msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec


def camera_topics(names, image_topic) -> set:
    return {t for n in names for t in (image_topic(n), topics.camera_info_topic(n))}


def test_every_message_carries_its_sensor_stamp_as_header_and_log_time_and_tf_static_is_transient_local(
        tmp_path, nuscenes_root):
    out = tmp_path / 'bag'
    assert main(['nuscenes', '--root', str(nuscenes_root), '--version', 'v1.0-mini', '--out', str(out)]) == 0
    bag = read_bag(out)
    for topic, entries in bag.items():
        if topic == '_connections':
            continue
        for ns, msg, _ in entries:
            stamps = [header_ns(t) for t in msg.transforms] if topic in (topics.TF_TOPIC, topics.TF_STATIC_TOPIC) \
                else [header_ns(msg)]
            assert all(s == ns for s in stamps), topic
    qos = bag['_connections'][topics.TF_STATIC_TOPIC].ext.offered_qos_profiles[0]
    assert qos.durability.name == 'TRANSIENT_LOCAL' and qos.reliability.name == 'RELIABLE'
    assert bag['_connections'][topics.ODOM_TOPIC].msgtype == 'nav_msgs/msg/Odometry'


def test_nuscenes_bag_holds_every_sample_data_at_its_own_stamp_with_its_calibration(tmp_path, nuscenes_root):
    out = tmp_path / 'bag.db'
    assert main(['nuscenes', '--root', str(nuscenes_root), '--version', 'v1.0-mini', '--out', str(out),
                 '--storage', 'sqlite3', '--depth']) == 0
    assert next(out.glob('*.db3')).is_file()
    bag = read_bag(out)
    nusc = open_nuscenes(nuscenes_root, 'v1.0-mini')
    expected = camera_topics(NUSCENES_CAMERAS, topics.compressed_topic) | {
        topics.gt_depth_topic(c) for c in NUSCENES_CAMERAS} | {
        topics.LIDAR_TOPIC, topics.TF_TOPIC, topics.TF_STATIC_TOPIC, topics.ODOM_TOPIC}
    assert set(bag['_connections']) == expected
    by_topic = {t: {ns: (m, raw) for ns, m, raw in v} for t, v in bag.items() if t != '_connections'}
    stamps = set()
    for sd in nusc.sample_data:
        ns = sd['timestamp'] * 1000
        stamps.add(ns)
        cs = nusc.get('calibrated_sensor', sd['calibrated_sensor_token'])
        if sd['channel'] == 'LIDAR_TOP':
            msg, _ = by_topic[topics.LIDAR_TOPIC][ns]
            assert msg.header.frame_id == 'lidar' and [f.name for f in msg.fields] == ['x', 'y', 'z', 'intensity',
                                                                                        'ring']
            raw = np.fromfile(nuscenes_root / sd['filename'], dtype=np.float32)
            assert msg.data.tobytes() == raw.tobytes()  # the sweep as recorded, in the LiDAR's own frame
            continue
        cam = sd['channel']
        msg, _ = by_topic[topics.compressed_topic(cam)][ns]
        assert msg.header.frame_id == f'{cam}_optical_frame' and msg.format == 'jpeg'
        assert msg.data.tobytes() == (nuscenes_root / sd['filename']).read_bytes()  # no re-encoding
        info, _ = by_topic[topics.camera_info_topic(cam)][ns]
        assert np.allclose(info.k.reshape(3, 3), cs['camera_intrinsic']) and info.distortion_model == 'plumb_bob'
        assert np.array_equal(info.d, np.zeros(5)) and (info.width, info.height) == (sd['width'], sd['height'])
        assert np.allclose(info.p.reshape(3, 4)[:, :3], cs['camera_intrinsic'])
        if sd['is_key_frame']:
            depth, _ = by_topic[topics.gt_depth_topic(cam)][ns]
            assert depth.encoding == '32FC1' and np.isfinite(np.frombuffer(depth.data.tobytes(), np.float32)).sum()
    counts = {t: len(v) for t, v in by_topic.items()}
    assert counts[topics.LIDAR_TOPIC] == sum(sd['channel'] == 'LIDAR_TOP' for sd in nusc.sample_data)
    assert counts[topics.compressed_topic('CAM_FRONT')] == sum(sd['channel'] == 'CAM_FRONT'
                                                               for sd in nusc.sample_data)
    # odometry and /tf at every sensor stamp, relative to each scene's first ego pose
    assert set(by_topic[topics.ODOM_TOPIC]) == stamps == set(by_topic[topics.TF_TOPIC])
    ego = {p['timestamp'] * 1000: nuscenes_transform(p) for p in nusc.ego_pose}
    for scene in nusc.scene:
        sd_stamps = sorted(sd['timestamp'] * 1000 for sd in nusc.sample_data
                           if nusc.get('sample', sd['sample_token'])['scene_token'] == scene['token'])
        origin = invert_transform(ego[sd_stamps[0]])
        for ns in sd_stamps:
            odom, _ = by_topic[topics.ODOM_TOPIC][ns]
            p, q = odom.pose.pose.position, odom.pose.pose.orientation
            T = origin @ ego[ns]
            assert np.allclose([p.x, p.y, p.z], T[:3, 3], atol=1e-6)
            assert np.allclose(quat_to_matrix([q.x, q.y, q.z, q.w]), T[:3, :3], atol=1e-6)
            assert odom.header.frame_id == 'odom' and odom.child_frame_id == 'base_link'
            if ns != sd_stamps[0]:  # the fixture's ego drives at 8 m/s, turning at 0.2 rad/s
                v, w = odom.twist.twist.linear, odom.twist.twist.angular
                assert abs(np.hypot(v.x, v.y) - 8.0) < 0.05 and abs(w.z - 0.2) < 0.01
    # /tf_static: base_link -> every sensor frame, from calibrated_sensor
    static = bag[topics.TF_STATIC_TOPIC][0][1].transforms
    frames = {t.child_frame_id: t for t in static}
    assert set(frames) == {f'{c}_optical_frame' for c in NUSCENES_CAMERAS} | {'lidar'}
    cs_front = next(c for c in nusc.calibrated_sensor if nusc.get('sensor', c['sensor_token'])['channel'] ==
                    'CAM_FRONT')
    t = frames['CAM_FRONT_optical_frame'].transform
    assert np.allclose([t.translation.x, t.translation.y, t.translation.z], cs_front['translation'])
    rig = CameraRig.from_yaml(out / 'rig.yaml')
    assert rig.names == list(NUSCENES_CAMERAS) and rig.lidar is not None and rig.lidar.frame_id == 'lidar'


def test_surroundsim_bag_reads_back_every_topic_count_frame_and_stamp(tmp_path):
    out = tmp_path / 'sim'
    assert main(['surroundsim', '--frames', '2', '--size', '96x64', '--out', str(out), '--depth']) == 0
    bag = read_bag(out)
    names = RIG_PRESETS['surroundsim']
    assert set(bag['_connections']) == camera_topics(names, topics.image_topic) | {
        topics.gt_depth_topic(n) for n in names} | {topics.LIDAR_TOPIC, topics.TF_TOPIC, topics.TF_STATIC_TOPIC,
                                                   topics.ODOM_TOPIC}
    for i, name in enumerate(names):
        entries = bag[topics.image_topic(name)]
        assert [ns for ns, _, _ in entries] == [int(round(camera_stamps(f)[i] * 1e6)) * 1000 for f in range(2)]
        assert all(m.encoding == 'rgb8' and (m.width, m.height) == (96, 64) and
                   m.header.frame_id == f'{name}_optical_frame' for _, m, _ in entries)
        assert len(bag[topics.camera_info_topic(name)]) == 2
    assert [ns for ns, _, _ in bag[topics.LIDAR_TOPIC]] == [int(round(lidar_stamp(f) * 1e6)) * 1000 for f in range(2)]
    assert len(bag[topics.ODOM_TOPIC]) == len(bag[topics.TF_TOPIC]) == 14  # 2 x (LiDAR + 6 cameras)
    assert len(bag[topics.TF_STATIC_TOPIC]) == 1


def test_a_surroundsim_bag_of_another_split_and_world_holds_that_split_s_streets(tmp_path):
    from surround_depth_train.data.surroundsim import SurroundSimDataset

    world = str(Path(__file__).resolve().parents[3] / 'config' / 'surroundsim' / 'suburb.yaml')
    images = {}
    for split in ('val', 'test'):
        out = tmp_path / split
        assert main(['surroundsim', '--frames', '1', '--size', '64x32', '--world', world, '--split', split,
                     '--out', str(out)]) == 0
        msg = read_bag(out)[topics.image_topic(RIG_PRESETS['surroundsim'][0])][0][1]
        images[split] = np.asarray(msg.data).reshape(32, 64, 3)
    expected = SurroundSimDataset(split='test', num_samples=1, image_size=(64, 32), world=world,
                                  frames_per_scene=1)[0]['image'][0].permute(1, 2, 0).numpy()
    assert np.abs(images['test'].astype(float) / 255 - expected).max() < 1 / 255 + 1e-6
    assert not np.array_equal(images['test'], images['val'])


def test_ddad_bag_carries_the_calibrated_distortion_and_the_images_as_recorded(tmp_path, dataset_fixtures):
    import cv2

    root = dataset_fixtures.write_ddad(tmp_path / 'ddad', distortion=True, masks=False, points=500)
    out = tmp_path / 'ddad.bag'
    assert main(['ddad', '--root', str(root), '--split', 'train', '--out', str(out), '--depth',
                 '--depth-root', str(root / 'depth')]) == 0
    bag = read_bag(out)
    names = RIG_PRESETS['ddad']
    assert camera_topics(names, topics.image_topic) <= set(bag['_connections'])
    scene = json.loads(next((root / '000150').glob('scene_*.json')).read_text())
    images = {(d['id']['name'], int(Path(d['datum']['image']['filename']).stem) * 100): d['datum']['image']
              for d in scene['data'] if 'image' in d['datum']}
    for name in names:
        entries = bag[topics.image_topic(name)]
        assert len(entries) == 3
        for ns, msg, _ in entries:
            png = cv2.imread(str(root / '000150' / images[(name, ns)]['filename']))[..., ::-1]
            assert np.array_equal(np.frombuffer(msg.data.tobytes(), np.uint8).reshape(png.shape), png)
        info = bag[topics.camera_info_topic(name)][0][1]
        assert info.distortion_model == 'plumb_bob' and np.allclose(info.d, [-0.05, 0.01, 0, 0, 0])
    lidar = bag[topics.LIDAR_TOPIC]
    assert len(lidar) == 3 and lidar[0][1].width == 500
    # DDAD's sensors share one stamp per sample: one odometry per sample
    assert len(bag[topics.ODOM_TOPIC]) == 3


def test_a_missing_image_mid_scene_is_skipped_and_counted(tmp_path, dataset_fixtures, capsys):
    root = dataset_fixtures.write_nuscenes(tmp_path / 'nusc', width=160, height=90, points=100, sweeps=False)
    nusc = open_nuscenes(root, 'v1.0-mini')
    victim = next(sd for sd in nusc.sample_data if sd['channel'] == 'CAM_BACK' and sd['is_key_frame'])
    (root / victim['filename']).unlink()
    out = tmp_path / 'bag'
    assert main(['nuscenes', '--root', str(root), '--version', 'v1.0-mini', '--scenes', 'scene-0061',
                 '--out', str(out)]) == 0
    err = capsys.readouterr().err
    assert 'skipped 1 broken message' in err and Path(victim['filename']).name in err
    bag = read_bag(out)
    assert len(bag[topics.compressed_topic('CAM_BACK')]) == 2 and len(bag[topics.compressed_topic('CAM_FRONT')]) == 3


@pytest.mark.parametrize('args, fragment', [
    (['nuscenes', '--root', '{tmp}/nowhere'], 'does not exist'),
    (['nuscenes', '--root', '{nuscenes}', '--version', 'v1.0-trainval'], 'no v1.0-trainval/ table folder'),
    (['nuscenes', '--root', '{nuscenes}', '--scenes', 'scene-9999'], 'scene-9999'),
    (['surroundsim', '--frames', '1', '--size', '64x32', '--out', '{tmp}/taken'], '--out {tmp}/taken already exists'),
    (['surroundsim', '--frames', '1', '--out', '{tmp}/notes.txt/bag'], '--out: {tmp}/notes.txt/bag cannot be created'),
    (['surroundsim', '--frames', '1', '--out', '/proc/surround_depth_bag'], '--out: cannot write'),
    (['surroundsim', '--frames', '0'], '--frames 0: write at least one frame'),
    (['surroundsim', '--size', '64'], "--size '64': expected WIDTHxHEIGHT"),
])
def test_bad_inputs_exit_2_with_one_line_naming_the_fix_and_write_nothing(tmp_path, nuscenes_root, capsys, args,
                                                                          fragment):
    (tmp_path / 'taken').mkdir()
    (tmp_path / 'notes.txt').write_text('not a folder')
    before = sorted(tmp_path.rglob('*'))
    args = [a.format(tmp=tmp_path, nuscenes=nuscenes_root) for a in args]
    args += [] if '--out' in args else ['--out', str(tmp_path / 'out' / 'bag')]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith('error: ') and len(err.strip().splitlines()) == 1 and fragment.format(tmp=tmp_path) in err
    assert sorted(tmp_path.rglob('*')) == before


def test_surroundsim_offers_no_compressed_images_and_out_gets_its_missing_parents(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(['surroundsim', '--images', 'compressed', '--out', str(tmp_path / 'bag')])
    assert exit_.value.code == 2 and '--images' in capsys.readouterr().err
    out = tmp_path / 'bags' / 'sim'
    assert main(['surroundsim', '--frames', '1', '--size', '64x32', '--out', str(out)]) == 0
    assert (out / 'metadata.yaml').is_file() and (out / 'rig.yaml').is_file()


def test_a_failure_mid_scene_leaves_a_bag_that_opens_with_every_message_before_it(tmp_path):
    from surround_depth_train.geometry.rig import LidarMount, synthetic_surround_rig

    rig = synthetic_surround_rig(32, 16)
    rig.lidar = LidarMount('lidar', np.eye(4))

    def boom():
        raise RuntimeError('disk on fire')

    events = [LidarEvent(stamp=1.0, T_world_base=np.eye(4), load=lambda: np.ones((4, 5))),
              CameraEvent(camera=rig.names[0], stamp=1.01, T_world_base=np.eye(4),
                          load=lambda: np.zeros((16, 32, 3), np.uint8)),
              CameraEvent(camera=rig.names[1], stamp=1.02, T_world_base=np.eye(4), load=boom)]
    with pytest.raises(RuntimeError, match='disk on fire'):
        with BagWriter(tmp_path / 'bag') as writer:
            write_scene(writer, rig, events)
    bag = read_bag(tmp_path / 'bag')
    assert len(bag[topics.LIDAR_TOPIC]) == 1 and len(bag[topics.image_topic(rig.names[0])]) == 1
    assert topics.image_topic(rig.names[1]) not in bag


def test_keyframes_only_with_raw_images_decodes_each_jpeg(tmp_path, nuscenes_root):
    import cv2

    out = tmp_path / 'bag'
    assert main(['nuscenes', '--root', str(nuscenes_root), '--scenes', 'scene-0103', '--keyframes-only',
                 '--images', 'raw', '--out', str(out)]) == 0
    bag = read_bag(out)
    nusc = open_nuscenes(nuscenes_root, 'v1.0-mini')
    keys = {sd['timestamp'] * 1000: sd for sd in nusc.sample_data if sd['is_key_frame'] and
            nusc.get('sample', sd['sample_token'])['scene_token'] == nusc.scene[1]['token']}
    assert len(bag[topics.LIDAR_TOPIC]) == 2 and len(bag[topics.image_topic('CAM_FRONT')]) == 2
    assert topics.compressed_topic('CAM_FRONT') not in bag['_connections']
    for ns, msg, _ in bag[topics.image_topic('CAM_BACK')]:
        rgb = cv2.imread(str(nuscenes_root / keys[ns]['filename']))[..., ::-1]
        assert msg.encoding == 'rgb8' and msg.step == 3 * msg.width
        assert np.array_equal(np.frombuffer(msg.data.tobytes(), np.uint8).reshape(rgb.shape), rgb)
