"""Undistortion of one camera's images with maps computed once and recomputed only when its CameraInfo changes.

Models (``sensor_msgs/distortion_models``): ``plumb_bob`` (k1 k2 p1 p2 k3) and ``rational_polynomial``
(k1 k2 p1 p2 k3 k4 k5 k6) through ``cv2.initUndistortRectifyMap``; ``equidistant`` (k1 k2 k3 k4, the fisheye
model) through ``cv2.fisheye.initUndistortRectifyMap``. The rectified image keeps the camera matrix ``K`` by
default (new camera matrix = ``K``, no rotation), so the published depth describes a pinhole camera with that
``K``, ``D = 0``, in the camera's own optical frame: the rig's extrinsics stay valid. The ``R`` of a CameraInfo
(stereo rectification) is not applied, for the same reason. A camera whose ``D`` is all zero passes through.
"""
from __future__ import annotations

import numpy as np

from surround_depth_train.data.rosbag.messages import (CameraIntrinsics, DISTORTION_MODELS, InputError,
                                                       check_image_matches_info)

__all__ = ['Undistorter']

#: Number of coefficients each model accepts (OpenCV reads 4 or 5 for plumb_bob, 8/12/14 for the rational one).
_COEFFS = {'plumb_bob': (4, 5), 'rational_polynomial': (8, 12, 14), 'equidistant': (4,)}


class Undistorter:
    """Undistortion maps of one camera.

    Args:
        name: the camera's name, for error messages.
        new_K: the camera matrix of the rectified image; None keeps each CameraInfo's ``K``.

    Attributes:
        computations: how many times maps were computed (stays put while the CameraInfo does not change).
    """

    def __init__(self, name: str = 'camera', new_K: np.ndarray | None = None):
        self.name = name
        self.new_K = None if new_K is None else np.asarray(new_K, dtype=np.float64).reshape(3, 3)
        self.computations = 0
        self._key: tuple | None = None
        self._intrinsics: CameraIntrinsics | None = None
        self._maps: tuple[np.ndarray, np.ndarray] | None = None
        self._valid: np.ndarray | None = None
        self._K_out: np.ndarray | None = None

    @property
    def K(self) -> np.ndarray:
        """Camera matrix of the undistorted image (what the published depth's CameraInfo carries)."""
        if self._K_out is None:
            raise RuntimeError(f'{self.name}: no CameraInfo yet; call set_intrinsics() first')
        return self._K_out

    @property
    def intrinsics(self) -> CameraIntrinsics | None:
        return self._intrinsics

    @property
    def passthrough(self) -> bool:
        """True when the current CameraInfo has no distortion and keeps ``K``: images pass unchanged."""
        return self._maps is None

    @property
    def valid_mask(self) -> np.ndarray | None:
        """``[H, W]`` bool: rectified pixels that have a source pixel inside the raw image (None = all of them)."""
        return self._valid

    def set_intrinsics(self, intrinsics: CameraIntrinsics) -> bool:
        """Adopt a CameraInfo; returns True when the maps were (re)computed, False when nothing changed."""
        key = intrinsics.key() + (None if self.new_K is None else self.new_K.tobytes(),)
        if key == self._key:
            return False
        K_out = intrinsics.K.copy() if self.new_K is None else self.new_K.copy()
        if not intrinsics.has_distortion and np.array_equal(K_out, intrinsics.K):
            maps, valid = None, None
        else:
            maps, valid = self._compute_maps(intrinsics, K_out)
            self.computations += 1
        self._key, self._intrinsics, self._maps, self._valid, self._K_out = key, intrinsics, maps, valid, K_out
        return maps is not None

    def _compute_maps(self, intr: CameraIntrinsics, K_out: np.ndarray) -> tuple[tuple[np.ndarray, np.ndarray],
                                                                                 np.ndarray]:
        import cv2

        model = intr.model
        if model not in _COEFFS:
            raise InputError(f'CameraInfo of {self.name}: unsupported distortion_model {model!r}; supported: '
                             f'{", ".join(DISTORTION_MODELS)} (or D all zero for a rectified image)')
        if intr.D.size not in _COEFFS[model]:
            raise InputError(f'CameraInfo of {self.name}: distortion_model {model} takes '
                             f'{" or ".join(map(str, _COEFFS[model]))} coefficients, D has {intr.D.size}; fix D')
        size = (intr.width, intr.height)
        if model == 'equidistant':
            m1, m2 = cv2.fisheye.initUndistortRectifyMap(intr.K, intr.D.reshape(4, 1), np.eye(3), K_out, size,
                                                         cv2.CV_16SC2)
        else:
            m1, m2 = cv2.initUndistortRectifyMap(intr.K, intr.D, None, K_out, size, cv2.CV_16SC2)
        # fixed-point maps (1/32 px) remap several times faster than float maps, far below a pixel of error
        ones = np.full((intr.height, intr.width), 255, np.uint8)
        valid = cv2.remap(ones, m1, m2, cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT, borderValue=0) > 0
        return (m1, m2), valid

    def undistort(self, image: np.ndarray, intrinsics: CameraIntrinsics | None = None) -> np.ndarray:
        """The undistorted image (the input itself on passthrough); ``intrinsics`` updates the maps first."""
        import cv2

        if intrinsics is not None:
            self.set_intrinsics(intrinsics)
        if self._intrinsics is None:
            raise RuntimeError(f'{self.name}: no CameraInfo yet; call set_intrinsics() first')
        check_image_matches_info(image, self._intrinsics, self.name)
        if self._maps is None:
            return image
        return cv2.remap(np.ascontiguousarray(image), self._maps[0], self._maps[1], cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_CONSTANT, borderValue=0)
