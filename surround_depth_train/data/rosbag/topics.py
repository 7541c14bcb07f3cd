"""The one topic layout and frame naming, shared by the node's defaults, the converters, replay and the evaluators.

Per camera ``<cam>`` (the rig's camera name, e.g. ``CAM_FRONT``), following image_transport's naming:

======================================  ==========================  ==============================================
topic                                   type                        content
======================================  ==========================  ==============================================
``/<cam>/image_raw``                    sensor_msgs/Image           the camera's image (rgb8 / bgr8 / mono8)
``/<cam>/image_raw/compressed``         sensor_msgs/CompressedImage the same image as JPEG (image_transport name)
``/<cam>/camera_info``                  sensor_msgs/CameraInfo      K, P, distortion model and coefficients
``/<cam>/depth/image``                  sensor_msgs/Image           node output: 32FC1 metres, NaN = invalid
``/<cam>/depth/camera_info``            sensor_msgs/CameraInfo      node output: the rectified geometry of depth
``/<cam>/depth/confidence``             sensor_msgs/Image           node output: 32FC1 in [0, 1]
``/<cam>/depth/colorized``              sensor_msgs/Image           node output: rgb8 picture of the depth
``/<cam>/depth_gt/image``               sensor_msgs/Image           converters (optional): LiDAR GT depth, 32FC1
======================================  ==========================  ==============================================

Shared: ``/lidar/points`` (PointCloud2 x, y, z, intensity, ring as float32, in the LiDAR's own frame),
``/tf_static`` (base_link -> every sensor frame), ``/tf`` (odom -> base_link), ``/odom`` (nav_msgs/Odometry),
``/clock`` under replay, ``/surround_depth/points`` (the node's fused cloud in base_link), ``/diagnostics``.

Frames: ``<cam>_optical_frame`` for each camera (REP 103 optical: z forward, x right, y down), ``lidar`` for the
LiDAR, ``base_link`` (REP 103: x forward, y left, z up) and ``odom``.
"""
from __future__ import annotations

__all__ = ['image_topic', 'compressed_topic', 'camera_info_topic', 'depth_topic', 'depth_info_topic',
           'confidence_topic', 'colorized_topic', 'gt_depth_topic', 'optical_frame', 'LIDAR_TOPIC', 'LIDAR_FRAME',
           'TF_TOPIC', 'TF_STATIC_TOPIC', 'ODOM_TOPIC', 'CLOCK_TOPIC', 'CLOUD_TOPIC', 'DIAGNOSTICS_TOPIC',
           'BASE_FRAME', 'ODOM_FRAME']

LIDAR_TOPIC = '/lidar/points'
LIDAR_FRAME = 'lidar'
TF_TOPIC = '/tf'
TF_STATIC_TOPIC = '/tf_static'
ODOM_TOPIC = '/odom'
CLOCK_TOPIC = '/clock'
CLOUD_TOPIC = '/surround_depth/points'
DIAGNOSTICS_TOPIC = '/diagnostics'
BASE_FRAME = 'base_link'
ODOM_FRAME = 'odom'


def image_topic(camera: str) -> str:
    """``/<cam>/image_raw``."""
    return f'/{camera}/image_raw'


def compressed_topic(camera: str) -> str:
    """``/<cam>/image_raw/compressed`` (image_transport's name for the JPEG stream)."""
    return f'/{camera}/image_raw/compressed'


def camera_info_topic(camera: str) -> str:
    """``/<cam>/camera_info``."""
    return f'/{camera}/camera_info'


def depth_topic(camera: str) -> str:
    """``/<cam>/depth/image``: the node's metric depth (32FC1)."""
    return f'/{camera}/depth/image'


def depth_info_topic(camera: str) -> str:
    """``/<cam>/depth/camera_info``: the geometry of the published depth image."""
    return f'/{camera}/depth/camera_info'


def confidence_topic(camera: str) -> str:
    """``/<cam>/depth/confidence``: per-pixel confidence in ``[0, 1]`` (32FC1)."""
    return f'/{camera}/depth/confidence'


def colorized_topic(camera: str) -> str:
    """``/<cam>/depth/colorized``: an rgb8 picture of the depth for people."""
    return f'/{camera}/depth/colorized'


def gt_depth_topic(camera: str) -> str:
    """``/<cam>/depth_gt/image``: ground-truth depth a converter projected from the LiDAR (32FC1, NaN = none)."""
    return f'/{camera}/depth_gt/image'


def optical_frame(camera: str) -> str:
    """``<cam>_optical_frame``, the same default as :class:`~surround_depth_train.geometry.rig.Camera`."""
    return f'{camera}_optical_frame'
