"""Undistortion maps: geometry (points land where a pinhole with K puts them), caching and refusals."""
import cv2
import numpy as np
import pytest

from surround_depth_train.data.rosbag.messages import CameraIntrinsics, InputError
from surround_depth_train.data.rosbag.undistort import Undistorter

W, H = 160, 120
K = np.array([[110.0, 0.0, 79.5], [0.0, 110.0, 59.5], [0.0, 0.0, 1.0]])
MODELS = {
    'plumb_bob': np.array([-0.28, 0.07, 0.001, -0.0015, 0.0]),
    'rational_polynomial': np.array([-0.25, 0.05, 0.001, 0.0, 0.0, 0.02, 0.0, 0.0]),
    'equidistant': np.array([0.08, -0.02, 0.005, -0.001]),
}


def intrinsics(model='plumb_bob', D=None, K_=K):
    D = MODELS[model] if D is None else np.asarray(D, dtype=np.float64)
    return CameraIntrinsics(K=np.array(K_, dtype=np.float64), D=D, model=model, width=W, height=H)


def distorted_pixels(rect_uv: np.ndarray, model: str) -> np.ndarray:
    """Where the real (distorted) camera sees the rays that a pinhole with ``K`` puts at ``rect_uv``."""
    rays = np.c_[(rect_uv - K[:2, 2]) / [K[0, 0], K[1, 1]], np.ones(len(rect_uv))].reshape(-1, 1, 3)
    if model == 'equidistant':
        uv, _ = cv2.fisheye.projectPoints(rays, np.zeros(3), np.zeros(3), K, MODELS[model])
    else:
        uv, _ = cv2.projectPoints(rays, np.zeros(3), np.zeros(3), K, MODELS[model])
    return uv.reshape(-1, 2)


def blobs(centres: np.ndarray, sigma: float = 1.3) -> np.ndarray:
    """An RGB image with a Gaussian dot at each (sub-pixel) centre."""
    u, v = np.meshgrid(np.arange(W), np.arange(H))
    img = np.zeros((H, W))
    for cu, cv in centres:
        img += np.exp(-((u - cu) ** 2 + (v - cv) ** 2) / (2 * sigma ** 2))
    return np.repeat((np.clip(img, 0, 1) * 255).round().astype(np.uint8)[..., None], 3, axis=2)


def centroid(img: np.ndarray, u0: float, v0: float, r: int = 4) -> np.ndarray:
    vs, us = np.mgrid[int(v0) - r:int(v0) + r + 1, int(u0) - r:int(u0) + r + 1]
    w = img[vs, us, 0].astype(np.float64)
    return np.array([(w * us).sum() / w.sum(), (w * vs).sum() / w.sum()])


@pytest.mark.parametrize('model', list(MODELS))
def test_a_dot_of_the_distorted_image_lands_where_the_pinhole_model_puts_it(model):
    # dots on a grid of the rectified image, out to the corners where distortion moves them most
    rect = np.array([(u, v) for u in np.linspace(12, W - 13, 6) for v in np.linspace(12, H - 13, 5)])
    raw = distorted_pixels(rect, model)
    assert np.abs(raw - rect).max() > 4.0  # the distortion is strong enough to matter
    und = Undistorter('CAM_FRONT')
    out = und.undistort(blobs(raw), intrinsics(model))
    found = np.array([centroid(out, u, v) for u, v in rect])
    assert np.abs(found - rect).max() < 0.5
    np.testing.assert_array_equal(und.K, K)  # the rectified image keeps K


def test_maps_are_computed_once_and_again_only_when_the_camera_info_changes():
    und = Undistorter('CAM_FRONT')
    img = np.zeros((H, W, 3), np.uint8)
    for _ in range(3):
        und.undistort(img, intrinsics())  # a fresh but equal CameraInfo each frame
    assert und.computations == 1
    assert not und.set_intrinsics(intrinsics())
    und.undistort(img, intrinsics(D=MODELS['plumb_bob'] * 1.01))
    assert und.computations == 2
    und.undistort(img, intrinsics('equidistant'))
    assert und.computations == 3
    und.undistort(img)  # no CameraInfo: the current maps
    assert und.computations == 3


def test_zero_distortion_passes_the_image_through_untouched():
    und = Undistorter('CAM_FRONT')
    img = np.zeros((H, W, 3), np.uint8)
    assert und.undistort(img, intrinsics(D=np.zeros(5))) is img
    assert und.passthrough and und.valid_mask is None and und.computations == 0


def test_valid_mask_marks_the_pixels_the_raw_image_covers():
    und = Undistorter('CAM_FRONT')
    und.set_intrinsics(intrinsics('plumb_bob', D=[0.3, 0.0, 0.0, 0.0, 0.0]))  # pincushion: corners come from outside
    mask = und.valid_mask
    assert mask.shape == (H, W) and mask[H // 2, W // 2] and not mask[0, 0]


def test_unknown_model_or_wrong_coefficient_count_is_refused_naming_the_supported_ones():
    und = Undistorter('CAM_FRONT')
    with pytest.raises(InputError, match='unsupported distortion_model .*plumb_bob, rational_polynomial, equidistant'):
        und.set_intrinsics(intrinsics('kannala_brandt', D=[0.1, 0, 0, 0]))
    with pytest.raises(InputError, match='equidistant takes 4 coefficients, D has 5'):
        und.set_intrinsics(intrinsics('equidistant', D=[0.1, 0, 0, 0, 0]))


def test_image_of_another_size_than_the_camera_info_is_refused():
    und = Undistorter('CAM_FRONT')
    with pytest.raises(InputError, match='CAM_FRONT is 80 x 60 but its CameraInfo describes 160 x 120'):
        und.undistort(np.zeros((60, 80, 3), np.uint8), intrinsics())
