import numpy as np
import pytest

from surround_depth_train.geometry.camera import (check_intrinsics, crop_intrinsics, project, resize_image,
                                                  resize_intrinsics, unproject, unproject_depth)

K = np.array([[500.0, 0.0, 319.5], [0.0, 400.0, 191.5], [0.0, 0.0, 1.0]])


def test_point_on_the_optical_axis_projects_to_the_principal_point():
    uv, z = project(np.array([0.0, 0.0, 7.0]), K)
    np.testing.assert_allclose(uv, [319.5, 191.5])
    assert z == 7.0


def test_projection_matches_the_pinhole_formula():
    uv, _ = project(np.array([2.0, -1.0, 10.0]), K)
    np.testing.assert_allclose(uv, [500 * 0.2 + 319.5, 400 * -0.1 + 191.5])


def test_points_behind_the_camera_get_no_pixel():
    uv, z = project(np.array([[0.0, 0.0, -3.0]]), K)
    assert np.isnan(uv).all() and z[0] == -3.0


def test_unproject_inverts_project_for_random_points():
    rng = np.random.default_rng(0)
    pts = rng.uniform([-20, -5, 0.5], [20, 5, 80], size=(100, 3))
    uv, z = project(pts, K)
    np.testing.assert_allclose(unproject(uv, z, K), pts, rtol=1e-9, atol=1e-9)


def test_unproject_depth_numpy_and_torch_agree():
    torch = pytest.importorskip('torch')
    depth = np.random.default_rng(1).uniform(1, 50, size=(4, 6))
    ref = unproject_depth(depth, K)
    out = unproject_depth(torch.tensor(depth)[None, None], torch.tensor(K)[None, None])[0, 0].numpy()
    np.testing.assert_allclose(out, ref, rtol=1e-12)
    # pixel (u=2, v=3) lifts along its own ray
    np.testing.assert_allclose(ref[3, 2], unproject(np.array([2.0, 3.0]), depth[3, 2], K))


def test_resizing_updates_k_consistently_with_the_image():
    # A bright dot at a known 3D point: its pixel in the resized image is where the resized K projects it.
    import cv2
    img = np.zeros((384, 640), np.float32)
    point = np.array([1.3, 0.7, 10.0])
    (u, v), _ = project(point, K)
    cv2.circle(img, (int(round(u)), int(round(v))), 6, 1.0, -1)
    small, K_small = resize_image(img, K, (320, 96))
    (u2, v2), _ = project(point, K_small)
    ys, xs = np.nonzero(small > 0.01)
    w = small[ys, xs]
    centroid = np.array([np.sum(xs * w) / w.sum(), np.sum(ys * w) / w.sum()])
    np.testing.assert_allclose(centroid, [u2, v2], atol=0.35)


def test_pixel_centres_follow_the_opencv_convention():
    # Halving the resolution: old centre u=0.5 (between pixels 0 and 1) becomes new pixel centre 0.
    K2 = resize_intrinsics(K, (640, 384), (320, 192))
    assert K2[0, 0] == 250.0 and K2[1, 1] == 200.0
    assert K2[0, 2] == pytest.approx((319.5 + 0.5) / 2 - 0.5)
    (u, _), _ = project(unproject(np.array([0.5, 0.5]), 5.0, K), K2)
    assert u == pytest.approx(0.0)


def test_crop_shifts_the_principal_point():
    Kc = crop_intrinsics(K, 100, 50)
    pts = np.array([3.0, 1.0, 12.0])
    np.testing.assert_allclose(project(pts, Kc)[0], project(pts, K)[0] - [100, 50])


def test_malformed_intrinsics_are_refused_with_the_field_name():
    with pytest.raises(ValueError, match='myK: expected a 3x3'):
        check_intrinsics(np.eye(2), 'myK')
    with pytest.raises(ValueError, match='fx, fy > 0'):
        check_intrinsics(np.diag([-1.0, 1.0, 1.0]))
