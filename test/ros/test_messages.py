"""Message <-> numpy conversion (the core's reading, the node's writing), checked on real sensor_msgs classes through
rclpy's CDR serialisation (no DDS)."""
from fractions import Fraction
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from surround_depth_train.data.rosbag.messages import (FLOAT32, InputError, camera_info_to_intrinsics,
                                                       check_image_matches_info, cloud_to_xyz, compressed_to_rgb,
                                                       depth_image_to_array, image_to_array, image_to_rgb,
                                                       ns_to_stamp_fields, odometry_to_matrix, sec_to_stamp_fields,
                                                       stamp_to_ns, stamp_to_sec, unpack_cloud, unpack_rgb)
from surround_depth_ros.messages import (camera_messages, cloud_fields,
                                         colorized_image_fields, confidence_image_fields, depth_camera_info_fields,
                                         depth_image_fields, fill_message, pack_cloud)
from surround_depth_train.geometry.transforms import make_transform, quat_to_matrix
from surround_depth_train.visualize import colorize_depth

sensor_msgs = pytest.importorskip('sensor_msgs.msg')
serialization = pytest.importorskip('rclpy.serialization')


def through_cdr(msg):
    """The message as a subscriber receives it: serialised to CDR and read back into a fresh object."""
    return serialization.deserialize_message(serialization.serialize_message(msg), type(msg))


def picture(h=6, w=7, seed=0):
    return np.random.default_rng(seed).integers(0, 256, size=(h, w, 3), dtype=np.uint8)


def image_msg(pixels: np.ndarray, encoding: str, pad: int = 0, bigendian: bool = False):
    """A real sensor_msgs/Image holding ``pixels`` with ``pad`` junk bytes after every row."""
    px = np.ascontiguousarray(pixels)
    if px.dtype.itemsize > 1:
        px = px.astype(px.dtype.newbyteorder('>' if bigendian else '<'))
    h, w = px.shape[:2]
    rows = px.reshape(h, -1).view(np.uint8)
    padded = np.concatenate([rows, np.full((h, pad), 0xAB, np.uint8)], axis=1)
    msg = sensor_msgs.Image(height=h, width=w, encoding=encoding, is_bigendian=int(bigendian),
                            step=padded.shape[1])
    msg.header.frame_id = 'front_optical_frame'
    fill_message(msg, {'data': padded.tobytes()})
    return through_cdr(msg)


@pytest.mark.parametrize('pad', [0, 5])
@pytest.mark.parametrize('encoding', ['rgb8', 'bgr8', 'rgba8', 'bgra8'])
def test_colour_encodings_decode_to_the_same_rgb_with_or_without_row_padding(encoding, pad):
    rgb = picture()
    px = {'rgb8': rgb, 'bgr8': rgb[..., ::-1],
          'rgba8': np.dstack([rgb, np.full(rgb.shape[:2], 9, np.uint8)]),
          'bgra8': np.dstack([rgb[..., ::-1], np.full(rgb.shape[:2], 9, np.uint8)])}[encoding]
    out = image_to_rgb(image_msg(px, encoding, pad))
    assert out.dtype == np.uint8 and out.shape == rgb.shape
    np.testing.assert_array_equal(out, rgb)


@pytest.mark.parametrize('pad', [0, 3])
def test_mono8_becomes_three_equal_channels(pad):
    gray = picture()[..., 0]
    out = image_to_rgb(image_msg(gray, 'mono8', pad))
    np.testing.assert_array_equal(out, np.repeat(gray[..., None], 3, axis=2))


@pytest.mark.parametrize('bigendian', [False, True])
def test_mono16_keeps_its_high_byte_in_either_byte_order_with_padding(bigendian):
    values = np.random.default_rng(1).integers(0, 65536, size=(5, 4), dtype=np.uint16)
    msg = image_msg(values, 'mono16', pad=2, bigendian=bigendian)
    np.testing.assert_array_equal(image_to_array(msg), values)
    np.testing.assert_array_equal(image_to_rgb(msg)[..., 1], (values >> 8).astype(np.uint8))


def test_unsupported_encoding_is_named_with_the_supported_ones():
    msg = image_msg(picture()[..., 0], 'bayer_rggb8')
    with pytest.raises(InputError, match=r"bayer_rggb8.*rgb8, bgr8, rgba8, bgra8, mono8, mono16"):
        image_to_rgb(msg, 'CAM_FRONT')
    with pytest.raises(InputError, match='32FC1'):  # a depth image is no camera image
        image_to_rgb(image_msg(np.ones((3, 4), np.float32), '32FC1'))


def test_data_that_does_not_fill_step_times_height_is_refused():
    msg = image_msg(picture(), 'rgb8')
    msg.data = msg.data[:-1]
    with pytest.raises(InputError, match='truncated'):
        image_to_rgb(msg)
    short_step = image_msg(picture(), 'rgb8')
    short_step.step = 7 * 3 - 1
    with pytest.raises(InputError, match='step'):
        image_to_rgb(short_step)
    empty = image_msg(picture(), 'rgb8')
    empty.width = 0
    with pytest.raises(InputError, match='empty'):
        image_to_rgb(empty)


def test_float_image_with_nan_or_inf_is_refused_unless_it_is_rep118_depth():
    depth = np.full((3, 4), 5.0, np.float32)
    depth[1, 2] = np.nan
    depth[0, 0] = np.inf
    msg = image_msg(depth, '32FC1')
    with pytest.raises(InputError, match='2 of 12 values are NaN or Inf'):
        image_to_array(msg)
    as_depth = depth_image_to_array(msg)
    assert np.isnan(as_depth[1, 2]) and np.isnan(as_depth[0, 0]) and as_depth[2, 3] == 5.0


def test_millimetre_depth_reads_as_metres_with_zero_invalid():
    mm = np.array([[0, 1500], [20000, 7]], np.uint16)
    out = depth_image_to_array(image_msg(mm, '16UC1', bigendian=True))
    np.testing.assert_allclose(out, [[np.nan, 1.5], [20.0, 0.007]], rtol=1e-6)


def test_compressed_png_decodes_exactly_and_jpeg_closely():
    rgb = np.kron(picture(4, 5), np.ones((8, 8, 1), np.uint8))  # blocks survive JPEG
    for fmt, tol in (('png', 0), ('jpeg', 20)):
        ok, enc = cv2.imencode(f'.{fmt}', cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95])
        msg = sensor_msgs.CompressedImage(format=f'rgb8; {fmt} compressed bgr8')
        fill_message(msg, {'data': enc.tobytes()})
        out = compressed_to_rgb(through_cdr(msg))
        assert out.shape == rgb.shape
        assert np.abs(out.astype(int) - rgb).mean() <= tol


def test_corrupt_or_empty_compressed_image_is_refused():
    ok, enc = cv2.imencode('.jpg', picture(16, 16))
    msg = sensor_msgs.CompressedImage(format='jpeg')
    fill_message(msg, {'data': b'\x00garbage' + enc.tobytes()[:30]})
    with pytest.raises(InputError, match='could not be decoded'):
        compressed_to_rgb(msg, 'CAM_BACK')
    msg.data = []
    with pytest.raises(InputError, match='no data'):
        compressed_to_rgb(msg, 'CAM_BACK')


def camera_info(K=((100.0, 0, 31.5), (0, 100.0, 23.5), (0, 0, 1)), D=(0.0,) * 5, model='plumb_bob', w=64, h=48):
    msg = sensor_msgs.CameraInfo(width=w, height=h, distortion_model=model)
    msg.k = np.asarray(K, dtype=np.float64).reshape(-1).tolist()
    msg.d = [float(x) for x in D]
    return msg


def test_camera_info_gives_k_d_and_the_model():
    intr = camera_info_to_intrinsics(through_cdr(camera_info(D=(-0.1, 0.01, 0, 0, 0))))
    assert intr.K[0, 0] == 100.0 and intr.K[1, 2] == 23.5 and intr.size == (64, 48)
    assert intr.model == 'plumb_bob' and intr.has_distortion and intr.P is None
    np.testing.assert_array_equal(intr.R, np.eye(3))


def test_empty_distortion_model_with_zero_d_means_no_distortion():
    for D in ((), (0.0,) * 5):
        intr = camera_info_to_intrinsics(camera_info(D=D, model=''))
        assert intr.model == 'plumb_bob' and not intr.has_distortion
    with pytest.raises(InputError, match='distortion_model is empty'):
        camera_info_to_intrinsics(camera_info(D=(0.1, 0, 0, 0, 0), model=''))


@pytest.mark.parametrize('change, problem', [
    (dict(K=np.zeros((3, 3))), 'K is all zero'),
    (dict(K=((np.nan, 0, 1), (0, 1, 1), (0, 0, 1))), 'NaN or Inf'),
    (dict(D=(0.1, np.inf, 0, 0, 0)), r'D: contains NaN or Inf'),
    (dict(K=((-100.0, 0, 31.5), (0, 100.0, 23.5), (0, 0, 1))), 'must be positive'),
    (dict(w=0), 'image size 0 x 48'),
])
def test_bad_camera_info_is_refused_naming_the_problem(change, problem):
    with pytest.raises(InputError, match=problem) as err:
        camera_info_to_intrinsics(camera_info(**change), 'CAM_FRONT')
    assert 'CAM_FRONT' in str(err.value)


def test_image_of_another_size_than_its_camera_info_is_refused():
    intr = camera_info_to_intrinsics(camera_info())
    check_image_matches_info(np.zeros((48, 64, 3), np.uint8), intr, 'CAM_FRONT')
    with pytest.raises(InputError, match=r'CAM_FRONT is 32 x 48 but its CameraInfo describes 64 x 48'):
        check_image_matches_info(np.zeros((48, 32, 3), np.uint8), intr, 'CAM_FRONT')


def test_stamps_convert_exactly_in_integer_nanoseconds():
    stamp = SimpleNamespace(sec=1_700_000_000, nanosec=123_456_789)
    assert stamp_to_ns(stamp) == 1_700_000_000_123_456_789
    assert ns_to_stamp_fields(stamp_to_ns(stamp)) == (1_700_000_000, 123_456_789)
    assert stamp_to_sec(stamp) == pytest.approx(1_700_000_000.123456789, abs=1e-6)
    t = 1_700_000_000.123456789
    assert sec_to_stamp_fields(t) == ns_to_stamp_fields(round(Fraction(t) * 10 ** 9))  # the float's nearest ns
    assert sec_to_stamp_fields(-0.5) == (-1, 500_000_000)
    assert sec_to_stamp_fields(2.9999999999999) == (3, 0)
    assert ns_to_stamp_fields(-1) == (-1, 999_999_999)


def test_depth_output_round_trips_as_32fc1_metres_with_nan_invalid():
    depth = np.random.default_rng(2).uniform(0.5, 90, size=(6, 9)).astype(np.float32)
    depth[0, 0], depth[1, 1], depth[2, 2] = np.nan, -1.0, 0.0
    fields = depth_image_fields(depth, max_depth=80.0)
    assert fields['encoding'] == '32FC1' and fields['step'] == 9 * 4 and fields['is_bigendian'] == 0
    back = depth_image_to_array(through_cdr(fill_message(sensor_msgs.Image(), fields)))
    expected = np.where((depth > 0) & (depth <= 80.0), depth, np.nan)
    np.testing.assert_array_equal(back, expected)  # NaN in the same places, values bit-exact


def test_confidence_and_colorized_outputs_round_trip():
    conf = np.linspace(-0.5, 1.5, 12, dtype=np.float32).reshape(3, 4)
    back = image_to_array(through_cdr(fill_message(sensor_msgs.Image(), confidence_image_fields(conf))))
    np.testing.assert_array_equal(back, np.clip(conf, 0, 1))
    depth = np.linspace(1, 60, 12, dtype=np.float32).reshape(3, 4)
    msg = through_cdr(fill_message(sensor_msgs.Image(), colorized_image_fields(depth, 0.5, 80.0)))
    assert msg.encoding == 'rgb8'
    np.testing.assert_array_equal(image_to_rgb(msg), colorize_depth(depth, 0.5, 80.0))


def test_depth_camera_info_describes_an_undistorted_pinhole_with_the_given_k():
    K = np.array([[120.0, 0, 40.5], [0, 118.0, 30.25], [0, 0, 1]])
    msg = through_cdr(fill_message(sensor_msgs.CameraInfo(), depth_camera_info_fields(K, 80, 60)))
    intr = camera_info_to_intrinsics(msg)
    np.testing.assert_array_equal(intr.K, K)
    assert not intr.has_distortion and intr.model == 'plumb_bob' and intr.size == (80, 60)
    np.testing.assert_array_equal(intr.P, np.hstack([K, np.zeros((3, 1))]))


def test_camera_messages_are_a_driver_s_image_and_camera_info_with_one_stamp_and_frame():
    K = np.array([[120.0, 0, 40.5], [0, 118.0, 30.25], [0, 0, 1]])
    pixels = picture(60, 80)
    image, info = (through_cdr(m) for m in camera_messages(pixels, K, 1_700_000_000_123_456_789, 'front_optical_frame'))
    np.testing.assert_array_equal(image_to_rgb(image), pixels)
    assert stamp_to_ns(image.header.stamp) == stamp_to_ns(info.header.stamp) == 1_700_000_000_123_456_789
    assert image.header.frame_id == info.header.frame_id == 'front_optical_frame'
    intrinsics = camera_info_to_intrinsics(info)
    check_image_matches_info(image_to_rgb(image), intrinsics)
    np.testing.assert_array_equal(intrinsics.K, K)


def cloud_input(n=50, seed=3):
    rng = np.random.default_rng(seed)
    pts = rng.uniform(-20, 20, size=(n, 3)).astype(np.float32)
    return pts, rng.integers(0, 6, n), rng.integers(0, 256, (n, 3)).astype(np.uint8), rng.random(n).astype(
        np.float32)


@pytest.mark.parametrize('with_rgb', [False, True])
@pytest.mark.parametrize('with_conf', [False, True])
def test_cloud_packs_and_unpacks_with_and_without_rgb_and_confidence(with_rgb, with_conf):
    pts, cam, rgb, conf = cloud_input()
    fields, step, data = pack_cloud(pts, cam, rgb if with_rgb else None, conf if with_conf else None)
    names = ['x', 'y', 'z', 'camera'] + ['rgb'] * with_rgb + ['confidence'] * with_conf
    assert fields == [(name, 4 * i, FLOAT32, 1) for i, name in enumerate(names)]
    assert step == 4 * len(names) and len(data) == step * len(pts)
    arr = unpack_cloud(fields, step, data)
    np.testing.assert_array_equal(np.stack([arr['x'], arr['y'], arr['z']], 1), pts)
    np.testing.assert_array_equal(arr['camera'], cam.astype(np.float32))
    if with_rgb:
        np.testing.assert_array_equal(unpack_rgb(arr['rgb']), rgb)
    if with_conf:
        np.testing.assert_array_equal(arr['confidence'], conf)


def test_cloud_fits_a_real_pointcloud2_in_rviz_layout_and_drops_nan_points():
    pts, cam, rgb, conf = cloud_input()
    pts[3] = np.nan
    conf[7] = np.nan
    fields = cloud_fields(pts, cam, rgb, conf)
    msg = fill_message(sensor_msgs.PointCloud2(), fields)
    msg.header.frame_id = 'base_link'
    msg = through_cdr(msg)
    assert msg.height == 1 and msg.width == 48 and msg.is_dense and not msg.is_bigendian
    # RViz's RGB8 transformer looks for a field named rgb; x, y, z FLOAT32 at 0, 4, 8 as sensor_msgs_py writes
    assert [(f.name, f.offset, f.datatype, f.count) for f in msg.fields] == [
        ('x', 0, 7, 1), ('y', 4, 7, 1), ('z', 8, 7, 1), ('camera', 12, 7, 1), ('rgb', 16, 7, 1),
        ('confidence', 20, 7, 1)]
    assert msg.row_step == 48 * 24
    keep = np.ones(50, bool)
    keep[[3, 7]] = False
    np.testing.assert_array_equal(cloud_to_xyz(msg), pts[keep])
    arr = unpack_cloud(msg.fields, msg.point_step, msg.data)
    np.testing.assert_array_equal(unpack_rgb(arr['rgb']), rgb[keep])


def test_rgb_is_packed_as_0x00rrggbb_bits():
    fields, step, data = pack_cloud(np.zeros((1, 3), np.float32), [0], np.array([[0x12, 0x34, 0x56]], np.uint8))
    assert np.frombuffer(data, '<u4')[4] == 0x00123456


def test_lidar_cloud_with_extra_fields_and_truncated_data():
    arr = np.zeros(4, dtype=[('x', '<f4'), ('y', '<f4'), ('z', '<f4'), ('intensity', '<f4'), ('ring', '<u2'),
                             ('pad', 'u1', 2)])
    arr['x'] = [1, 2, np.nan, 4]
    msg = sensor_msgs.PointCloud2(height=1, width=4, point_step=20, row_step=80, is_dense=False)
    fill_message(msg, {'fields': [('x', 0, 7, 1), ('y', 4, 7, 1), ('z', 8, 7, 1), ('intensity', 12, 7, 1),
                                  ('ring', 16, 4, 1)], 'data': arr.tobytes()})
    msg = through_cdr(msg)
    np.testing.assert_array_equal(cloud_to_xyz(msg)[:, 0], [1, 2, 4])
    assert unpack_cloud(msg.fields, msg.point_step, msg.data)['ring'].dtype == np.dtype('<u2')
    msg.data = msg.data[:-3]
    with pytest.raises(InputError, match='not a multiple of point_step'):
        cloud_to_xyz(msg)


def test_odometry_pose_becomes_a_4x4_transform():
    q = np.array([0.0, 0.0, np.sin(0.3), np.cos(0.3)])
    pose = SimpleNamespace(position=SimpleNamespace(x=1.0, y=2.0, z=0.5),
                           orientation=SimpleNamespace(x=q[0], y=q[1], z=q[2], w=q[3]))
    msg = SimpleNamespace(header=SimpleNamespace(stamp=SimpleNamespace(sec=3, nanosec=5)),
                          pose=SimpleNamespace(pose=pose))
    ns, T = odometry_to_matrix(msg)
    assert ns == 3_000_000_005
    np.testing.assert_allclose(T, make_transform(quat_to_matrix(q), [1.0, 2.0, 0.5]))
    pose.orientation.w = float('nan')
    with pytest.raises(InputError, match='not finite'):
        odometry_to_matrix(msg)
