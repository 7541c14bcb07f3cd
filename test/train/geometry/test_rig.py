import numpy as np
import pytest
import yaml

from surround_depth_train.geometry.rig import (RIG_PRESETS, CameraRig, RigError, optical_rotation,
                                               synthetic_surround_rig)
from surround_depth_train.geometry.camera import project
from surround_depth_train.geometry.transforms import invert_transform, transform_points


def test_six_camera_rig_pairs_each_camera_with_the_next_cyclically():
    rig = synthetic_surround_rig()
    assert rig.adjacent_pairs() == [(0, 1), (1, 2), (2, 3), (3, 4), (4, 5), (5, 0)]


def test_presets_name_the_cyclic_order_of_each_dataset():
    assert RIG_PRESETS['nuscenes'][:3] == ('CAM_FRONT', 'CAM_FRONT_LEFT', 'CAM_BACK_LEFT')
    assert RIG_PRESETS['ddad'] == ('CAMERA_01', 'CAMERA_05', 'CAMERA_07', 'CAMERA_09', 'CAMERA_08', 'CAMERA_06')


def test_optical_frame_follows_rep103():
    R = optical_rotation(0.0)
    # optical z (forward) = base x, optical x (right) = base -y, optical y (down) = base -z
    np.testing.assert_allclose(R @ [0, 0, 1], [1, 0, 0], atol=1e-12)
    np.testing.assert_allclose(R @ [1, 0, 0], [0, -1, 0], atol=1e-12)
    np.testing.assert_allclose(R @ [0, 1, 0], [0, 0, -1], atol=1e-12)


def test_left_camera_sees_a_point_on_the_left():
    rig = synthetic_surround_rig()
    cam = rig['front_left']
    p_cam = transform_points(invert_transform(cam.T_base_cam), np.array([[5.0, 8.0, 1.5]]))
    uv, z = project(p_cam, cam.K)
    assert z[0] > 0 and 0 <= uv[0, 0] < cam.width


def test_rig_yaml_round_trip_keeps_every_field(tmp_path):
    rig = synthetic_surround_rig(320, 192)
    rig.cameras[2].distortion = np.array([0.1, -0.01, 0.0, 0.0, 0.001])
    rig.to_yaml(tmp_path / 'rig.yaml')
    back = CameraRig.from_yaml(tmp_path / 'rig.yaml')
    assert back.names == rig.names and back.base_frame == rig.base_frame
    for a, b in zip(rig, back):
        np.testing.assert_allclose(b.K, a.K)
        np.testing.assert_allclose(b.T_base_cam, a.T_base_cam, atol=1e-12)
        np.testing.assert_allclose(b.distortion, a.distortion)
        assert (b.width, b.height, b.frame_id) == (a.width, a.height, a.frame_id)


def test_resized_rig_scales_intrinsics_per_axis():
    rig = synthetic_surround_rig(640, 384)
    small = rig.resized(320, 96)
    assert small[0].K[0, 0] == pytest.approx(rig[0].K[0, 0] / 2)
    assert small[0].K[1, 1] == pytest.approx(rig[0].K[1, 1] / 4)
    assert (small[0].width, small[0].height) == (320, 96)


def _rig_dict(tmp_path, mutate):
    d = synthetic_surround_rig().to_dict()
    d['preset'] = 'surroundsim'
    mutate(d)
    path = tmp_path / 'rig.yaml'
    path.write_text(yaml.safe_dump(d))
    return path


def test_rig_file_missing_a_camera_is_refused_naming_it(tmp_path):
    path = _rig_dict(tmp_path, lambda d: d['cameras'].pop(3))
    with pytest.raises(RigError, match=r"missing camera\(s\) \['back'\]"):
        CameraRig.from_yaml(path)


def test_rig_file_with_non_orthonormal_rotation_is_refused_naming_the_field(tmp_path):
    def mutate(d):
        cam = d['cameras'][1]
        del cam['rotation']
        cam['rotation_matrix'] = [[1, 0, 0], [0, 2, 0], [0, 0, 1]]
    with pytest.raises(RigError, match="'front_left': field rotation_matrix is not orthonormal"):
        CameraRig.from_yaml(_rig_dict(tmp_path, mutate))


def test_rig_file_with_non_unit_quaternion_is_refused(tmp_path):
    def mutate(d):
        d['cameras'][0]['rotation'] = [0, 0, 0, 2]
    with pytest.raises(RigError, match='field rotation is not a unit quaternion'):
        CameraRig.from_yaml(_rig_dict(tmp_path, mutate))


def test_rig_file_with_wrong_shape_intrinsics_is_refused_naming_the_field(tmp_path):
    def mutate(d):
        d['cameras'][4]['K'] = [[1, 0], [0, 1]]
    with pytest.raises(RigError, match="'back_right': field K: expected a 3x3"):
        CameraRig.from_yaml(_rig_dict(tmp_path, mutate))


def test_rig_file_out_of_cyclic_order_is_refused(tmp_path):
    def mutate(d):
        d['cameras'][0], d['cameras'][1] = d['cameras'][1], d['cameras'][0]
    with pytest.raises(RigError, match='cyclic order'):
        CameraRig.from_yaml(_rig_dict(tmp_path, mutate))


def test_missing_rig_file_names_the_path(tmp_path):
    with pytest.raises(RigError, match='does not exist'):
        CameraRig.from_yaml(tmp_path / 'nope.yaml')
