"""The live evaluator node: the node's published depth against the LiDAR of a replayed bag, over DDS.

It subscribes to what a user's RViz would see, not to the model: per camera ``/<cam>/depth/image`` and
``/<cam>/depth/camera_info`` (paired by stamp), the bag's LiDAR (``/lidar/points``, in the frame of the rig file's
``lidar:`` mount or base_link) and odometry (``/odom``), the node's fused cloud and ``/diagnostics``. Each depth
image is scored by :class:`~surround_depth_ros.bag.scoring.DepthScorer`, the scorer of the offline bag evaluator,
once the ego motion at its stamp has arrived; so the real ROS path (synchroniser, QoS, stamps, frames, dropped
sets) is what is measured. The report is the evaluation command's layout plus the diagnostics seen and a bird's-eye
view of the node's cloud over the LiDAR sweep.
"""
from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray
from nav_msgs.msg import Odometry
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, Image, PointCloud2

from surround_depth_train.data.rosbag import topics
from surround_depth_ros.bag.scoring import DepthScorer
from surround_depth_train.data.rosbag.messages import (InputError, camera_info_to_intrinsics, cloud_to_xyz,
                                                       depth_image_to_array, odometry_to_matrix, stamp_to_ns,
                                                       unpack_cloud)
from surround_depth_train.geometry.rig import Camera, CameraRig
from surround_depth_train.geometry.transforms import TransformBuffer, transform_points

__all__ = ['LiveEvaluator', 'write_live_report', 'diagnostics_table']


class LiveEvaluator(Node):
    """Scores the node's depth outputs against the replayed LiDAR (module docstring).

    Args:
        rig: camera names, order and mounts (the node's rig file), with the LiDAR mount.
        min_depth, max_depth, masks, max_lidar_gap: as :class:`DepthScorer`.
        odom_topic, lidar_topic, base_frame, odom_frame: where the bag's data comes in.
    """

    def __init__(self, rig: CameraRig, *, min_depth: float = 0.5, max_depth: float = 80.0,
                 masks: dict | None = None, max_lidar_gap: float = 0.15, odom_topic: str = topics.ODOM_TOPIC,
                 lidar_topic: str = topics.LIDAR_TOPIC, base_frame: str = topics.BASE_FRAME,
                 odom_frame: str = topics.ODOM_FRAME, **kwargs: Any):
        super().__init__('surround_depth_live_evaluator', **kwargs)
        self.rig = rig
        self.scorer = DepthScorer(rig.names, min_depth=min_depth, max_depth=max_depth, masks=masks,
                                  odom_frame=odom_frame, base_frame=base_frame, max_lidar_gap=max_lidar_gap)
        self.lock = threading.Lock()
        self._depth: dict[tuple[str, int], Any] = {}
        self._info: dict[tuple[str, int], Any] = {}
        self._pending: list[tuple[str, int, Any, Any]] = []
        self.received = {'depth': 0, 'lidar': 0, 'odom': 0, 'cloud': 0, 'diagnostics': 0}
        self.last_output = None  # monotonic time of the last depth image
        self.diagnostics: dict[str, dict] = {}
        self.diagnostics_during: dict[str, dict] = {}
        self.cloud_picture: dict | None = None
        self.problems: dict[str, int] = {}
        qos = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
        for cam in rig.names:
            self.create_subscription(Image, topics.depth_topic(cam), lambda m, c=cam: self._on_depth(c, m), qos)
            self.create_subscription(CameraInfo, topics.depth_info_topic(cam), lambda m, c=cam: self._on_info(c, m),
                                     qos)
        self.create_subscription(PointCloud2, lidar_topic, self._on_lidar, qos)
        self.create_subscription(Odometry, odom_topic, self._on_odom, qos)
        self.create_subscription(PointCloud2, topics.CLOUD_TOPIC, self._on_cloud, qos)
        self.create_subscription(DiagnosticArray, topics.DIAGNOSTICS_TOPIC, self._on_diagnostics, 10)
        self._clouds: list[tuple[float, Any]] = []

    # ---------------------------------------------------------------------------------------------- inputs
    def _problem(self, text: str) -> None:
        self.problems[text] = self.problems.get(text, 0) + 1

    def _on_depth(self, cam: str, msg: Any) -> None:
        key = (cam, stamp_to_ns(msg.header.stamp))
        with self.lock:
            self.received['depth'] += 1
            self.last_output = time.monotonic()
            info = self._info.pop(key, None)
            if info is None:
                self._depth[key] = msg
            else:
                self._pending.append((cam, key[1], msg, info))
        self.score_ready()

    def _on_info(self, cam: str, msg: Any) -> None:
        key = (cam, stamp_to_ns(msg.header.stamp))
        with self.lock:
            depth = self._depth.pop(key, None)
            if depth is None:
                self._info[key] = msg
            else:
                self._pending.append((cam, key[1], depth, msg))
        self.score_ready()

    def _on_lidar(self, msg: Any) -> None:
        frame = str(msg.header.frame_id)
        if frame == self.rig.base_frame:
            T = np.eye(4)
        elif self.rig.lidar is not None and frame == self.rig.lidar.frame_id:
            T = self.rig.lidar.T_base_lidar
        else:
            self._problem(f'LiDAR in frame {frame!r}, whose mount the rig file does not give')
            return
        try:
            xyz = cloud_to_xyz(msg)
        except InputError as exc:
            self._problem(str(exc))
            return
        stamp = stamp_to_ns(msg.header.stamp) * 1e-9
        with self.lock:
            self.received['lidar'] += 1
            self._replay_running()
            sweeps = self.scorer.sweeps
            if len(sweeps) and stamp < sweeps.stamps[-1] - 1.0:  # the replay looped: a new drive
                del sweeps.stamps[:], sweeps.points[:]
            sweeps.forget_before(stamp - 10.0)  # bounded memory on long replays
            sweeps.add(stamp, transform_points(T, xyz.astype(np.float64)).astype(np.float32))
        self.score_ready()

    def _on_odom(self, msg: Any) -> None:
        try:
            ns, T = odometry_to_matrix(msg)
        except InputError as exc:
            self._problem(str(exc))
            return
        stamp, frames = ns * 1e-9, (self.scorer.odom_frame, self.scorer.base_frame)
        with self.lock:
            self.received['odom'] += 1
            self._replay_running()
            try:
                lo, hi = self.scorer.transforms.time_range(*frames)
                if stamp < hi - 1.0:  # the replay looped: forget the old trajectory (as the node does)
                    self.scorer.transforms = TransformBuffer(tolerance=0.05)
                elif stamp - lo > 30.0:
                    self.scorer.transforms.forget_before(stamp - 10.0)
            except LookupError:
                pass
            self.scorer.transforms.set_transform(*frames, stamp, T)
        self.score_ready()

    def _on_cloud(self, msg: Any) -> None:
        with self.lock:
            self.received['cloud'] += 1
            if self.cloud_picture is None and len(self._clouds) < 5:
                self._clouds.append((stamp_to_ns(msg.header.stamp) * 1e-9, msg))

    def _replay_running(self) -> None:
        """A replayed message (odometry, LiDAR) arrived: the statuses received so far were published while the bag
        still played, so they are what was true while the node had input (the caller holds the lock)."""
        self.diagnostics_during = dict(self.diagnostics)

    def _on_diagnostics(self, msg: Any) -> None:
        with self.lock:
            self.received['diagnostics'] += 1
            # "during" (self.diagnostics_during): the latest statuses before the last replayed message, so never the
            # silent cameras after the replay ended; "at the end" (self.diagnostics): the latest of all
            for status in msg.status:
                level = status.level[0] if isinstance(status.level, (bytes, bytearray)) else int(status.level)
                self.diagnostics[status.name] = {'level': int(level), 'message': status.message,
                                                 'values': {kv.key: kv.value for kv in status.values}}

    # ---------------------------------------------------------------------------------------------- scoring
    def _ready(self, stamp: float) -> bool:
        try:
            _, hi = self.scorer.transforms.time_range(self.scorer.odom_frame, self.scorer.base_frame)
        except LookupError:
            return False
        return hi >= stamp

    def score_ready(self, flush: bool = False) -> None:
        """Score the depth images whose ego motion has arrived (all of them with ``flush``)."""
        with self.lock:
            ready = [flush or self._ready(p[1] * 1e-9) for p in self._pending]
            todo = [p for p, r in zip(self._pending, ready) if r]
            self._pending = [p for p, r in zip(self._pending, ready) if not r]
            for cam, ns, depth_msg, info_msg in todo:
                try:
                    depth = depth_image_to_array(depth_msg, cam)
                    intr = camera_info_to_intrinsics(info_msg, cam)
                except InputError as exc:
                    self._problem(str(exc))
                    continue
                h, w = depth.shape
                mount = self.rig[cam]
                camera = Camera(name=cam, K=intr.K, width=w, height=h, T_base_cam=mount.T_base_cam,
                                frame_id=mount.frame_id)
                self.scorer.score(camera, ns * 1e-9, depth)
            if self.cloud_picture is None:
                self._cloud_picture()

    def _cloud_picture(self) -> None:
        for stamp, msg in self._clouds:
            found = self.scorer.sweeps.before(stamp)
            if found is None:
                continue
            try:
                T = self.scorer.transforms.motion_compensation(self.scorer.odom_frame, self.scorer.base_frame,
                                                               found[0], stamp)
            except LookupError:
                continue
            arr = unpack_cloud(msg.fields, msg.point_step, msg.data, bool(msg.is_bigendian))
            points = np.stack([arr['x'], arr['y'], arr['z']], axis=1).astype(np.float32)
            self.cloud_picture = {'cloud': {'points': points, 'camera': np.asarray(arr['camera']).astype(int)},
                                  'lidar': transform_points(T, found[1].astype(np.float64)), 'stamp': stamp}
            self._clouds.clear()
            return

    def result(self) -> dict[str, Any]:
        """The result dict in the evaluation command's layout (``report.render_markdown``)."""
        self.score_ready(flush=True)
        with self.lock:
            pipeline = next((d for n, d in self.diagnostics.items() if n.endswith(': pipeline')), None)
            during = next((d for n, d in self.diagnostics_during.items() if n.endswith(': pipeline')), None)
            values = (pipeline or {}).get('values', {})
            model_ms = _float(values.get('model_ms_median'))
            cams = self.rig.names
            sizes = sorted({f'{c.width} x {c.height}' for c in self.rig})
            return {
                'model': {'path': 'the running surround_depth_node', 'name': 'surround_depth_node (live)',
                          'parameters': None},
                'dataset': {'name': 'replayed bag (live, over DDS)', 'split': 'all',
                            'samples': int(_float(values.get('sets_published')) or 0),
                            'image_size': ['-', '-'], 'gt_resolution': ', '.join(sizes) + ' (native)',
                            'min_depth': self.scorer.min_depth, 'max_depth': self.scorer.max_depth,
                            'cameras': cams},
                'lidar': self.scorer.accumulator.summary(),
                'dense': None,
                'nonfinite': self.scorer.nonfinite_summary(),
                'consistency': None,
                'latency': {'median_ms': model_ms, 'runs': values.get('sets_published', '?'),
                            'device': "the node's device (its /diagnostics model_ms_median)",
                            'end_to_end_ms_median': _float(values.get('end_to_end_ms_median'))},
                'frames': list(self.scorer.records),
                'live': {'received': dict(self.received), 'unscored': dict(self.scorer.unscored),
                         'problems': dict(self.problems), 'diagnostics': dict(self.diagnostics),
                         'diagnostics_during': dict(self.diagnostics_during),
                         'pipeline_during': (during or {}).get('values', {})},
            }


def _float(value: Any) -> float | None:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v if np.isfinite(v) else None


def diagnostics_table(live: dict[str, Any], at_the_end: bool = True) -> str:
    """Markdown: each status of the node as it last stood while the bag played (published before the last
    replayed message); with ``at_the_end`` also the last one received, after the replay (the cameras are silent
    by then, as they should be)."""
    names = ('OK', 'WARN', 'ERROR', 'STALE')
    fmt = (lambda d: '-' if d is None else f'{names[min(d["level"], 3)]}: {d["message"]}')  # noqa: E731
    during, last = live.get('diagnostics_during', {}), live['diagnostics']
    if not at_the_end:
        rows = ['| status | while the bag played (the last status before the replay ended) |', '|---|---|']
        return '\n'.join(rows + [f'| {name} | {fmt(during[name])} |' for name in sorted(during)])
    rows = ['| status | while the bag played (the last status before the replay ended) | at the end, after the '
            'replay (silent cameras expected) |', '|---|---|---|']
    for name in sorted(set(during) | set(last)):
        rows.append(f'| {name} | {fmt(during.get(name))} | {fmt(last.get(name))} |')
    return '\n'.join(rows)


def write_live_report(out_dir: str | Path, result: dict[str, Any], cloud_picture: dict | None) -> Path:
    """The offline report's files (``results.json``, ``results.md``, ``pictures/``) plus the diagnostics seen."""
    from surround_depth_ros.bag.evaluation import write_report
    from surround_depth_train.evaluation.report import save_bev

    out = Path(out_dir)
    (out / 'pictures').mkdir(parents=True, exist_ok=True)
    result = dict(result)
    extra = []
    if cloud_picture is not None:
        save_bev(out / 'pictures' / 'bev_live.png', cloud_picture['cloud'], cloud_picture['lidar'],
                 list(result['dataset']['cameras']),
                 f'node cloud at {cloud_picture["stamp"]:.3f} s (colours) vs replayed LiDAR (grey)')
        extra += ['', '## The node\'s fused cloud', '', '![bev_live](pictures/bev_live.png)']
    live = result['live']
    extra += ['', '## Diagnostics seen', '', diagnostics_table(live), '']
    lat = result['latency']
    extra += ['', f'Node latency (its /diagnostics): model {lat["median_ms"]} ms median, end to end '
                  f'{lat.get("end_to_end_ms_median")} ms median. Received: '
                  + ', '.join(f'{k} {v}' for k, v in live['received'].items())
                  + '. Unscored images: ' + (', '.join(f'{n} x {k}' for k, n in live['unscored'].items()) or 'none')
                  + '.']
    if result['latency']['median_ms'] is None:
        result['latency'] = dict(lat, median_ms=None)
    return write_report(out, result, [], title_extra='\n'.join(extra) + '\n')

