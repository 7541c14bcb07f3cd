"""surround_depth_node: six synchronised cameras in, metric depth per camera and one fused cloud out.

A thin rclpy adapter over the ROS-free core: :class:`~surround_depth_train.data.rosbag.sync.ApproximateTimeSync`
pairs images with their CameraInfo and groups the cameras, :class:`~surround_depth_ros.worker.InferenceWorker` runs
:class:`~surround_depth_ros.pipeline.DepthPipeline` on the newest set on its own thread (the executor never waits
for inference; under overload older sets are dropped and counted), and the results go out as messages. Every
parameter is declared up front from :class:`~surround_depth_ros.node_config.NodeConfig`.

Run: ``ros2 run surround_depth_ros surround_depth_node --ros-args --params-file config/depth_node.yaml`` (or the
launch file), or ``python -m surround_depth_ros.node --ros-args ...`` where no ROS 2 install provides ``ros2``.
"""
from __future__ import annotations

import statistics
import sys
import threading
import time
from collections import deque
from dataclasses import fields, replace
from typing import Any, NoReturn

import numpy as np
import rclpy
import rclpy.time
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import ParameterDescriptor, SetParametersResult
from rclpy.exceptions import InvalidParameterTypeException
from rclpy.executors import ExternalShutdownException, ShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile, ReliabilityPolicy, HistoryPolicy, qos_profile_sensor_data
from rclpy.signals import SignalHandlerOptions
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2

from surround_depth_ros.engine import DepthEngine, EngineError
from surround_depth_ros.health import DIAGNOSTIC_LEVELS, DepthHealthMonitor
from surround_depth_ros.messages import (cloud_fields, colorized_image_fields, confidence_image_fields,
                                         depth_camera_info_fields, depth_image_fields, fill_message)
from surround_depth_ros.node_config import RUNTIME_PARAMETERS, NodeConfig, NodeConfigError
from surround_depth_ros.pipeline import CloudSettings, DepthPipeline, SetOutput
from surround_depth_ros.teardown import bounded_teardown, exit_process, stop_on_signals
from surround_depth_ros.worker import InferenceWorker
from surround_depth_train.allocator import describe_allocator, ensure_allocator_settings
from surround_depth_train.data.rosbag import topics
from surround_depth_train.data.rosbag.frames import FrameDecoder, load_mask
from surround_depth_train.data.rosbag.messages import (InputError, cloud_to_xyz, odometry_to_matrix, stamp_to_ns,
                                                       stamp_to_sec)
from surround_depth_train.data.rosbag.sync import ApproximateTimeSync, CameraSet
from surround_depth_train.geometry.rig import CameraRig, RigError
from surround_depth_train.geometry.transforms import TransformBuffer, make_transform
from surround_depth_train.models.modelfile import is_onnx_file
from surround_depth_train.resources import resolve_path

__all__ = ['SurroundDepthNode', 'NodeStartError', 'main']

NODE_NAME = 'surround_depth_node'
_ARRAY_TYPES = {'input_size': Parameter.Type.INTEGER_ARRAY}
_OK, _WARN, _ERROR = (bytes([v]) for v in (0, 1, 2))


class NodeStartError(RuntimeError):
    """The node cannot start with its parameters; the message says which and what to do."""

    half_built: Node | None = None  # the node that refused, still to be destroyed


def _qos(reliability: str, depth: int) -> QoSProfile:
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth,
                      reliability=ReliabilityPolicy.RELIABLE if reliability == 'reliable' else
                      ReliabilityPolicy.BEST_EFFORT)


def _status(name: str, level: bytes, message: str, values: dict[str, Any]) -> DiagnosticStatus:
    return DiagnosticStatus(level=level, name=f'{NODE_NAME}: {name}', message=message, hardware_id=NODE_NAME,
                            values=[KeyValue(key=k, value=str(v)) for k, v in values.items()])


class SurroundDepthNode(Node):
    """The node; see the module docstring and the README's node section."""

    def __init__(self, **kwargs: Any):
        super().__init__(NODE_NAME, **kwargs)
        try:
            self._start()
        except NodeStartError as exc:
            exc.half_built = self  # main() destroys it after the error line, not the interpreter's exit
            raise

    def _start(self) -> None:
        self.config = self._declare_parameters()
        self.rig = self._load_rig()
        self.cameras = list(self.config.cameras or self.rig.names)
        missing = [c for c in self.cameras if c not in self.rig.names]
        if missing:
            raise NodeStartError(f'cameras {missing} are not in the rig file {self.config.rig_file} '
                                 f'(cameras {self.rig.names}); fix the cameras parameter or the rig')
        self.engine = self._load_engine()
        masks = self._load_masks()
        self.pipeline = DepthPipeline(self.engine, self.rig, masks=masks, settings=self._cloud_settings(),
                                      base_frame=self.config.base_frame, odom_frame=self.config.odom_frame)
        self.decoder = FrameDecoder()
        self.sync = ApproximateTimeSync(self.cameras, slop=self.config.slop, queue_size=self.config.queue_size,
                                        timeout=self.config.timeout)
        self.transforms = TransformBuffer(tolerance=0.05)
        self._tf_lock = threading.Lock()
        self.health = None
        if self.config.lidar_topic:
            self.health = DepthHealthMonitor(camera_names=self.cameras, window=self.config.health_window,
                                             scale_threshold=self.config.health_scale_threshold,
                                             abs_rel_threshold=self.config.health_abs_rel_threshold,
                                             max_lidar_age=self.config.health_max_lidar_age)
        self._lidar_mount = self._load_lidar_mount()
        self._tf_buffer = self._tf_listener = None
        self._tf_resolved: set[str] = set()
        if self.config.extrinsics_from_tf:
            try:
                import tf2_ros

                self._tf_buffer = tf2_ros.Buffer()
                self._tf_listener = tf2_ros.TransformListener(self._tf_buffer, self)
            except ImportError:
                self.get_logger().warning('extrinsics_from_tf: tf2_ros is not importable here; the rig file\'s '
                                          'extrinsics are used')
        self._logged: set[tuple[str, str]] = set()
        self.bad_frames = {c: 0 for c in self.cameras}
        self.model_ms: deque[float] = deque(maxlen=100)
        self.e2e_ms: deque[float] = deque(maxlen=100)         # newest input of a set in -> its outputs out
        self.processing_ms: deque[float] = deque(maxlen=100)  # set handed to the worker -> outputs out
        self.sync_wait_ms: deque[float] = deque(maxlen=100)   # newest input in -> set proven and handed over
        self.sets_published = 0
        self.lidar_sweeps = 0      # taken by the health monitor (diagnostics: is the LiDAR reaching the node?)
        self.odometry_poses = 0
        self._create_publishers()
        self._create_subscriptions()
        self.worker = InferenceWorker(self._process, capacity=1, log_error=self.get_logger().error,
                                     start=False)  # main() runs it in the main thread
        self.create_timer(0.05, self._poll_sync)
        self.create_timer(self.config.diagnostics_period, self._publish_diagnostics)
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self.get_logger().info(
            f'{self.engine.name} on {self.engine.device} ({self.config.precision}, {self.config.backend}), input '
            f'{self.engine.input_size[1]}x{self.engine.input_size[0]}'
            f'{"" if self.config.bins_downsample == 1 else f", bins at 1/{self.config.bins_downsample}"}; cameras {self.cameras}; outputs '
            f'{self.config.publish}; allocator: {describe_allocator()}')

    # -------------------------------------------------------------------------------------------- set-up
    def _declare_parameters(self) -> NodeConfig:
        defaults = NodeConfig()
        values = {}
        for f in fields(NodeConfig):
            default = getattr(defaults, f.name)
            # a float parameter takes an int too (-p min_depth:=5); NodeConfig.from_mapping makes it a float
            descriptor = ParameterDescriptor(read_only=f.name not in RUNTIME_PARAMETERS,
                                             dynamic_typing=isinstance(default, float))
            try:
                if isinstance(default, list) and not default:
                    self._declare_empty_list(f.name, _ARRAY_TYPES.get(f.name, Parameter.Type.STRING_ARRAY),
                                             read_only=descriptor.read_only)
                else:
                    self.declare_parameter(f.name, default, descriptor)
            except InvalidParameterTypeException as exc:
                problem = str(exc).rsplit(':', 1)[0]
                raise NodeStartError(f'parameter {f.name}: {problem}; give a value of that type (default '
                                     f'{default!r}, config/depth_node.yaml)') from None
            param = self.get_parameter_or(f.name, Parameter(f.name, value=default))
            value = param.value if param.type_ != Parameter.Type.NOT_SET else default
            values[f.name] = list(value) if isinstance(default, list) else value
        try:
            return NodeConfig.from_mapping(values)
        except NodeConfigError as exc:
            raise NodeStartError(str(exc)) from None

    def _declare_empty_list(self, name: str, array_type: Parameter.Type, read_only: bool) -> None:
        """Declare a list parameter whose default is empty, so that ``get_parameters`` returns a typed ``[]``.

        rclpy cannot declare a typed empty list (it infers a byte array from ``[]``), and a parameter declared with
        a type but no value answers ``get_parameters``/``ros2 param get`` with nothing. So: declare it writable
        with its type, set ``[]`` of that type where no override gave a value, then make it read-only.
        """
        declared = self.declare_parameter(name, array_type, ParameterDescriptor(type=array_type.value))
        if declared.type_ == Parameter.Type.NOT_SET:
            result = self.set_parameters([Parameter(name, array_type, [])])[0]
            if not result.successful:
                raise NodeStartError(f'parameter {name}: cannot set its default [] ({result.reason})')
        self.set_descriptor(name, ParameterDescriptor(type=array_type.value, read_only=read_only))

    def _load_rig(self) -> CameraRig:
        if not self.config.rig_file:
            raise NodeStartError('rig_file is empty: give the rig YAML (camera names, order, extrinsics), e.g. '
                                 'config/rigs/surroundsim.yaml or the rig.yaml a converter wrote')
        try:
            return CameraRig.from_yaml(resolve_path(self.config.rig_file))
        except RigError as exc:
            raise NodeStartError(str(exc)) from None

    def _load_lidar_mount(self) -> dict[str, np.ndarray]:
        """``frame -> T_base_lidar`` from the rig file's optional ``lidar:`` entry."""
        import yaml

        with open(resolve_path(self.config.rig_file)) as f:
            data = yaml.safe_load(f) or {}
        lidar = data.get('lidar')
        if not isinstance(lidar, dict) or 'translation' not in lidar:
            return {}
        T = make_transform(np.asarray(lidar.get('rotation', [0, 0, 0, 1]), float), lidar['translation'])
        return {str(lidar.get('frame_id', topics.LIDAR_FRAME)): T}

    def _load_engine(self) -> DepthEngine:
        c = self.config
        if not c.model_file:
            raise NodeStartError('model_file is empty: give the model file to run (the model.pt a training run '
                                 'wrote, or an .onnx with backend: onnxruntime)')
        path = resolve_path(c.model_file)
        if path.is_file() and is_onnx_file(path) != (c.backend == 'onnxruntime'):
            kind, backend = ('an ONNX export', 'onnxruntime') if c.backend == 'torch' else ('not an ONNX export',
                                                                                             'torch')
            raise NodeStartError(f'model_file {path} is {kind} but backend is {c.backend}: set backend: {backend}, '
                                 f'or give a model_file for backend {c.backend} (torch: a model.pt; onnxruntime: an '
                                 f'.onnx from python -m surround_depth_train.export)')
        try:
            training_cameras = c.training_camera_map(self.cameras)
        except NodeConfigError as exc:
            raise NodeStartError(str(exc)) from None
        try:
            return DepthEngine(path, device=c.device, precision=c.precision, input_size=c.input_size or None,
                               backend=c.backend, allow_teacher=c.allow_teacher, bins_downsample=c.bins_downsample,
                               focal_correction=c.focal_correction,
                               focal_tolerance=c.focal_tolerance, onnx_providers=c.onnx_providers,
                               allow_provider_fallback=c.allow_provider_fallback, training_cameras=training_cameras,
                               logger=self.get_logger().warning)
        except (EngineError, OSError, ValueError) as exc:  # ValueError: the model or ONNX file's own errors
            raise NodeStartError(f'cannot load the model: {exc}') from None

    def _load_masks(self) -> dict[str, np.ndarray]:
        masks = {}
        for cam, path in zip(self.cameras, self.config.mask_files):
            if path:
                try:
                    masks[cam] = load_mask(resolve_path(path))
                except InputError as exc:
                    raise NodeStartError(str(exc)) from None
        return masks

    def _cloud_settings(self) -> CloudSettings:
        c = self.config
        return CloudSettings(min_depth=c.min_depth, max_depth=c.max_depth, confidence_threshold=c.confidence_threshold,
                             stride=c.cloud_stride, voxel_size=c.voxel_size, min_range=c.cloud_min_range,
                             max_range=c.cloud_max_range, rgb=c.cloud_rgb, confidence=c.cloud_confidence)

    def _create_publishers(self) -> None:
        c = self.config
        self.pub: dict[tuple[str, str], Any] = {}
        for cam in self.cameras:
            if 'depth' in c.publish:
                self.pub[('depth', cam)] = self.create_publisher(Image, topics.depth_topic(cam).lstrip('/'),
                                                                 _qos(c.qos_depth, c.qos_history))
            if 'depth_info' in c.publish:
                self.pub[('depth_info', cam)] = self.create_publisher(
                    CameraInfo, topics.depth_info_topic(cam).lstrip('/'), _qos(c.qos_depth, c.qos_history))
            if 'confidence' in c.publish:
                self.pub[('confidence', cam)] = self.create_publisher(
                    Image, topics.confidence_topic(cam).lstrip('/'), _qos(c.qos_confidence, c.qos_history))
            if 'colorized' in c.publish:
                self.pub[('colorized', cam)] = self.create_publisher(
                    Image, topics.colorized_topic(cam).lstrip('/'), _qos(c.qos_colorized, c.qos_history))
        if 'cloud' in c.publish:
            self.pub[('cloud', '')] = self.create_publisher(PointCloud2, c.cloud_topic.lstrip('/'),
                                                            _qos(c.qos_cloud, c.qos_history))
        self.diagnostics_pub = self.create_publisher(DiagnosticArray, topics.DIAGNOSTICS_TOPIC, 10)

    def _create_subscriptions(self) -> None:
        c = self.config
        msg_type = CompressedImage if c.compressed else Image
        for i, cam in enumerate(self.cameras):
            image_topic = c.image_topics[i] if c.image_topics else \
                (topics.compressed_topic(cam) if c.compressed else topics.image_topic(cam))
            info_topic = c.camera_info_topics[i] if c.camera_info_topics else topics.camera_info_topic(cam)
            self.create_subscription(msg_type, image_topic, lambda m, cam=cam: self._on_image(cam, m),
                                     qos_profile_sensor_data)
            self.create_subscription(CameraInfo, info_topic, lambda m, cam=cam: self._on_info(cam, m),
                                     qos_profile_sensor_data)
        if c.odom_topic:
            from nav_msgs.msg import Odometry

            self.create_subscription(Odometry, c.odom_topic, self._on_odometry, qos_profile_sensor_data)
        if c.lidar_topic:
            self.create_subscription(PointCloud2, c.lidar_topic, self._on_lidar, qos_profile_sensor_data)

    # -------------------------------------------------------------------------------------------- callbacks
    def _now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def _log_once(self, camera: str, message: str) -> None:
        key = (camera, message)
        if key not in self._logged and len(self._logged) < 1000:
            self._logged.add(key)
            self.get_logger().error(f'{message} (skipping such frames; logged once)')

    def _on_image(self, camera: str, msg: Any) -> None:
        sets = self.sync.add_image(camera, stamp_to_ns(msg.header.stamp), (msg, time.monotonic()), self._now())
        self._submit(sets)

    def _on_info(self, camera: str, msg: CameraInfo) -> None:
        self._submit(self.sync.add_info(camera, stamp_to_ns(msg.header.stamp), msg, self._now()))

    def _poll_sync(self) -> None:
        self._submit(self.sync.poll(self._now()))

    def _submit(self, sets: list[CameraSet]) -> None:
        for camera_set in sets:
            self.worker.submit((camera_set, time.monotonic()))

    def _on_odometry(self, msg: Any) -> None:
        try:
            stamp_ns, T = odometry_to_matrix(msg)
        except InputError as exc:
            self._log_once('odometry', str(exc))
            return
        stamp = stamp_ns * 1e-9
        with self._tf_lock:
            try:
                lo, hi = self.transforms.time_range(self.config.odom_frame, self.config.base_frame)
                if stamp < hi - 1.0:  # time jumped back (a bag loop): forget the old trajectory
                    self.transforms = TransformBuffer(tolerance=0.05)
                elif stamp - lo > 30.0:
                    self.transforms.forget_before(stamp - 10.0)
            except LookupError:
                pass
            self.transforms.set_transform(self.config.odom_frame, self.config.base_frame, stamp, T)
        self.odometry_poses += 1
        if self.health is not None:
            self.health.add_odometry(stamp, T)

    def _on_lidar(self, msg: PointCloud2) -> None:
        frame = msg.header.frame_id
        if frame == self.config.base_frame:
            T_base_lidar = np.eye(4)
        elif frame in self._lidar_mount:
            T_base_lidar = self._lidar_mount[frame]
        else:
            self._log_once('lidar', f'LiDAR cloud in frame {frame!r}, whose mount is unknown: add a lidar: entry '
                                    f'(frame_id, translation, rotation) to the rig file, or publish it in '
                                    f'{self.config.base_frame}')
            return
        try:
            points = cloud_to_xyz(msg)
        except InputError as exc:
            self._log_once('lidar', str(exc))
            return
        self.health.add_lidar(stamp_to_sec(msg.header.stamp), points, T_base_lidar)
        self.lidar_sweeps += 1

    def _on_set_parameters(self, params: list[Parameter]) -> SetParametersResult:
        changes = {p.name: p.value for p in params if p.name in RUNTIME_PARAMETERS}
        if not changes:
            return SetParametersResult(successful=True)
        try:
            candidate = replace(self.config, **{k: (float(v) if isinstance(getattr(self.config, k), float) else v)
                                                for k, v in changes.items()})
            candidate.validate_runtime()
            lo = candidate.min_depth or self.engine.depth_range[0]
            hi = candidate.max_depth or self.engine.depth_range[1]
            if lo >= hi:
                model_lo, model_hi = self.engine.depth_range
                raise NodeConfigError(f'min_depth/max_depth: the depth range would be empty ({lo} to {hi} m; 0 stands '
                                      f'for the model\'s {model_lo} to {model_hi} m)')
        except (NodeConfigError, TypeError, ValueError) as exc:  # ValueError: a float parameter set to text
            return SetParametersResult(successful=False, reason=str(exc))
        self.config = candidate
        self.pipeline.settings = self._cloud_settings()
        self.sync.slop, self.sync.timeout = candidate.slop, candidate.timeout
        if self.health is not None:
            self.health.scale_threshold = candidate.health_scale_threshold
            self.health.abs_rel_threshold = candidate.health_abs_rel_threshold
        self.get_logger().info(f'parameters changed: {changes}')
        return SetParametersResult(successful=True)

    # -------------------------------------------------------------------------------------------- worker
    def _process(self, item: tuple[CameraSet, float]) -> None:
        camera_set, handed_over = item
        c = self.config
        inputs, headers = [], {}
        received = 0.0
        for name, frame in camera_set.frames.items():
            msg, arrived = frame.image
            try:
                inputs.append(self.decoder.decode(name, msg, frame.info, compressed=c.compressed))
            except InputError as exc:
                self.bad_frames[name] += 1
                self._log_once(name, str(exc))
                continue
            headers[name] = msg.header
            received = max(received, arrived)
        if not inputs:
            return
        if self._tf_buffer is not None:
            self._extrinsics_from_tf(inputs)
        motion = None
        if c.odom_topic:
            with self._tf_lock:  # held for the lookups only: the executor never waits for inference
                motion = self.pipeline.motion_corrections(inputs, self.transforms)
        result = self.pipeline.run(inputs, want_confidence='confidence' in c.publish,
                                   want_cloud='cloud' in c.publish, motion=motion)
        self._publish(result, headers)
        done = time.monotonic()
        self.model_ms.append(result.timings_ms.get('model', float('nan')))
        self.e2e_ms.append(1e3 * (done - received))
        self.processing_ms.append(1e3 * (done - handed_over))
        self.sync_wait_ms.append(1e3 * (handed_over - received))
        self.sets_published += 1
        if self.health is not None:
            # the ego body is not scene: LiDAR points on it would bias the comparison (inputs and outputs align)
            self.health.update([o.stamp for o in result.cameras], [o.depth for o in result.cameras],
                               [self.pipeline.camera_for(o) for o in result.cameras],
                               masks=[self.pipeline.keep_mask(cam) for cam in inputs])

    def _extrinsics_from_tf(self, inputs: list) -> None:
        """Replace a camera's rig extrinsics by ``base_frame <- optical frame`` from /tf_static, once found."""
        for cam in inputs:
            if cam.name in self._tf_resolved or not cam.frame_id:
                continue
            try:
                tf = self._tf_buffer.lookup_transform(self.config.base_frame, cam.frame_id, rclpy.time.Time())
            except Exception:  # noqa: BLE001 - tf2's lookup errors: not published yet, keep the rig file's
                continue
            t, q = tf.transform.translation, tf.transform.rotation
            T = make_transform(np.array([q.x, q.y, q.z, q.w]), np.array([t.x, t.y, t.z]))
            index = self.rig.index(cam.name)
            self.rig.cameras[index] = replace(self.rig.cameras[index], T_base_cam=T)
            self._tf_resolved.add(cam.name)
            self.get_logger().info(f'{cam.name}: extrinsics from /tf_static ({self.config.base_frame} <- '
                                   f'{cam.frame_id}) replace the rig file\'s')

    def _publish(self, result: SetOutput, headers: dict[str, Any]) -> None:
        c = self.config
        lo, hi = self.pipeline.depth_limits()
        for out in result.cameras:
            header = headers[out.name]
            if not header.frame_id:
                header.frame_id = self.rig[out.name].frame_id
            h, w = out.depth.shape
            if ('depth', out.name) in self.pub:
                msg = fill_message(Image(header=header), depth_image_fields(out.depth))
                self.pub[('depth', out.name)].publish(msg)
            if ('depth_info', out.name) in self.pub:
                self.pub[('depth_info', out.name)].publish(
                    fill_message(CameraInfo(header=header), depth_camera_info_fields(out.K, w, h)))
            if ('confidence', out.name) in self.pub and out.confidence is not None:
                self.pub[('confidence', out.name)].publish(
                    fill_message(Image(header=header), confidence_image_fields(out.confidence)))
            if ('colorized', out.name) in self.pub:
                self.pub[('colorized', out.name)].publish(
                    fill_message(Image(header=header), colorized_image_fields(out.depth, lo, hi)))
        if ('cloud', '') in self.pub and result.cloud is not None:
            newest = max(result.cameras, key=lambda o: o.stamp)
            header = headers[newest.name].__class__(stamp=headers[newest.name].stamp, frame_id=c.base_frame)
            cloud = result.cloud
            msg = fill_message(PointCloud2(header=header),
                               cloud_fields(cloud['points'], cloud['camera'], cloud.get('rgb'),
                                            cloud.get('confidence')))
            self.pub[('cloud', '')].publish(msg)

    # -------------------------------------------------------------------------------------------- diagnostics
    def _publish_diagnostics(self) -> None:
        now = self._now()
        stats = self.sync.stats(now)
        statuses = []
        for cam in self.cameras:
            s = stats.cameras[cam]
            stale = s.silent or s.staleness is None or s.staleness > self.config.timeout
            level = _ERROR if s.last_stamp is None else (_WARN if stale else _OK)
            message = 'no image received yet' if s.last_stamp is None else \
                (f'silent for {s.staleness:.2f} s: sets go out without it' if stale else 'ok')
            statuses.append(_status(f'camera {cam}', level, message, {
                'rate_hz': f'{s.rate_hz:.2f}', 'staleness_s': 'inf' if s.staleness is None else f'{s.staleness:.3f}',
                'out_of_order': s.out_of_order, 'missing_sets': s.missing_count, 'missing_camera_info': s.missing_info,
                'bad_frames': self.bad_frames[cam]}))
        slot = self.worker.slot
        missing = [cam for cam in self.cameras if stats.cameras[cam].silent or stats.cameras[cam].staleness is None]
        med = (lambda xs: f'{statistics.median(xs):.1f}' if xs else 'nan')
        statuses.append(_status('pipeline', _WARN if missing else _OK,
                                f'missing cameras: {", ".join(missing)}' if missing else 'ok', {
            'sets_emitted': stats.sets_emitted, 'partial_sets': stats.partial_sets, 'sync_resets': stats.resets,
            'sets_published': self.sets_published, 'dropped_sets': slot.dropped, 'queue_depth': len(slot),
            'queue_bound': slot.capacity, 'queue_max_depth': slot.max_depth, 'inference_errors': self.worker.errors,
            'model_ms_median': med(list(self.model_ms)), 'processing_ms_median': med(list(self.processing_ms)),
            'sync_wait_ms_median': med(list(self.sync_wait_ms)), 'end_to_end_ms_median': med(list(self.e2e_ms)),
            'missing_cameras': ','.join(missing), 'lidar_sweeps': self.lidar_sweeps,
            'odometry_poses': self.odometry_poses, 'allocator': describe_allocator(), 'stamp': f'{now:.3f}'}))
        if self.health is not None:
            for cam, h in self.health.summary().items():
                statuses.append(_status(f'health {cam}', bytes([DIAGNOSTIC_LEVELS[h.level]]), h.message,
                                        dict(h.key_values())))
        array = DiagnosticArray(status=statuses)
        array.header.stamp = self.get_clock().now().to_msg()
        self.diagnostics_pub.publish(array)

    def destroy_node(self) -> None:
        worker = getattr(self, 'worker', None)  # None when __init__ stopped early with a NodeStartError
        if worker is not None:
            worker.stop()
        super().destroy_node()


def _spin(executor: SingleThreadedExecutor, stop: threading.Event) -> None:
    """The executor's thread: callbacks until ``stop`` is set or the context is shut down elsewhere."""
    while not stop.is_set():
        try:
            executor.spin_once(timeout_sec=0.1)
        except (ExternalShutdownException, ShutdownException):
            break


def usage() -> str:
    """``--help``: how to start the node and every parameter with its default."""
    from surround_depth_train.command_line import prog

    defaults = NodeConfig()
    lines = [f'usage: {prog("surround_depth_ros.node")} [--help] --ros-args [--params-file FILE] [-p NAME:=VALUE ...]',
             '', __doc__.strip().split('\n')[0], '',
             'e.g. --ros-args --params-file config/depth_node.yaml (every parameter, commented), or',
             '     --ros-args -p model_file:=runs/kd/model.pt -p rig_file:=config/rigs/surroundsim.yaml', '',
             'parameters (* = changeable at runtime with ros2 param set):']
    lines += [f'  {f.name}{"*" if f.name in RUNTIME_PARAMETERS else ""} = {getattr(defaults, f.name)!r}'
              for f in fields(NodeConfig)]
    return '\n'.join(lines)


def check_arguments(args: list[str]) -> str | None:
    """The problem with the command line, found before ROS starts (rcl's own messages are tracebacks), or None."""
    from pathlib import Path

    ros = args.index('--ros-args') if '--ros-args' in args else len(args)
    for i, arg in enumerate(args[ros:], ros):
        if arg == '--params-file':
            path = args[i + 1] if i + 1 < len(args) else ''
            if not path or not Path(path).is_file():
                return (f'--params-file {path!r} does not exist; pass the node\'s parameters YAML, e.g. '
                        f'config/depth_node.yaml')
            import yaml

            try:
                yaml.safe_load(Path(path).read_text())
            except yaml.YAMLError as exc:
                mark = getattr(exc, 'problem_mark', None)
                where = f'{path}:{mark.line + 1}' if mark is not None else path
                return f'--params-file {where}: malformed YAML ({getattr(exc, "problem", None) or exc}); fix that line'
    return None


def main(argv: list[str] | None = None) -> int:
    """Console entry point ``surround_depth_node``."""
    args = list(argv if argv is not None else sys.argv)
    before_ros = args[1:args.index('--ros-args')] if '--ros-args' in args else args[1:]
    if '--help' in before_ros or '-h' in before_ros:
        print(usage())
        return 0
    problem = check_arguments(args)
    if problem:
        print(f'[{NODE_NAME}] error: {problem}', file=sys.stderr, flush=True)
        return 2
    ensure_allocator_settings()
    # SIGINT and SIGTERM only ask the main loop to stop; the clean-up then runs once, in order. Under `ros2 launch`
    # one Ctrl-C reaches the node twice (the terminal's SIGINT to the process group, then launch's own), and with
    # rclpy's handlers (or KeyboardInterrupt) the second one cut the clean-up short: the node died by the signal, or
    # exited with the DDS participant and rclpy's signal thread still running ("terminate called without an
    # active exception", exit -6).
    # A thread of its own receives them (teardown.stop_on_signals), so a stop request is seen even while the main
    # thread is inside a C call, and the way out is bounded from the request on.
    stop = threading.Event()
    finished = stop_on_signals(stop, NODE_NAME)
    try:
        rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    except RuntimeError as exc:  # rcl's RCLError, e.g. a params file that is not valid YAML
        print(f'[{NODE_NAME}] error: {str(exc).splitlines()[0]}; fix the --ros-args', file=sys.stderr, flush=True)
        return 2
    try:
        node = SurroundDepthNode()
    except NodeStartError as exc:
        print(f'[{NODE_NAME}] error: {exc}', file=sys.stderr, flush=True)
        with bounded_teardown(NODE_NAME, status=2):
            if exc.half_built is not None:
                exc.half_built.destroy_node()
            rclpy.try_shutdown()
        return 2
    # The executor spins on a thread of its own and inference runs in the main thread: the same forward pass on a
    # second thread measured 25-30 % slower on a 2-core CPU. The likely cause: glibc gives other threads malloc
    # arenas of their own, whose heaps are too small for the activations, so those are mapped and page-faulted in
    # on every pass (MALLOC_ARENA_MAX=1 recovered most of it).
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    spinner = threading.Thread(target=_spin, args=(executor, stop), name='surround_depth_executor', daemon=True)
    spinner.start()
    try:
        node.worker.run(keep_going=lambda: not stop.is_set() and rclpy.ok() and spinner.is_alive())
    finally:
        # the executor's thread ends before the node is destroyed: a callback still running then would keep the
        # node's handles (and with them the DDS participant) alive into the interpreter's exit
        stop.set()
        spinner.join()
        with bounded_teardown(NODE_NAME, status=0):
            executor.shutdown()
            node.destroy_node()
            rclpy.try_shutdown()
        finished.set()
    return 0


def run() -> NoReturn:
    """The program (``surround_depth_node``, ``python -m surround_depth_ros.node``): :func:`main`, then the process
    ends with its status without the interpreter's finalisation (:func:`~surround_depth_ros.teardown.exit_process`:
    Fast DDS can hang there after a finished teardown)."""
    exit_process(main())


if __name__ == '__main__':
    run()
