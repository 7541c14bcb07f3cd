"""Reading a recorded drive back from a rosbag2 (or a ROS 1 bag) with ``rosbags``: no rclpy, no ROS install.

:class:`BagSource` opens a bag, finds the cameras, their image and ``camera_info`` topics, the LiDAR, TF and
odometry through a :class:`~surround_depth_train.data.rosbag.topic_map.TopicMap`, and refuses a bag it cannot use
with one message that lists the topics the bag has and what is missing. It reads in two passes:

1. :meth:`BagSource.read_context`: the mounts (``/tf_static``, and sensor transforms on ``/tf``), the ego motion
   (``/odom``, else the ``odom -> base_link`` transforms on ``/tf``) into a
   :class:`~surround_depth_train.geometry.transforms.TransformBuffer`, and every LiDAR sweep, moved into base_link
   at its own stamp by its mount (:class:`LidarSweeps`);
2. :meth:`BagSource.camera_messages`: images and ``camera_info`` in recording order, for the node's synchroniser.

Every rosbag2 that ``ros2 bag`` writes reads, with or without stored message definitions (Humble stores none): the
types come from :mod:`~surround_depth_train.data.rosbag.typestore`, and topics of types it cannot decode (a custom
message in a Humble bag) are named once in a warning and skipped. A damaged or truncated bag raises
:class:`BagInputError` naming the bag and how far reading got.
"""
from __future__ import annotations

import bisect
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from surround_depth_train.data.rosbag.messages import InputError, cloud_to_xyz, odometry_to_matrix, stamp_to_ns
from surround_depth_train.data.rosbag.topic_map import TopicMap
from surround_depth_train.geometry.rig import Camera, CameraRig, LidarMount, RigError
from surround_depth_train.geometry.transforms import TransformBuffer, make_transform, transform_points

__all__ = ['BagInputError', 'BagTopic', 'describe_topics', 'tf_entries', 'StaticFrames', 'LidarSweeps', 'BagContext',
           'BagSource', 'find_bags', 'sync_sets', 'IMAGE_TYPE', 'COMPRESSED_TYPE', 'INFO_TYPE', 'CLOUD_TYPE',
           'ODOM_TYPE', 'TF_TYPE']

IMAGE_TYPE = 'sensor_msgs/msg/Image'
COMPRESSED_TYPE = 'sensor_msgs/msg/CompressedImage'
INFO_TYPE = 'sensor_msgs/msg/CameraInfo'
CLOUD_TYPE = 'sensor_msgs/msg/PointCloud2'
ODOM_TYPE = 'nav_msgs/msg/Odometry'
TF_TYPE = 'tf2_msgs/msg/TFMessage'


_WARNED: set[tuple[str, tuple[str, ...]]] = set()  # (bag, skipped topics) already named in this process


class BagInputError(ValueError):
    """The bag cannot be used as asked; the message lists what it has, what is missing and the fix."""


@dataclass
class BagTopic:
    name: str
    msgtype: str
    count: int


def find_bags(path: str | os.PathLike) -> list[Path]:
    """``path`` itself when it is a bag (a rosbag2 folder with ``metadata.yaml``, an ``.mcap``, ``.db3`` or ROS 1
    ``.bag`` file), else the bags directly inside the folder ``path``, sorted by name."""
    path = Path(path)
    if not path.exists():
        raise BagInputError(f'bag {str(path)!r} does not exist; pass a rosbag2 folder (with metadata.yaml), an '
                            f'.mcap / .db3 / .bag file, or a folder of bags')
    if _is_bag(path):
        return [path]
    if path.is_dir():
        bags = sorted(p for p in path.iterdir() if _is_bag(p))
        if bags:
            return bags
    raise BagInputError(f'{str(path)!r} is not a bag and holds none: a rosbag2 is a folder with metadata.yaml '
                        f'(write one with `python -m surround_depth_ros.convert` or `ros2 bag record`)')


def _is_bag(path: Path) -> bool:
    return (path.is_dir() and (path / 'metadata.yaml').is_file()) or \
        (path.is_file() and path.suffix in ('.mcap', '.db3', '.bag'))


def describe_topics(topics: dict[str, BagTopic]) -> str:
    if not topics:
        return 'no topics at all'
    return ', '.join(f'{t.name} ({t.msgtype}, {t.count})' for t in topics.values())


def tf_entries(msg: Any) -> Iterator[tuple[float, str, str, np.ndarray]]:
    """``(stamp s, parent, child, T_parent_child)`` of each transform in a ``tf2_msgs/TFMessage``."""
    for t in msg.transforms:
        tr, q = t.transform.translation, t.transform.rotation
        yield (stamp_to_ns(t.header.stamp) * 1e-9, str(t.header.frame_id).lstrip('/'),
               str(t.child_frame_id).lstrip('/'),
               make_transform(np.array([q.x, q.y, q.z, q.w], dtype=np.float64), np.array([tr.x, tr.y, tr.z])))


class StaticFrames:
    """Mounts: ``parent <- child`` transforms that do not change, composed along the tree on lookup."""

    def __init__(self):
        self._parent: dict[str, tuple[str, np.ndarray]] = {}

    def add(self, parent: str, child: str, T_parent_child: np.ndarray, replace: bool = True) -> None:
        if replace or child not in self._parent:
            self._parent[child] = (parent, np.asarray(T_parent_child, dtype=np.float64))

    @property
    def frames(self) -> set[str]:
        return set(self._parent) | {p for p, _ in self._parent.values()}

    def lookup(self, target: str, frame: str) -> np.ndarray:
        """``T_target_frame`` through the chain of parents of ``frame``; ``LookupError`` when ``target`` is not
        above ``frame``."""
        T = np.eye(4)
        current, seen = frame, set()
        while current != target:
            if current not in self._parent or current in seen:
                raise LookupError(f'no transform from {frame!r} up to {target!r} on /tf_static or /tf')
            seen.add(current)
            parent, T_pc = self._parent[current]
            T = T_pc @ T
            current = parent
        return T


class LidarSweeps:
    """LiDAR sweeps in base_link at their own stamps, found by camera stamp (the newest sweep at or before it)."""

    def __init__(self, max_gap: float = 0.15):
        self.max_gap = float(max_gap)
        self.stamps: list[float] = []
        self.points: list[np.ndarray] = []

    def __len__(self) -> int:
        return len(self.stamps)

    def add(self, stamp: float, points_base: np.ndarray) -> None:
        i = bisect.bisect_right(self.stamps, stamp)
        self.stamps.insert(i, float(stamp))
        self.points.insert(i, np.asarray(points_base, dtype=np.float32))

    def forget_before(self, stamp: float) -> None:
        i = max(0, bisect.bisect_left(self.stamps, stamp) - 1)
        del self.stamps[:i], self.points[:i]

    def before(self, stamp: float) -> tuple[float, np.ndarray] | None:
        """The newest sweep stamped at or before ``stamp`` (1 us slack), if it is at most ``max_gap`` older."""
        i = bisect.bisect_right(self.stamps, stamp + 1e-6) - 1
        if i < 0 or stamp - self.stamps[i] > self.max_gap:
            return None
        return self.stamps[i], self.points[i]


@dataclass
class BagContext:
    """What pass 1 read: mounts, ego motion, sweeps, and each camera's first ``camera_info``."""

    mounts: StaticFrames
    transforms: TransformBuffer
    sweeps: LidarSweeps
    infos: dict[str, Any] = field(default_factory=dict)
    ego_source: str = ''
    lidar_frame: str = ''


class BagSource:
    """One bag, its cameras and sensors under a topic map (module docstring).

    Args:
        path: a bag (see :func:`find_bags`; a folder of bags is refused here: open each).
        topic_map: the layout (default: :mod:`surround_depth_train.data.rosbag.topics`).
    """

    def __init__(self, path: str | os.PathLike, topic_map: TopicMap | None = None):
        from surround_depth_train.data.rosbag.typestore import open_reader

        self.path = Path(path)
        self.map = topic_map or TopicMap()
        if not self.path.exists():
            raise BagInputError(f'bag {str(self.path)!r} does not exist; pass a rosbag2 folder (with metadata.yaml) '
                                f'or an .mcap / .db3 / .bag file')
        try:
            self._reader, self.types = open_reader(self.path)
        except Exception as exc:  # noqa: BLE001 - rosbags raises many kinds for damaged files; all mean one thing
            self._reader = None
            raise BagInputError(f'bag {str(self.path)!r} cannot be opened ({type(exc).__name__}: '
                                f'{str(exc).splitlines()[0] if str(exc) else "no detail"}); it is truncated or '
                                f'damaged, or not a rosbag2: re-record or re-convert it') from None
        self.topics: dict[str, BagTopic] = {}
        for conn in self._reader.connections:
            old = self.topics.get(conn.topic)
            self.topics[conn.topic] = BagTopic(conn.topic, conn.msgtype, (old.count if old else 0) + conn.msgcount)
        self._warn_undecodable()
        self.cameras = self._find_cameras()
        self.image_topics: dict[str, tuple[str, bool]] = {}
        missing = []
        for cam in self.cameras:
            raw, comp = self.map.image_topic(cam), self.map.compressed_topic(cam)
            if raw and raw in self.topics:
                self.image_topics[cam] = (raw, False)
            elif comp and comp in self.topics:
                self.image_topics[cam] = (comp, True)
            else:
                missing.append(' or '.join(t for t in (raw, comp) if t))
            if self.map.info_topic(cam) not in self.topics:
                missing.append(self.map.info_topic(cam))
        if missing:
            self._refuse(f'camera topic(s) {missing} are missing')
        masks = self.map.mask_files
        if masks and len(masks) != len(self.cameras):
            self.close()
            raise BagInputError(f'mask files: {len(masks)} given for the {len(self.cameras)} cameras {self.cameras} '
                                f'of bag {str(self.path)!r}; give one ego-body mask image per camera, in this order '
                                f'(--mask-files, data.mask_files)')
        self._check_types()

    # ------------------------------------------------------------------------------------------ topics
    def _warn_undecodable(self) -> None:
        """Name the topics whose type cannot be decoded, once per bag and process; they are skipped."""
        skipped = {t.name: t.msgtype for t in self.topics.values() if not self.types.decodable(t.msgtype)}
        key = (str(self.path.resolve()), tuple(sorted(skipped)))
        if skipped and key not in _WARNED:
            _WARNED.add(key)
            logging.getLogger('surround_depth.bag').warning(
                f'bag {str(self.path)!r}: skipping topics whose message type cannot be decoded here: '
                f'{self.types.describe_undecodable(skipped)} (standard types from the {self.types.source})')

    def _refuse(self, problem: str, fix: str = '') -> None:
        self.close()
        fix = fix or ('pass --topic-map with the topics this bag uses (see '
                      'surround_depth_train/data/rosbag/topic_map.py), or convert the data with `python -m surround_depth_ros.convert`')
        raise BagInputError(f'bag {str(self.path)!r}: {problem}. The bag has: {describe_topics(self.topics)}. '
                            f'Fix: {fix}')

    def _find_cameras(self) -> list[str]:
        if self.map.cameras:
            return list(self.map.cameras)
        rig_file = (self.path if self.path.is_dir() else self.path.parent) / 'rig.yaml'
        if rig_file.is_file():
            try:
                return CameraRig.from_yaml(rig_file).names
            except RigError:
                pass
        names = [c for c in (self.map.camera_of_info_topic(t) for t in self.topics) if c]
        infos = [c for c in names if self.topics[self.map.info_topic(c)].msgtype == INFO_TYPE]
        if not infos:
            self._refuse(f'no camera topics: no {INFO_TYPE} on {self.map.camera_info!r} (with {{cam}} a camera '
                         f'name)')
        return infos

    def _check_types(self) -> None:
        expected = {}
        for cam in self.cameras:
            topic, compressed = self.image_topics[cam]
            expected[topic] = COMPRESSED_TYPE if compressed else IMAGE_TYPE
            expected[self.map.info_topic(cam)] = INFO_TYPE
        for topic, msgtype in ((self.map.lidar, CLOUD_TYPE), (self.map.odom, ODOM_TYPE), (self.map.tf, TF_TYPE),
                               (self.map.tf_static, TF_TYPE)):
            if topic and topic in self.topics:
                expected[topic] = msgtype
        wrong = [f'{t} is {self.topics[t].msgtype}, not {m}' for t, m in expected.items()
                 if self.topics[t].msgtype != m]
        if wrong:
            self._refuse(f'unexpected message types: {"; ".join(wrong)}')
        lost = {t: self.topics[t].msgtype for t in expected if not self.types.decodable(self.topics[t].msgtype)}
        if lost:
            self._refuse(f'topics it needs cannot be decoded: {self.types.describe_undecodable(lost)}',
                         're-record the bag with message definitions stored (ros2 bag of Iron or newer), or '
                         're-convert it with `python -m surround_depth_ros.convert`')

    @property
    def has_lidar(self) -> bool:
        return bool(self.map.lidar) and self.map.lidar in self.topics

    @property
    def odometry_topic(self) -> str | None:
        return self.map.odom if self.map.odom and self.map.odom in self.topics else None

    def require(self, *, lidar: bool = True, ego_motion: bool = True) -> None:
        """Refuse the bag (one message) when it lacks the LiDAR or any source of ego motion."""
        if lidar and not self.has_lidar:
            self._refuse(f'no LiDAR: topic {self.map.lidar!r} ({CLOUD_TYPE}) is missing, and depth is evaluated '
                         f'against the LiDAR', 'record the LiDAR, or name its topic with lidar: in a --topic-map')
        if ego_motion and self.odometry_topic is None and self.map.tf not in self.topics:
            self._refuse(f'no ego motion: neither {self.map.odom!r} ({ODOM_TYPE}) nor {self.map.tf!r} '
                         f'({self.map.odom_frame} -> {self.map.base_frame}) is in the bag',
                         'record odometry or TF, or name their topics and frames in a --topic-map')

    def compressed(self, camera: str) -> bool:
        return self.image_topics[camera][1]

    # ------------------------------------------------------------------------------------------ reading
    def _messages(self, topic_names: set[str], start: int | None = None,
                  stop: int | None = None) -> Iterator[tuple[str, int, Any]]:
        conns = [c for c in self._reader.connections if c.topic in topic_names and self.types.decodable(c.msgtype)]
        if not conns:
            return
        done = 0
        try:
            for conn, log_ns, raw in self._reader.messages(connections=conns, start=start, stop=stop):
                msg = self.types.deserialize(raw, conn.msgtype)
                done += 1
                yield conn.topic, log_ns, msg
        except Exception as exc:  # noqa: BLE001 - see __init__
            if isinstance(exc, (BagInputError, InputError, KeyboardInterrupt)):
                raise
            raise BagInputError(f'bag {str(self.path)!r} is truncated or damaged: reading stopped after {done} '
                                f'messages of {sorted(topic_names)} ({type(exc).__name__}: '
                                f'{str(exc).splitlines()[0] if str(exc) else "no detail"}); re-record or '
                                f're-convert it') from None

    def read_context(self, *, lidar: bool = True, tolerance: float = 0.05) -> BagContext:
        """Pass 1 (module docstring): mounts, ego motion, LiDAR sweeps in base_link (with ``lidar``; else only the
        LiDAR's frame), first camera_info each."""
        m = self.map
        mounts, transforms, sweeps = StaticFrames(), TransformBuffer(tolerance=tolerance), LidarSweeps()
        odom = self.odometry_topic
        wanted = {t for t in (m.tf, m.tf_static, odom) if t and t in self.topics}
        wanted |= {m.info_topic(c) for c in self.cameras}
        info_topics = {m.info_topic(c): c for c in self.cameras}
        clouds: list[tuple[float, str, np.ndarray]] = []
        if self.has_lidar:
            wanted.add(m.lidar)
        ctx = BagContext(mounts, transforms, sweeps, ego_source=odom or f'{m.tf} ({m.odom_frame} -> {m.base_frame})')
        for topic, _, msg in self._messages(wanted):
            if topic == m.tf_static:
                for _, parent, child, T in tf_entries(msg):
                    mounts.add(parent, child, T)
            elif topic == m.tf:
                for stamp, parent, child, T in tf_entries(msg):
                    if (parent, child) == (m.odom_frame, m.base_frame):
                        if odom is None:
                            transforms.set_transform(parent, child, stamp, T)
                    else:  # a sensor mount published on /tf (some converters): the first one holds
                        mounts.add(parent, child, T, replace=False)
            elif topic == odom:
                try:
                    ns, T = odometry_to_matrix(msg)
                except InputError:
                    continue  # a broken pose: the neighbours interpolate across it
                transforms.set_transform(m.odom_frame, m.base_frame, ns * 1e-9, T)
            elif topic in info_topics:
                ctx.infos.setdefault(info_topics[topic], msg)
            elif topic == m.lidar:
                if not lidar:  # only the frame, for the rig
                    ctx.lidar_frame = ctx.lidar_frame or str(msg.header.frame_id).lstrip('/')
                    continue
                try:
                    clouds.append((stamp_to_ns(msg.header.stamp) * 1e-9, str(msg.header.frame_id).lstrip('/'),
                                   cloud_to_xyz(msg)))
                except InputError:
                    continue
        for stamp, frame, xyz in clouds:  # the mounts may come after the first sweeps
            ctx.lidar_frame = frame
            T = np.eye(4) if frame in ('', m.base_frame) else self._mount(mounts, frame, 'LiDAR')
            sweeps.add(stamp, transform_points(T, xyz.astype(np.float64)).astype(np.float32))
        return ctx

    def _mount(self, mounts: StaticFrames, frame: str, what: str) -> np.ndarray:
        try:
            return mounts.lookup(self.map.base_frame, frame)
        except LookupError:
            rig = self.beside_rig()
            if rig is not None:
                for cam in rig.cameras:
                    if cam.frame_id == frame:
                        return cam.T_base_cam
                if rig.lidar is not None and rig.lidar.frame_id == frame:
                    return rig.lidar.T_base_lidar
            self._refuse(f'the {what} frame {frame!r} has no transform to {self.map.base_frame!r} on '
                         f'{self.map.tf_static!r} or {self.map.tf!r}, and no rig.yaml beside the bag names it',
                         'record /tf_static, or set base_frame in a --topic-map')
            raise  # unreachable: _refuse raises

    def beside_rig(self) -> CameraRig | None:
        rig_file = (self.path if self.path.is_dir() else self.path.parent) / 'rig.yaml'
        try:
            return CameraRig.from_yaml(rig_file) if rig_file.is_file() else None
        except RigError:
            return None

    def rig(self, ctx: BagContext) -> CameraRig:
        """The rig as recorded: each camera's ``K``, size and distortion from its first ``camera_info``, its mount
        from TF (or the rig file beside the bag), the LiDAR's mount likewise."""
        from surround_depth_train.data.rosbag.messages import camera_info_to_intrinsics

        cameras = []
        for cam in self.cameras:
            info = ctx.infos.get(cam)
            if info is None:
                self._refuse(f'camera {cam} has no camera_info message')
            try:
                intr = camera_info_to_intrinsics(info, cam)
            except InputError as exc:
                self._refuse(f'camera {cam}: {exc}')
            frame = str(info.header.frame_id).lstrip('/') or f'{cam}_optical_frame'
            w, h = intr.size
            cameras.append(Camera(name=cam, K=intr.K, width=w, height=h,
                                  T_base_cam=self._mount(ctx.mounts, frame, f'camera {cam}'),
                                  distortion=np.asarray(intr.D, dtype=np.float64) if intr.D is not None
                                  else np.zeros(5), frame_id=frame))
        lidar = None
        if ctx.lidar_frame:
            T = np.eye(4) if ctx.lidar_frame == self.map.base_frame else \
                self._mount(ctx.mounts, ctx.lidar_frame, 'LiDAR')
            lidar = LidarMount(ctx.lidar_frame, T)
        return CameraRig(cameras, self.map.base_frame, lidar)

    def camera_messages(self, log_time: bool = False) -> Iterator[tuple]:
        """Pass 2: ``(kind, camera, stamp ns, msg)`` for images (``kind='image'``) and ``camera_info``
        (``kind='info'``) in recording order, the header stamp in integer nanoseconds as the synchroniser takes it;
        with ``log_time`` the recording time (ns) comes fifth."""
        which = {}
        for cam in self.cameras:
            which[self.image_topics[cam][0]] = ('image', cam)
            which[self.map.info_topic(cam)] = ('info', cam)
        for topic, log_ns, msg in self._messages(set(which)):
            kind, cam = which[topic]
            item = (kind, cam, stamp_to_ns(msg.header.stamp), msg)
            yield (*item, log_ns) if log_time else item

    def images_at(self, wanted: dict[str, int]) -> dict[str, Any]:
        """``{camera: image message}`` for the images recorded at the given log times (ns), read by time range."""
        topics_ = {self.image_topics[c][0]: c for c in wanted}
        lo, hi = min(wanted.values()), max(wanted.values())
        found = {}
        for topic, log_ns, msg in self._messages(set(topics_), start=lo, stop=hi + 1):
            cam = topics_[topic]
            if log_ns == wanted[cam]:
                found[cam] = msg
        missing = sorted(set(wanted) - set(found))
        if missing:
            raise BagInputError(f'bag {str(self.path)!r}: the images of {missing} at {lo} ns could not be read back; '
                                f'the bag changed since it was indexed')
        return found

    def close(self) -> None:
        reader = getattr(self, '_reader', None)
        if reader is not None:
            try:
                reader.close()
            except Exception:  # noqa: BLE001 - closing a damaged bag may fail again; nothing is left to do
                pass
            self._reader = None

    def __enter__(self) -> 'BagSource':
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def sync_sets(source: BagSource, sync, log_times: bool = False) -> Any:
    """Camera sets of the bag's images as the node's synchroniser forms them, the bag's stamps as its clock. Each
    frame's ``image`` is the image message, or with ``log_times`` its recording time (ns) to read it back later."""
    now = None  # the node's clock under replay: the newest stamp so far, in seconds (it only measures timeouts)
    for kind, cam, stamp_ns, msg, log_ns in source.camera_messages(log_time=True):
        now = stamp_ns * 1e-9 if now is None else max(now, stamp_ns * 1e-9)
        if kind == 'image':
            yield from sync.add_image(cam, stamp_ns, log_ns if log_times else msg, now)
        else:
            yield from sync.add_info(cam, stamp_ns, msg, now)
    if now is not None:  # the rig falls quiet at the end: let the timeouts run out so the last sets go out
        for k in range(1, 4):
            yield from sync.poll(now + k * (sync.timeout + 1.0))
