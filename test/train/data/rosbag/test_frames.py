"""Frame decoding as the node, the bag evaluators and training on bags share it: rosbags' own message classes (what
a bag decodes to, no rclpy) in, undistorted RGB with its K out; ego-body mask images."""
import cv2
import numpy as np
import pytest
from rosbags.typesys import Stores, get_typestore

from surround_depth_train.data.rosbag.frames import FrameDecoder, load_mask
from surround_depth_train.data.rosbag.messages import InputError

W, H = 40, 24
K = np.array([[50.0, 0.0, 19.5], [0.0, 50.0, 11.5], [0.0, 0.0, 1.0]])
STORE = get_typestore(Stores.ROS2_HUMBLE)


def _header(stamp_ns: int, frame: str):
    Time, Header = STORE.types['builtin_interfaces/msg/Time'], STORE.types['std_msgs/msg/Header']
    return Header(stamp=Time(sec=stamp_ns // 10**9, nanosec=stamp_ns % 10**9), frame_id=frame)


def _messages(rgb: np.ndarray, stamp_ns: int, D=(0.0,) * 5):
    t = STORE.types
    header = _header(stamp_ns, 'front_optical_frame')
    image = t['sensor_msgs/msg/Image'](header=header, height=H, width=W, encoding='bgr8', is_bigendian=0, step=W * 3,
                                        data=np.ascontiguousarray(rgb[..., ::-1]).reshape(-1))
    roi = t['sensor_msgs/msg/RegionOfInterest'](x_offset=0, y_offset=0, height=0, width=0, do_rectify=False)
    info = t['sensor_msgs/msg/CameraInfo'](header=header, height=H, width=W, distortion_model='plumb_bob',
                                            d=np.array(D, float), k=K.reshape(-1), r=np.zeros(9), p=np.zeros(12),
                                            binning_x=0, binning_y=0, roi=roi)
    return image, info


def test_a_bag_s_image_and_camera_info_decode_to_rgb_with_its_k_and_stamp():
    rgb = np.random.default_rng(0).integers(0, 256, (H, W, 3), dtype=np.uint8)
    image, info = _messages(rgb, 1_700_000_000_123_456_789)
    cam = FrameDecoder().decode('front', image, info)
    np.testing.assert_array_equal(cam.rgb, rgb)  # bgr8 read as RGB, no distortion: untouched
    np.testing.assert_array_equal(cam.K, K)
    assert cam.stamp == pytest.approx(1_700_000_000.123456789) and cam.frame_id == 'front_optical_frame'
    assert cam.valid is None or cam.valid.all()


def test_a_distorted_camera_is_undistorted_and_marks_the_pixels_its_image_covers():
    rgb = np.full((H, W, 3), 200, np.uint8)
    cam = FrameDecoder().decode('front', *_messages(rgb, 0, D=(1.0, 0.0, 0.0, 0.0, 0.0)))
    assert cam.rgb.shape == (H, W, 3) and cam.valid is not None and not cam.valid.all()
    assert cam.valid[H // 2, W // 2] and not cam.valid[0, 0] and (cam.rgb[H // 2, W // 2] == 200).all()


def test_an_image_without_its_camera_info_is_refused_naming_the_camera():
    image, _ = _messages(np.zeros((H, W, 3), np.uint8), 0)
    with pytest.raises(InputError, match='front: no CameraInfo'):
        FrameDecoder().decode('front', image, None)


def test_mask_image_reads_white_as_keep_and_is_resized_to_the_camera(tmp_path):
    img = np.full((48, 80), 255, np.uint8)
    img[36:] = 0
    path = tmp_path / 'front_mask.png'
    cv2.imwrite(str(path), img)
    mask = load_mask(path, W, H)
    assert mask.shape == (H, W) and mask[:18].all() and not mask[18:].any()
    with pytest.raises(InputError, match='cannot be read'):
        load_mask(tmp_path / 'missing.png')
