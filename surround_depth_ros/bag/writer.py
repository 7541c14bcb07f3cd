"""rosbag2 writing with ``rosbags`` (no rclpy): message building and one writer that ``ros2 bag play`` can replay.

Messages are built as ``rosbags`` typestore dataclasses (ROS 2 Kilted definitions, the distribution the PyPI
``ros-*`` wheels come from) and serialised to CDR; their bytes deserialise into the rclpy messages of the same
distribution. Connections carry the QoS a live publisher would offer: ``/tf_static`` reliable + transient local
(keep last 1), everything else reliable + volatile, so ``ros2 bag play`` re-offers them that way.

:class:`BagWriter` writes MCAP by default (``storage='sqlite3'`` on request) and counts messages per topic. It is a
context manager that always closes the bag, so a failure mid-conversion leaves a bag that opens and holds every
message written before it.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from surround_depth_train.geometry.transforms import matrix_to_quat

__all__ = ['TYPESTORE', 'BagError', 'BagWriter', 'stamp_ns', 'header', 'image_msg', 'compressed_msg',
           'camera_info_msg', 'pointcloud_msg', 'transform_msg', 'tf_msg', 'odometry_msg', 'POINT_FIELDS']


def _typestore():
    from rosbags.typesys import Stores, get_typestore

    store = getattr(Stores, 'ROS2_KILTED', None) or Stores.LATEST
    return get_typestore(store)


TYPESTORE = _typestore()
_T = TYPESTORE.types
#: Point layout of ``/lidar/points``: all FLOAT32, as the nuscenes2bag family writes it.
POINT_FIELDS = ('x', 'y', 'z', 'intensity', 'ring')


class BagError(RuntimeError):
    """The bag cannot be written (output exists, unknown storage); the message names the path and the fix."""


def stamp_ns(seconds: float) -> int:
    """Integer nanoseconds of a float-seconds stamp (rounded, so microsecond stamps stay exact)."""
    return int(round(float(seconds) * 1e6)) * 1000


def _time(ns: int):
    return _T['builtin_interfaces/msg/Time'](sec=int(ns // 1_000_000_000), nanosec=int(ns % 1_000_000_000))


def header(ns: int, frame_id: str):
    return _T['std_msgs/msg/Header'](stamp=_time(ns), frame_id=frame_id)


def image_msg(ns: int, frame_id: str, pixels: np.ndarray, encoding: str = 'rgb8'):
    """``sensor_msgs/Image`` of a ``[H, W, 3]`` uint8 (rgb8 / bgr8), ``[H, W]`` uint8 (mono8) or float32 (32FC1)."""
    pixels = np.ascontiguousarray(pixels)
    h, w = pixels.shape[:2]
    return _T['sensor_msgs/msg/Image'](header=header(ns, frame_id), height=h, width=w, encoding=encoding,
                                       is_bigendian=0, step=int(pixels.strides[0]),
                                       data=np.frombuffer(pixels.tobytes(), dtype=np.uint8))


def compressed_msg(ns: int, frame_id: str, data: bytes, fmt: str = 'jpeg'):
    """``sensor_msgs/CompressedImage`` (image_transport's ``format``: ``jpeg`` / ``png``)."""
    return _T['sensor_msgs/msg/CompressedImage'](header=header(ns, frame_id), format=fmt,
                                                 data=np.frombuffer(bytes(data), dtype=np.uint8))


def camera_info_msg(ns: int, frame_id: str, K: np.ndarray, width: int, height: int,
                    distortion: Sequence[float] = (0.0, 0.0, 0.0, 0.0, 0.0), model: str = 'plumb_bob'):
    """``sensor_msgs/CameraInfo``: ``K``, ``P = [K | 0]``, ``R = I``, the distortion model and coefficients."""
    K = np.asarray(K, dtype=np.float64).reshape(3, 3)
    P = np.zeros((3, 4))
    P[:, :3] = K
    roi = _T['sensor_msgs/msg/RegionOfInterest'](x_offset=0, y_offset=0, height=0, width=0, do_rectify=False)
    return _T['sensor_msgs/msg/CameraInfo'](
        header=header(ns, frame_id), height=int(height), width=int(width), distortion_model=model,
        d=np.asarray(distortion, dtype=np.float64), k=K.reshape(-1).copy(), r=np.eye(3).reshape(-1), p=P.reshape(-1),
        binning_x=0, binning_y=0, roi=roi)


def pointcloud_msg(ns: int, frame_id: str, points: np.ndarray):
    """``sensor_msgs/PointCloud2`` of ``[M, 5]`` x, y, z, intensity, ring (float32, unorganised)."""
    pts = np.ascontiguousarray(np.asarray(points, dtype=np.float32)[:, :len(POINT_FIELDS)])
    if pts.shape[1] != len(POINT_FIELDS):
        raise ValueError(f'points must be [M, {len(POINT_FIELDS)}] {POINT_FIELDS}, got {pts.shape}')
    field = _T['sensor_msgs/msg/PointField']
    fields = [field(name=n, offset=4 * i, datatype=field.FLOAT32, count=1) for i, n in enumerate(POINT_FIELDS)]
    step = 4 * len(POINT_FIELDS)
    return _T['sensor_msgs/msg/PointCloud2'](
        header=header(ns, frame_id), height=1, width=len(pts), fields=fields, is_bigendian=False, point_step=step,
        row_step=step * len(pts), data=np.frombuffer(pts.tobytes(), dtype=np.uint8),
        is_dense=bool(np.all(np.isfinite(pts))))


def _pose_parts(T: np.ndarray):
    q = matrix_to_quat(np.asarray(T)[:3, :3])
    t = np.asarray(T, dtype=np.float64)[:3, 3]
    return t, q


def transform_msg(ns: int, parent: str, child: str, T_parent_child: np.ndarray):
    """``geometry_msgs/TransformStamped``: the pose of ``child`` in ``parent``."""
    t, q = _pose_parts(T_parent_child)
    tf = _T['geometry_msgs/msg/Transform'](
        translation=_T['geometry_msgs/msg/Vector3'](x=float(t[0]), y=float(t[1]), z=float(t[2])),
        rotation=_T['geometry_msgs/msg/Quaternion'](x=float(q[0]), y=float(q[1]), z=float(q[2]), w=float(q[3])))
    return _T['geometry_msgs/msg/TransformStamped'](header=header(ns, parent), child_frame_id=child, transform=tf)


def tf_msg(transforms: Sequence[Any]):
    return _T['tf2_msgs/msg/TFMessage'](transforms=list(transforms))


def odometry_msg(ns: int, parent: str, child: str, T_parent_child: np.ndarray,
                 linear: Sequence[float] = (0.0, 0.0, 0.0), angular: Sequence[float] = (0.0, 0.0, 0.0)):
    """``nav_msgs/Odometry``: pose of ``child`` in ``parent``; twist in ``child`` (zero when unknown)."""
    t, q = _pose_parts(T_parent_child)
    G = _T
    pose = G['geometry_msgs/msg/Pose'](position=G['geometry_msgs/msg/Point'](x=float(t[0]), y=float(t[1]),
                                                                             z=float(t[2])),
                                       orientation=G['geometry_msgs/msg/Quaternion'](x=float(q[0]), y=float(q[1]),
                                                                                    z=float(q[2]), w=float(q[3])))
    twist = G['geometry_msgs/msg/Twist'](linear=G['geometry_msgs/msg/Vector3'](*map(float, linear)),
                                         angular=G['geometry_msgs/msg/Vector3'](*map(float, angular)))
    return G['nav_msgs/msg/Odometry'](
        header=header(ns, parent), child_frame_id=child,
        pose=G['geometry_msgs/msg/PoseWithCovariance'](pose=pose, covariance=np.zeros(36)),
        twist=G['geometry_msgs/msg/TwistWithCovariance'](twist=twist, covariance=np.zeros(36)))


def _qos(transient_local: bool):
    from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime

    zero = QosTime(sec=0, nsec=0)
    return Qos(history=QosHistory.KEEP_LAST, depth=1 if transient_local else 10,
               reliability=QosReliability.RELIABLE,
               durability=QosDurability.TRANSIENT_LOCAL if transient_local else QosDurability.VOLATILE,
               deadline=zero, lifespan=zero, liveliness=QosLiveliness.AUTOMATIC, liveliness_lease_duration=zero,
               avoid_ros_namespace_conventions=False)


class BagWriter:
    """A rosbag2 being written; ``write(topic, msg, ns)`` adds one message (connections open on first use).

    Args:
        path: the bag directory to create (must not exist).
        storage: ``'mcap'`` (default) or ``'sqlite3'``.
        transient_local: topics offered transient local (``/tf_static``).

    Attributes:
        counts: messages written per topic.
    """

    def __init__(self, path: str | os.PathLike, storage: str = 'mcap', transient_local: Sequence[str] = ('/tf_static',)):
        from rosbags.rosbag2 import StoragePlugin, Writer

        plugins = {'mcap': StoragePlugin.MCAP, 'sqlite3': StoragePlugin.SQLITE3}
        if storage not in plugins:
            raise BagError(f'unknown bag storage {storage!r}; use mcap or sqlite3')
        self.path = Path(path)
        if self.path.exists():
            raise BagError(f'output {str(self.path)!r} already exists; choose a new --out path or remove the old bag')
        if not self.path.parent.is_dir():
            raise BagError(f'the folder {str(self.path.parent)!r} of --out does not exist; create it first')
        self.storage = storage
        self._writer = Writer(self.path, version=9, storage_plugin=plugins[storage])
        self._writer.open()
        self._connections: dict[str, Any] = {}
        self._transient = set(transient_local)
        self.counts: dict[str, int] = {}

    def write(self, topic: str, msg: Any, ns: int) -> None:
        """Serialise ``msg`` (a typestore message) and write it on ``topic`` with log time ``ns``."""
        msgtype = msg.__msgtype__
        conn = self._connections.get(topic)
        if conn is None:
            conn = self._writer.add_connection(topic, msgtype, typestore=TYPESTORE,
                                               offered_qos_profiles=[_qos(topic in self._transient)])
            self._connections[topic] = conn
        elif conn.msgtype != msgtype:
            raise BagError(f'topic {topic} already carries {conn.msgtype}, not {msgtype}')
        self._writer.write(conn, int(ns), TYPESTORE.serialize_cdr(msg, msgtype))
        self.counts[topic] = self.counts.get(topic, 0) + 1

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def __enter__(self) -> 'BagWriter':
        return self

    def __exit__(self, *exc) -> None:
        self.close()
