import numpy as np
import pytest

from surround_depth_train.geometry.transforms import (ExtrapolationError, TransformBuffer, invert_transform,
                                                      make_transform, matrix_to_quat, quat_to_matrix, slerp)


def yaw_quat(angle):
    return np.array([0.0, 0.0, np.sin(angle / 2), np.cos(angle / 2)])


def test_quaternion_round_trip_through_matrix():
    rng = np.random.default_rng(0)
    for _ in range(20):
        q = rng.normal(size=4)
        q /= np.linalg.norm(q)
        q = q if q[3] >= 0 else -q
        np.testing.assert_allclose(matrix_to_quat(quat_to_matrix(q)), q, atol=1e-12)


def test_quaternions_use_ros_order_xyzw():
    R = quat_to_matrix(yaw_quat(np.pi / 2))
    np.testing.assert_allclose(R @ [1, 0, 0], [0, 1, 0], atol=1e-12)


def test_inverse_transform_composes_to_identity():
    T = make_transform(yaw_quat(0.7), [1.0, -2.0, 3.0])
    np.testing.assert_allclose(T @ invert_transform(T), np.eye(4), atol=1e-12)


def test_slerp_halfway_between_yaws_is_the_mean_yaw():
    q = slerp(yaw_quat(0.2), yaw_quat(1.0), 0.5)
    np.testing.assert_allclose(q, yaw_quat(0.6), atol=1e-12)


def test_lookup_interpolates_analytic_constant_rate_motion():
    # ego drives a circle: yaw = w t, position on radius r
    buf = TransformBuffer()
    w, r = 0.5, 20.0
    for t in np.arange(0.0, 1.01, 0.1):
        buf.set_transform('world', 'base_link', t, make_transform(yaw_quat(w * t), [r * np.sin(w * t), 0, 0]))
    T = buf.lookup('world', 'base_link', 0.35)
    np.testing.assert_allclose(matrix_to_quat(T[:3, :3]), yaw_quat(w * 0.35), atol=1e-12)
    # translation is interpolated linearly between the stamps 0.3 and 0.4
    np.testing.assert_allclose(T[0, 3], 0.5 * (r * np.sin(w * 0.3) + r * np.sin(w * 0.4)), atol=1e-12)


def test_lookup_of_the_inverse_pair_inverts():
    buf = TransformBuffer()
    T = make_transform(yaw_quat(0.3), [1, 2, 3])
    buf.set_transform('world', 'base_link', 0.0, T)
    buf.set_transform('world', 'base_link', 1.0, T)
    np.testing.assert_allclose(buf.lookup('base_link', 'world', 0.5), invert_transform(T), atol=1e-12)


def test_extrapolation_beyond_tolerance_is_refused_with_the_range():
    buf = TransformBuffer(tolerance=0.05)
    buf.set_transform('world', 'base_link', 1.0, np.eye(4))
    buf.set_transform('world', 'base_link', 2.0, np.eye(4))
    np.testing.assert_allclose(buf.lookup('world', 'base_link', 2.04), np.eye(4))
    with pytest.raises(ExtrapolationError, match=r'outside the buffered range \[1.000000, 2.000000\]'):
        buf.lookup('world', 'base_link', 2.2)


def test_motion_compensation_moves_a_static_world_point_into_the_later_base_frame():
    buf = TransformBuffer()
    buf.set_transform('world', 'base_link', 0.0, make_transform(np.eye(3), [0, 0, 0]))
    buf.set_transform('world', 'base_link', 1.0, make_transform(np.eye(3), [10, 0, 0]))
    T = buf.motion_compensation('world', 'base_link', t_from=0.0, t_to=0.5)
    # a point 20 m ahead at t=0 is 15 m ahead after driving 5 m
    np.testing.assert_allclose((T @ [20, 0, 0, 1])[:3], [15, 0, 0], atol=1e-12)
