"""The node's parameters as one typed dataclass (no rclpy): declared up front by the node, loaded from
``config/depth_node.yaml`` (``/**: ros__parameters:``, any name and namespace), validated here.

Empty strings and lists mean "derive it": camera names from the rig file, topics from :mod:`topics`, depth limits
from the model file. Parameters in :data:`RUNTIME_PARAMETERS` can be changed while the node runs
(``ros2 param set``); the others need a restart.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Mapping

from surround_depth_train.data.rosbag import topics

__all__ = ['NodeConfig', 'NodeConfigError', 'RUNTIME_PARAMETERS', 'QOS_CHOICES', 'OUTPUTS']

QOS_CHOICES = ('reliable', 'best_effort')
OUTPUTS = ('depth', 'depth_info', 'confidence', 'colorized', 'cloud')
RUNTIME_PARAMETERS = ('min_depth', 'max_depth', 'confidence_threshold', 'cloud_stride', 'voxel_size',
                      'cloud_min_range', 'cloud_max_range', 'slop', 'timeout', 'health_scale_threshold',
                      'health_abs_rel_threshold')


class NodeConfigError(ValueError):
    """A parameter has a value the node cannot run with; the message names the parameter and the fix."""


@dataclass
class NodeConfig:
    """Every parameter of ``surround_depth_node`` (see the README's node section for each one's meaning)."""

    # model and engine
    model_file: str = ''
    backend: str = 'torch'                 # torch | onnxruntime
    device: str = 'cpu'                    # cpu | cuda | cuda:N | auto
    precision: str = 'fp32'                # fp32 | fp16 (GPU) | bf16 (GPU, CPU with native bf16) | int8 (onnx)
    input_size: list[int] = field(default_factory=list)  # [height, width] override, fully convolutional students
    bins_downsample: int = 1               # 1 | 2 | 4: MetricBins depth at 1/N of the input, upsampled
    allow_teacher: bool = False
    focal_correction: bool = False
    focal_tolerance: float = 0.02
    onnx_providers: list[str] = field(default_factory=lambda: ['CPUExecutionProvider'])
    allow_provider_fallback: bool = False
    # cameras and inputs
    rig_file: str = ''
    cameras: list[str] = field(default_factory=list)
    image_topics: list[str] = field(default_factory=list)
    camera_info_topics: list[str] = field(default_factory=list)
    compressed: bool = False               # subscribe to <image topic>/compressed (CompressedImage)
    extrinsics_from_tf: bool = False       # take base_link <- camera from /tf_static (tf2_ros, full ROS installs)
    mask_files: list[str] = field(default_factory=list)  # per camera ego-body mask image ('' = none); white = keep
    training_cameras: list[str] = field(default_factory=list)  # 'CAMERA:TRAINING_CAMERA' per renamed camera
    # synchronisation
    slop: float = 0.05
    queue_size: int = 10
    timeout: float = 0.5
    # depth outputs
    min_depth: float = 0.0                 # 0: the model file's range
    max_depth: float = 0.0
    confidence_threshold: float = 0.0
    publish: list[str] = field(default_factory=lambda: ['depth', 'depth_info', 'cloud'])
    qos_depth: str = 'reliable'
    qos_confidence: str = 'reliable'
    qos_colorized: str = 'reliable'
    qos_cloud: str = 'reliable'
    qos_history: int = 2
    # fused cloud
    cloud_topic: str = topics.CLOUD_TOPIC
    base_frame: str = topics.BASE_FRAME
    odom_frame: str = topics.ODOM_FRAME
    cloud_stride: int = 4
    voxel_size: float = 0.0
    cloud_min_range: float = 0.0
    cloud_max_range: float = 80.0
    cloud_rgb: bool = True
    cloud_confidence: bool = True
    odom_topic: str = topics.ODOM_TOPIC     # '' disables motion compensation and health ego motion
    # health monitor (depth vs LiDAR)
    lidar_topic: str = ''                  # '' disables the monitor
    health_window: int = 50
    health_scale_threshold: float = 0.15
    health_abs_rel_threshold: float = 0.5
    health_max_lidar_age: float = 0.1
    # diagnostics
    diagnostics_period: float = 1.0

    def validate(self) -> None:
        """Raise :class:`NodeConfigError` for values the node cannot run with."""
        if self.backend not in ('torch', 'onnxruntime'):
            raise NodeConfigError(f'backend: {self.backend!r} is not torch or onnxruntime')
        if self.precision not in ('fp32', 'fp16', 'bf16', 'int8'):
            raise NodeConfigError(f'precision: {self.precision!r} is not fp32, fp16, bf16 or int8')
        if self.bins_downsample not in (1, 2, 4):
            raise NodeConfigError(f'bins_downsample: {self.bins_downsample!r} is not 1, 2 or 4 (1 = the bins head '
                                  f'at full resolution)')
        if self.input_size and (len(self.input_size) != 2 or min(self.input_size) <= 0):
            raise NodeConfigError(f'input_size: give [height, width] or [], got {self.input_size}')
        for name in ('image_topics', 'camera_info_topics', 'mask_files'):
            value = getattr(self, name)
            if value and self.cameras and len(value) != len(self.cameras):
                raise NodeConfigError(f'{name}: {len(value)} entries for {len(self.cameras)} cameras '
                                      f'{self.cameras}; give one per camera or [] for the defaults')
        self.training_camera_map()
        unknown = [p for p in self.publish if p not in OUTPUTS]
        if unknown:
            raise NodeConfigError(f'publish: unknown output(s) {unknown}; choose from {list(OUTPUTS)}')
        for name in ('qos_depth', 'qos_confidence', 'qos_colorized', 'qos_cloud'):
            if getattr(self, name) not in QOS_CHOICES:
                raise NodeConfigError(f'{name}: {getattr(self, name)!r} is not one of {QOS_CHOICES}')
        if self.qos_history < 1 or self.queue_size < 1 or self.health_window < 1:
            raise NodeConfigError('qos_history, queue_size and health_window must be at least 1')
        self.validate_runtime()

    def validate_runtime(self) -> None:
        """The checks of the parameters that may change while the node runs."""
        if self.min_depth < 0 or self.max_depth < 0 or (self.max_depth and self.min_depth >= self.max_depth):
            raise NodeConfigError(f'min_depth/max_depth: need 0 <= min_depth < max_depth (0 = the model\'s), got '
                                  f'{self.min_depth}/{self.max_depth}')
        if not 0.0 <= self.confidence_threshold <= 1.0:
            raise NodeConfigError(f'confidence_threshold: must lie in [0, 1], got {self.confidence_threshold}')
        if self.cloud_stride < 1:
            raise NodeConfigError(f'cloud_stride: must be at least 1, got {self.cloud_stride}')
        if self.voxel_size < 0 or self.cloud_min_range < 0 or self.cloud_max_range <= self.cloud_min_range:
            raise NodeConfigError('voxel_size >= 0 and 0 <= cloud_min_range < cloud_max_range are required')
        if self.slop <= 0 or self.timeout <= 0:
            raise NodeConfigError(f'slop and timeout must be positive seconds, got {self.slop}/{self.timeout}')
        if self.health_scale_threshold <= 0 or self.health_abs_rel_threshold <= 0:
            raise NodeConfigError('health thresholds must be positive')

    def training_camera_map(self, cameras: list[str] | None = None) -> dict[str, str]:
        """``training_cameras`` as ``{camera: training rig camera it plays}`` (the engine's ``training_cameras``):
        entries ``'CAMERA:TRAINING_CAMERA'``, e.g. ``['CAM_FRONT:front', ...]`` for a nuScenes-named rig running a
        model trained on SurroundSim, so each camera's focal length is checked against the one it plays. Every
        mapped camera must be one of ``cameras`` (default: the ``cameras`` parameter; unchecked when both are empty).
        """
        mapping: dict[str, str] = {}
        for entry in self.training_cameras:
            camera, sep, trained = (part.strip() for part in str(entry).partition(':'))
            if not sep or not camera or not trained or ':' in trained:
                raise NodeConfigError(f'training_cameras: {entry!r} is not CAMERA:TRAINING_CAMERA; give one entry '
                                      f'per renamed camera, e.g. [\'CAM_FRONT:front\', \'CAM_BACK:back\']')
            if camera in mapping:
                raise NodeConfigError(f'training_cameras: camera {camera!r} is mapped twice ({mapping[camera]!r} '
                                      f'and {trained!r}); keep one entry per camera')
            mapping[camera] = trained
        cameras = list(cameras or self.cameras)
        unknown = sorted(set(mapping) - set(cameras)) if cameras else []
        if unknown:
            raise NodeConfigError(f'training_cameras: {unknown} are not among the cameras {cameras}; map the names '
                                  f'the node subscribes to')
        return mapping

    @classmethod
    def names(cls) -> list[str]:
        return [f.name for f in fields(cls)]

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> 'NodeConfig':
        """Build from parameter values (unknown names refused), coercing ints to floats where a float is expected."""
        unknown = sorted(set(values) - set(cls.names()))
        if unknown:
            raise NodeConfigError(f'unknown parameter(s) {unknown}; known: {cls.names()}')
        defaults = cls()
        kwargs = {}
        for name, value in values.items():
            default = getattr(defaults, name)
            if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
            if isinstance(default, list):
                value = list(value)
            if type(value) is not type(default):
                raise NodeConfigError(f'{name}: expected {type(default).__name__}, got {value!r}')
            kwargs[name] = value
        config = cls(**kwargs)
        config.validate()
        return config
