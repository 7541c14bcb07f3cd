"""ROS messages -> numpy: images, camera info, stamps, PointCloud2 and odometry. No rclpy here.

Messages are read duck-typed (any object with the message's fields: a real rclpy message, a ``rosbags`` message or
a test double), so the node, the bag tools and training on bags read them with one code and without ROS. The way
back (numpy -> the node's output messages) is :mod:`surround_depth_ros.messages`.

Every bad input raises :class:`InputError`, whose message names the problem and the fix; the node logs it once
and skips the frame.

Conventions kept here:
    * images: ``[H, W, 3]`` uint8 RGB; rows may be padded (``step > width * channels * bytes``); multi-byte pixels
      honour ``is_bigendian``; ``mono16`` becomes 8-bit by keeping the high byte (``v >> 8``);
    * depth (REP 118): 32FC1 in metres, NaN = invalid, stamp and frame of the source image;
    * stamps: integer nanoseconds are the exact representation (``stamp_to_ns``); float seconds are for
      arithmetic only;
    * PointCloud2: little-endian, ``height = 1``, ``is_dense = True`` (no NaN point is ever packed), every field
      4 bytes wide so nothing needs padding: ``x y z camera [rgb] [confidence]`` (table in :func:`pack_cloud`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

__all__ = [
    'InputError', 'RGB_ENCODINGS', 'DEPTH_ENCODINGS', 'DISTORTION_MODELS', 'CameraIntrinsics',
    'stamp_to_ns', 'stamp_to_sec', 'ns_to_stamp_fields', 'sec_to_stamp_fields',
    'image_to_array', 'image_to_rgb', 'depth_image_to_array', 'compressed_to_rgb', 'camera_info_to_intrinsics',
    'check_image_matches_info', 'check_finite',
    'INT8', 'UINT8', 'INT16', 'UINT16', 'INT32', 'UINT32', 'FLOAT32', 'FLOAT64',
    'unpack_cloud', 'unpack_rgb', 'cloud_to_xyz', 'odometry_to_matrix',
]


class InputError(ValueError):
    """A message that cannot be used; the text names the problem and the fix."""


# sensor_msgs/PointField datatype constants (the values of the message definition).
INT8, UINT8, INT16, UINT16, INT32, UINT32, FLOAT32, FLOAT64 = 1, 2, 3, 4, 5, 6, 7, 8
_POINTFIELD_DTYPES = {INT8: 'i1', UINT8: 'u1', INT16: 'i2', UINT16: 'u2', INT32: 'i4', UINT32: 'u4', FLOAT32: 'f4',
                      FLOAT64: 'f8'}

#: Camera image encodings :func:`image_to_rgb` reads: ``encoding -> (dtype, channels)``.
RGB_ENCODINGS: dict[str, tuple[str, int]] = {
    'rgb8': ('u1', 3), 'bgr8': ('u1', 3), 'rgba8': ('u1', 4), 'bgra8': ('u1', 4), 'mono8': ('u1', 1),
    'mono16': ('u2', 1),
}
#: Depth encodings (REP 118) :func:`depth_image_to_array` reads.
DEPTH_ENCODINGS: dict[str, tuple[str, int]] = {'32FC1': ('f4', 1), '16UC1': ('u2', 1)}
_ALL_ENCODINGS = {**RGB_ENCODINGS, **DEPTH_ENCODINGS}
#: ``distortion_model`` values the undistorter handles (sensor_msgs/distortion_models.hpp names).
DISTORTION_MODELS = ('plumb_bob', 'rational_polynomial', 'equidistant')


# --------------------------------------------------------------------------------------------------- stamps
def stamp_to_ns(stamp: Any) -> int:
    """``builtin_interfaces/Time`` (``sec``, ``nanosec``) as integer nanoseconds (exact)."""
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def stamp_to_sec(stamp: Any) -> float:
    """``builtin_interfaces/Time`` as float seconds (for arithmetic; keep :func:`stamp_to_ns` to identify)."""
    return stamp_to_ns(stamp) * 1e-9


def ns_to_stamp_fields(ns: int) -> tuple[int, int]:
    """Integer nanoseconds to ``(sec, nanosec)`` with ``0 <= nanosec < 1e9`` (exact, negative times too)."""
    sec, nanosec = divmod(int(ns), 1_000_000_000)
    return sec, nanosec


def sec_to_stamp_fields(t: float) -> tuple[int, int]:
    """Float seconds to ``(sec, nanosec)``, rounded to the nearest nanosecond.

    The fractional part is split off first (``t - floor(t)`` is exact in binary floating point), so a stamp of
    1.7e9 s keeps nanosecond resolution instead of the ~240 ns that ``round(t * 1e9)`` would leave.
    """
    if not math.isfinite(t):
        raise InputError(f'stamp {t!r} is not a finite time; pass seconds as a finite float')
    sec = math.floor(t)
    return ns_to_stamp_fields(sec * 1_000_000_000 + round((t - sec) * 1e9))


# --------------------------------------------------------------------------------------------------- images
def _bytes_of(data: Any) -> np.ndarray:
    """A message's ``data`` (bytes, array.array('B'), numpy, or a list of ints) as a flat uint8 array (no copy
    when the buffer protocol allows)."""
    try:
        return np.frombuffer(data, dtype=np.uint8)
    except (TypeError, ValueError):
        return np.asarray(data, dtype=np.uint8).reshape(-1)


def _camera_name(msg: Any, name: str | None) -> str:
    if name:
        return name
    frame = getattr(getattr(msg, 'header', None), 'frame_id', '')
    return f'frame {frame!r}' if frame else 'the camera'


def image_to_array(msg: Any, name: str | None = None, allow_nonfinite: bool = False) -> np.ndarray:
    """Decode a ``sensor_msgs/Image`` to its native pixels: ``[H, W]`` or ``[H, W, C]`` in native byte order.

    Handles row padding (``step`` larger than the row) and ``is_bigendian``. Float images with NaN/Inf raise
    unless ``allow_nonfinite`` (REP 118 depth uses NaN for invalid pixels).
    """
    who = _camera_name(msg, name)
    encoding = str(msg.encoding)
    key = next((e for e in _ALL_ENCODINGS if e.lower() == encoding.lower()), None)
    if key is None:
        raise InputError(f'image of {who}: unsupported encoding {encoding!r}; publish one of '
                         f'{", ".join(_ALL_ENCODINGS)} (e.g. debayer first with image_proc)')
    base, channels = _ALL_ENCODINGS[key]
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    if height <= 0 or width <= 0:
        raise InputError(f'image of {who}: size {width} x {height} is empty; the driver must fill width and height')
    itemsize = np.dtype(base).itemsize
    row = width * channels * itemsize
    if step < row:
        raise InputError(f'image of {who}: step {step} is smaller than a {encoding} row of {width} pixels '
                         f'({row} bytes); set step to at least width * channels * bytes per channel')
    buf = _bytes_of(msg.data)
    if buf.size != step * height:
        raise InputError(f'image of {who}: data holds {buf.size} bytes but step x height = {step} x {height} = '
                         f'{step * height}; the message is truncated or its step/height are wrong')
    rows = buf.reshape(height, step)
    if step != row:
        rows = np.ascontiguousarray(rows[:, :row])  # drop the padding of each row
    dtype = np.dtype(base).newbyteorder('>' if msg.is_bigendian else '<')
    out = rows.view(dtype).reshape((height, width, channels) if channels > 1 else (height, width))
    if not dtype.isnative and itemsize > 1:
        out = out.astype(dtype.newbyteorder('='))
    if out.dtype.kind == 'f' and not allow_nonfinite:
        check_finite(out, f'image of {who}')
    return out


def image_to_rgb(msg: Any, name: str | None = None) -> np.ndarray:
    """A camera ``sensor_msgs/Image`` as ``[H, W, 3]`` uint8 RGB (may be a read-only view of ``msg.data``).

    Encodings: rgb8, bgr8, rgba8, bgra8, mono8, mono16 (high byte kept). Depth or float encodings are refused.
    """
    encoding = str(msg.encoding).lower()
    if encoding not in RGB_ENCODINGS:
        raise InputError(f'image of {_camera_name(msg, name)}: unsupported encoding {msg.encoding!r} for a camera '
                         f'image; publish one of {", ".join(RGB_ENCODINGS)} (e.g. debayer first with image_proc)')
    px = image_to_array(msg, name)
    if encoding == 'mono16':
        px = (px >> 8).astype(np.uint8)
    if px.ndim == 2:
        return np.repeat(px[..., None], 3, axis=2)
    if encoding in ('bgr8', 'bgra8'):
        return np.ascontiguousarray(px[..., 2::-1])
    return np.ascontiguousarray(px[..., :3]) if encoding == 'rgba8' else px


def depth_image_to_array(msg: Any, name: str | None = None) -> np.ndarray:
    """A REP 118 depth image (32FC1 metres or 16UC1 millimetres) as ``[H, W]`` float32 metres, NaN = invalid."""
    encoding = str(msg.encoding).upper()
    if encoding not in DEPTH_ENCODINGS:
        raise InputError(f'depth image of {_camera_name(msg, name)}: unsupported encoding {msg.encoding!r}; '
                         f'REP 118 depth is 32FC1 (metres) or 16UC1 (millimetres)')
    px = image_to_array(msg, name, allow_nonfinite=True)
    if encoding == '16UC1':
        depth = px.astype(np.float32) * 1e-3
        depth[px == 0] = np.nan
        return depth
    depth = px.astype(np.float32, copy=True)
    depth[~np.isfinite(depth) | (depth <= 0)] = np.nan
    return depth


def compressed_to_rgb(msg: Any, name: str | None = None) -> np.ndarray:
    """A ``sensor_msgs/CompressedImage`` (JPEG or PNG, what image_transport's compressed plugin writes) as
    ``[H, W, 3]`` uint8 RGB."""
    import cv2

    who = _camera_name(msg, name)
    fmt = str(getattr(msg, 'format', ''))
    if 'compresseddepth' in fmt.lower():
        raise InputError(f'compressed image of {who}: format {fmt!r} is compressedDepth, not a camera image; '
                         f'subscribe to the colour image topic')
    buf = _bytes_of(msg.data)
    if buf.size == 0:
        raise InputError(f'compressed image of {who}: no data; the publisher sent an empty image')
    img = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    if img is None:
        raise InputError(f'compressed image of {who} (format {fmt!r}, {buf.size} bytes) could not be decoded: the '
                         f'data is corrupt or truncated, or not JPEG/PNG; check the publisher')
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def check_finite(array_: np.ndarray, what: str) -> None:
    """Raise :class:`InputError` when ``array_`` holds NaN or Inf."""
    a = np.asarray(array_)
    if a.dtype.kind in 'fc' and not np.all(np.isfinite(a)):
        bad = int(np.count_nonzero(~np.isfinite(a)))
        raise InputError(f'{what}: {bad} of {a.size} values are NaN or Inf; the source must publish finite values')


# --------------------------------------------------------------------------------------------------- camera info
@dataclass
class CameraIntrinsics:
    """What the node uses from a ``sensor_msgs/CameraInfo``.

    Attributes:
        K: 3x3 intrinsics of the raw (distorted) image.
        D: distortion coefficients (zeros when the image is already rectified).
        model: ``distortion_model`` (an empty model with all-zero ``D`` becomes ``plumb_bob``).
        width, height: the image size the calibration is for.
        P: 3x4 projection of the rectified image, None when the message left it all zero.
        R: 3x3 rectification rotation (identity when the message left it all zero). Monocular depth keeps the
            camera's optical frame, so the undistorter does not apply it.
    """

    K: np.ndarray
    D: np.ndarray
    model: str
    width: int
    height: int
    P: np.ndarray | None = None
    R: np.ndarray = field(default_factory=lambda: np.eye(3))

    @property
    def has_distortion(self) -> bool:
        return bool(np.any(self.D != 0))

    @property
    def size(self) -> tuple[int, int]:
        """``(width, height)``."""
        return self.width, self.height

    def key(self) -> tuple:
        """What the undistortion maps depend on: equal keys, equal maps."""
        return (self.K.tobytes(), self.D.tobytes(), self.model, self.width, self.height)


def _floats(values: Any, n: int | None, what: str) -> np.ndarray:
    a = np.asarray(values if values is not None else [], dtype=np.float64).reshape(-1)
    if n is not None and a.size != n:
        raise InputError(f'{what}: expected {n} numbers, got {a.size}')
    if not np.all(np.isfinite(a)):
        raise InputError(f'{what}: contains NaN or Inf ({a.tolist()}); publish a valid calibration')
    return a


def camera_info_to_intrinsics(msg: Any, name: str | None = None) -> CameraIntrinsics:
    """Read and check a ``sensor_msgs/CameraInfo`` (fields ``k d p r distortion_model width height``)."""
    who = f'CameraInfo of {_camera_name(msg, name)}'
    width, height = int(msg.width), int(msg.height)
    if width <= 0 or height <= 0:
        raise InputError(f'{who}: image size {width} x {height}; the driver must fill width and height')
    K = _floats(msg.k, 9, f'{who}: K').reshape(3, 3)
    if not np.any(K):
        raise InputError(f'{who}: K is all zero (an uncalibrated camera); calibrate the camera or publish its '
                         f'intrinsics (camera_info_url)')
    if K[0, 0] <= 0 or K[1, 1] <= 0:
        raise InputError(f'{who}: focal lengths fx = {K[0, 0]}, fy = {K[1, 1]} must be positive; fix the '
                         f'calibration')
    if not np.allclose(K[2], [0.0, 0.0, 1.0]):
        raise InputError(f'{who}: the last row of K is {K[2].tolist()}, expected [0, 0, 1]; fix the calibration')
    D = _floats(msg.d, None, f'{who}: D')
    model = str(msg.distortion_model or '')
    if not model:
        if np.any(D):
            raise InputError(f'{who}: distortion_model is empty but D = {D.tolist()} is not zero; set '
                             f'distortion_model to one of {", ".join(DISTORTION_MODELS)}')
        model, D = 'plumb_bob', np.zeros(5)
    P = _floats(msg.p, 12, f'{who}: P').reshape(3, 4)
    R = _floats(msg.r, 9, f'{who}: R').reshape(3, 3)
    return CameraIntrinsics(K=K, D=D, model=model, width=width, height=height, P=P if np.any(P) else None,
                            R=R if np.any(R) else np.eye(3))


def check_image_matches_info(image: np.ndarray, intrinsics: CameraIntrinsics, name: str = 'the camera') -> None:
    """Raise :class:`InputError` when an image's size differs from its CameraInfo (or it holds NaN/Inf)."""
    h, w = np.asarray(image).shape[:2]
    if (w, h) != intrinsics.size:
        raise InputError(f'image of {name} is {w} x {h} but its CameraInfo describes {intrinsics.width} x '
                         f'{intrinsics.height}; publish the CameraInfo of the image actually sent (binning/ROI '
                         f'or a resize upstream change the size)')
    check_finite(image, f'image of {name}')


# --------------------------------------------------------------------------------------------------- clouds
def _field_tuple(f: Any) -> tuple[str, int, int, int]:
    if isinstance(f, (tuple, list)):
        return str(f[0]), int(f[1]), int(f[2]), int(f[3])
    return str(f.name), int(f.offset), int(f.datatype), int(f.count)


def unpack_cloud(fields: Sequence[Any], point_step: int, data: Any, is_bigendian: bool = False) -> np.ndarray:
    """PointCloud2 data as a structured array with one named field per PointField (as sensor_msgs_py reads it).

    ``fields`` are ``(name, offset, datatype, count)`` tuples or PointField-like objects.
    """
    order = '>' if is_bigendian else '<'
    names, formats, offsets = [], [], []
    for f in fields:
        name, offset, datatype, count = _field_tuple(f)
        if datatype not in _POINTFIELD_DTYPES:
            raise InputError(f'PointCloud2 field {name!r} has unknown datatype {datatype}; expected 1..8 '
                             f'(sensor_msgs/PointField constants)')
        base = order + _POINTFIELD_DTYPES[datatype]
        names.append(name)
        formats.append(base if count == 1 else (base, (count,)))
        offsets.append(offset)
    point_step = int(point_step)
    dtype = np.dtype({'names': names, 'formats': formats, 'offsets': offsets, 'itemsize': point_step})
    buf = _bytes_of(data)
    if point_step <= 0 or buf.size % point_step:
        raise InputError(f'PointCloud2 data holds {buf.size} bytes, not a multiple of point_step {point_step}; '
                         f'the message is truncated or its point_step is wrong')
    return buf.view(dtype)


def unpack_rgb(rgb: np.ndarray) -> np.ndarray:
    """A packed ``rgb`` field (float32 bits ``0x00RRGGBB``) as ``[M, 3]`` uint8."""
    bits = np.ascontiguousarray(rgb, dtype='<f4').view('<u4')
    return np.stack([(bits >> 16) & 0xFF, (bits >> 8) & 0xFF, bits & 0xFF], axis=-1).astype(np.uint8)


def cloud_to_xyz(msg: Any) -> np.ndarray:
    """``x, y, z`` of a ``sensor_msgs/PointCloud2`` (e.g. the LiDAR) as ``[M, 3]`` float32, NaN points dropped."""
    arr = unpack_cloud(msg.fields, msg.point_step, msg.data, bool(msg.is_bigendian))
    missing = [k for k in 'xyz' if k not in (arr.dtype.names or ())]
    if missing:
        raise InputError(f'PointCloud2 in frame {msg.header.frame_id!r} has no field(s) {missing}; publish x, y, z')
    width, height = int(msg.width), int(msg.height)
    if width * height != len(arr):
        raise InputError(f'PointCloud2: width x height = {width} x {height} but data holds {len(arr)} points; '
                         f'the message is truncated or its size fields are wrong')
    xyz = np.stack([arr['x'], arr['y'], arr['z']], axis=1).astype(np.float32)
    return xyz[np.all(np.isfinite(xyz), axis=1)]


def odometry_to_matrix(msg: Any) -> tuple[int, np.ndarray]:
    """``nav_msgs/Odometry`` as ``(stamp ns, T_odom_base 4x4)`` from ``pose.pose`` (quaternion x, y, z, w)."""
    from surround_depth_train.geometry.transforms import make_transform

    p, q = msg.pose.pose.position, msg.pose.pose.orientation
    quat = np.array([q.x, q.y, q.z, q.w], dtype=np.float64)
    pos = np.array([p.x, p.y, p.z], dtype=np.float64)
    if not (np.all(np.isfinite(quat)) and np.all(np.isfinite(pos))) or np.linalg.norm(quat) < 1e-6:
        raise InputError(f'odometry at {stamp_to_ns(msg.header.stamp)} ns: pose is not finite or its quaternion is '
                         f'zero; publish a valid pose')
    return stamp_to_ns(msg.header.stamp), make_transform(quat, pos)
