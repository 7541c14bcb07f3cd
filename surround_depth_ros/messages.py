"""numpy -> the node's output messages: depth images (REP 118), their CameraInfo, confidence, colorized depth and
the fused PointCloud2. No rclpy here.

Outputs are plain field values (``dict``s) that :func:`fill_message` copies into a message object the node created.
Reading messages (images, CameraInfo, stamps, clouds, odometry) is the core's
:mod:`surround_depth_train.data.rosbag.messages`, shared with the bag tools and training.
"""
from __future__ import annotations

import array
from typing import Any, Mapping

import numpy as np

from surround_depth_train.data.rosbag.messages import DEPTH_ENCODINGS, FLOAT32, RGB_ENCODINGS, ns_to_stamp_fields

__all__ = ['image_fields', 'depth_image_fields', 'confidence_image_fields', 'colorized_image_fields',
           'depth_camera_info_fields', 'fill_message', 'camera_messages', 'pack_cloud', 'cloud_fields']


# --------------------------------------------------------------------------------------------------- outputs
def image_fields(pixels: np.ndarray, encoding: str) -> dict[str, Any]:
    """Field values of a little-endian ``sensor_msgs/Image`` holding ``pixels`` (rows unpadded)."""
    base, channels = {**RGB_ENCODINGS, **DEPTH_ENCODINGS}[encoding]
    dtype = np.dtype(base).newbyteorder('<')
    px = np.ascontiguousarray(pixels, dtype=dtype)
    expected_ndim = 2 if channels == 1 else 3
    if px.ndim != expected_ndim or (channels > 1 and px.shape[2] != channels):
        raise ValueError(f'{encoding} needs an array of shape [H, W{"" if channels == 1 else f", {channels}"}], '
                         f'got {px.shape}')
    h, w = px.shape[:2]
    return {'height': h, 'width': w, 'encoding': encoding, 'is_bigendian': 0,
            'step': w * channels * dtype.itemsize, 'data': px.tobytes()}


def depth_image_fields(depth: np.ndarray, min_depth: float | None = None,
                       max_depth: float | None = None) -> dict[str, Any]:
    """REP 118 depth (32FC1 metres): non-finite, non-positive and (when given) out-of-range values become NaN."""
    d = np.array(depth, dtype=np.float32)
    invalid = ~np.isfinite(d) | (d <= 0)
    if min_depth is not None:
        invalid |= d < min_depth
    if max_depth is not None:
        invalid |= d > max_depth
    d[invalid] = np.nan
    return image_fields(d, '32FC1')


def confidence_image_fields(confidence: np.ndarray) -> dict[str, Any]:
    """Per-pixel confidence as 32FC1 in ``[0, 1]`` (NaN kept where the engine marked no confidence)."""
    return image_fields(np.clip(np.asarray(confidence, dtype=np.float32), 0.0, 1.0), '32FC1')


def colorized_image_fields(depth: np.ndarray, min_depth: float = 0.5, max_depth: float = 80.0) -> dict[str, Any]:
    """An rgb8 picture of the depth (log-scale magma, the project's one colour map; invalid = black)."""
    from surround_depth_train.visualize import colorize_depth

    return image_fields(colorize_depth(depth, min_depth, max_depth), 'rgb8')


def depth_camera_info_fields(K: np.ndarray, width: int, height: int) -> dict[str, Any]:
    """CameraInfo of the published (rectified) depth: ``D = 0`` plumb_bob, ``R = I``, ``P = [K | 0]``."""
    K = np.asarray(K, dtype=np.float64).reshape(3, 3)
    P = np.zeros((3, 4))
    P[:, :3] = K
    return {'height': int(height), 'width': int(width), 'distortion_model': 'plumb_bob', 'd': [0.0] * 5,
            'k': K.reshape(-1).tolist(), 'r': np.eye(3).reshape(-1).tolist(), 'p': P.reshape(-1).tolist(),
            'binning_x': 0, 'binning_y': 0}


def fill_message(msg: Any, fields: Mapping[str, Any]) -> Any:
    """Copy field values (from the ``*_fields`` functions) into a message object; returns ``msg``.

    ``data`` bytes become ``array.array('B')`` (rclpy's fast path; a plain list of ints would be checked value by
    value), and ``fields`` tuples ``(name, offset, datatype, count)`` become ``sensor_msgs/PointField``.
    """
    for key, value in fields.items():
        if key == 'data' and isinstance(value, (bytes, bytearray, memoryview)):
            buf = array.array('B')
            buf.frombytes(value)
            value = buf
        elif key == 'fields':
            from sensor_msgs.msg import PointField  # only needed when filling a real message

            value = [PointField(name=f[0], offset=f[1], datatype=f[2], count=f[3])
                     if isinstance(f, (tuple, list)) else f for f in value]
        setattr(msg, key, value)
    return msg


def camera_messages(pixels: np.ndarray, K: np.ndarray, stamp_ns: int, frame_id: str) -> tuple[Any, Any]:
    """``(sensor_msgs/Image, sensor_msgs/CameraInfo)`` of one rectified rgb8 camera frame (``pixels`` ``[H, W, 3]``
    uint8, intrinsics ``K``), with the same stamp and optical frame: what a camera driver publishes, for the
    benchmarks and tests that stand in for one."""
    from sensor_msgs.msg import CameraInfo, Image  # only needed when publishing

    height, width = pixels.shape[:2]
    image = fill_message(Image(), image_fields(pixels, 'rgb8'))
    info = fill_message(CameraInfo(), depth_camera_info_fields(K, width, height))
    for msg in (image, info):
        msg.header.stamp.sec, msg.header.stamp.nanosec = ns_to_stamp_fields(int(stamp_ns))
        msg.header.frame_id = frame_id
    return image, info


def pack_cloud(points: np.ndarray, camera: np.ndarray, rgb: np.ndarray | None = None,
               confidence: np.ndarray | None = None) -> tuple[list[tuple[str, int, int, int]], int, bytes]:
    """Pack a fused cloud as PointCloud2 ``(fields, point_step, data)``, little-endian, NaN points dropped.

    ==============  ======  =========  ==========================================================================
    field           offset  datatype   meaning
    ==============  ======  =========  ==========================================================================
    ``x y z``       0 4 8   FLOAT32    metres in base_link
    ``camera``      12      FLOAT32    index of the camera in the rig (RViz: Intensity, channel ``camera``)
    ``rgb``         16      FLOAT32    optional; bits ``0x00RRGGBB`` (RViz's RGB8 transformer, PCL's PointXYZRGB)
    ``confidence``  16/20   FLOAT32    optional; ``[0, 1]``
    ==============  ======  =========  ==========================================================================

    ``camera`` is FLOAT32 rather than UINT16: every field then stays 4 bytes wide and aligned without padding,
    matching the project's LiDAR clouds (ring as float32, ``topics.py``) and the tools that only colour or
    convert float fields; RViz's channel colouring reads it either way.
    """
    pts = np.asarray(points, dtype=np.float32).reshape(-1, 3)
    cam = np.asarray(camera).reshape(-1)
    n = len(pts)
    if len(cam) != n or (rgb is not None and len(rgb) != n) or (confidence is not None and len(confidence) != n):
        raise ValueError('points, camera, rgb and confidence must have one entry per point')
    keep = np.all(np.isfinite(pts), axis=1)
    if confidence is not None:
        keep &= np.isfinite(np.asarray(confidence, dtype=np.float32))
    names = ['x', 'y', 'z', 'camera'] + (['rgb'] if rgb is not None else []) + \
            (['confidence'] if confidence is not None else [])
    table = np.empty((int(keep.sum()), len(names)), dtype='<f4')
    table[:, :3] = pts[keep]
    table[:, 3] = cam[keep]
    col = 4
    if rgb is not None:
        c = np.asarray(rgb, dtype=np.uint32).reshape(-1, 3)[keep]
        table.view('<u4')[:, col] = (c[:, 0] << 16) | (c[:, 1] << 8) | c[:, 2]
        col += 1
    if confidence is not None:
        table[:, col] = np.asarray(confidence, dtype=np.float32)[keep]
    fields = [(name, 4 * i, FLOAT32, 1) for i, name in enumerate(names)]
    return fields, 4 * len(names), table.tobytes()


def cloud_fields(points: np.ndarray, camera: np.ndarray, rgb: np.ndarray | None = None,
                 confidence: np.ndarray | None = None) -> dict[str, Any]:
    """Every PointCloud2 field value but the header (:func:`pack_cloud` plus ``height = 1``, ``is_dense``...)."""
    fields, point_step, data = pack_cloud(points, camera, rgb, confidence)
    n = len(data) // point_step
    return {'height': 1, 'width': n, 'fields': fields, 'is_bigendian': False, 'point_step': point_step,
            'row_step': point_step * n, 'data': data, 'is_dense': True}
