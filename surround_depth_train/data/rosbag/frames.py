"""Camera frames decoded: an image (or CompressedImage) and its CameraInfo -> undistorted RGB and the ``K`` that
describes it, and the ego-body mask images. No rclpy here: the node, the bag evaluators and training on bags
(:mod:`~surround_depth_train.data.rosbag.dataset`) decode every frame with this one code.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from surround_depth_train.data.rosbag.messages import (InputError, camera_info_to_intrinsics, compressed_to_rgb,
                                                       image_to_rgb, stamp_to_sec)
from surround_depth_train.data.rosbag.undistort import Undistorter

__all__ = ['CameraInput', 'FrameDecoder', 'load_mask']


@dataclass
class CameraInput:
    """One camera of a set, decoded: RGB (already undistorted) and the ``K`` that describes it."""

    name: str
    stamp: float             # seconds, the image's header stamp
    rgb: np.ndarray          # [H, W, 3] uint8
    K: np.ndarray            # 3x3 of the (rectified) image
    frame_id: str = ''
    valid: np.ndarray | None = None  # [H, W] bool: pixels the undistortion filled (None = all)


class FrameDecoder:
    """Image (or CompressedImage) + CameraInfo messages -> :class:`CameraInput`, undistorted with maps kept per
    camera (recomputed only when that camera's CameraInfo changes). Bad messages raise
    :class:`~surround_depth_train.data.rosbag.messages.InputError`."""

    def __init__(self):
        self._undistorters: dict[str, Undistorter] = {}

    def decode(self, name: str, image_msg: Any, info_msg: Any, compressed: bool = False) -> CameraInput:
        if info_msg is None:
            raise InputError(f'{name}: no CameraInfo with the stamp of its image; publish camera_info with the '
                             f'same header stamp as each image')
        intrinsics = camera_info_to_intrinsics(info_msg, name)
        rgb = compressed_to_rgb(image_msg, name) if compressed else image_to_rgb(image_msg, name)
        undistorter = self._undistorters.setdefault(name, Undistorter(name))
        rgb = undistorter.undistort(rgb, intrinsics)
        return CameraInput(name=name, stamp=stamp_to_sec(image_msg.header.stamp), rgb=rgb, K=undistorter.K,
                           frame_id=str(image_msg.header.frame_id), valid=undistorter.valid_mask)


def load_mask(path: str | os.PathLike, width: int | None = None, height: int | None = None) -> np.ndarray:
    """An ego-body mask image (non-zero = keep, zero = the vehicle's own body) as ``[H, W]`` bool.

    Resized with nearest neighbour when ``width``/``height`` are given and differ (a mask drawn at another
    resolution of the same camera).
    """
    import cv2

    img = cv2.imread(os.fspath(path), cv2.IMREAD_GRAYSCALE)
    if img is None:
        raise InputError(f'mask image {os.fspath(path)!r} cannot be read (missing or not an image); give a PNG '
                         f'where white = keep and black = ego body, or leave the mask parameter empty')
    if width is not None and height is not None and img.shape != (height, width):
        img = cv2.resize(img, (width, height), interpolation=cv2.INTER_NEAREST)
    return img > 0
