"""Where a bag keeps each sensor: the topic layout of :mod:`~surround_depth_train.data.rosbag.topics` by default,
or a YAML file for bags recorded in other layouts (no rclpy).

A topic map names topics with ``{cam}`` standing for the camera name::

    # e.g. a bag from the common nuScenes converters
    cameras: [CAM_FRONT, CAM_FRONT_LEFT, CAM_BACK_LEFT, CAM_BACK, CAM_BACK_RIGHT, CAM_FRONT_RIGHT]
    image: ''                                  # no raw images
    compressed_image: /{cam}/image_rect_compressed
    camera_info: /{cam}/camera_info
    lidar: /LIDAR_TOP                          # in its sensor frame; the mount comes from TF
    odom: ''                                   # no nav_msgs/Odometry: the ego motion comes from /tf
    odom_frame: map
    training_cameras: {CAM_FRONT: front, CAM_FRONT_LEFT: front_left, CAM_BACK_LEFT: back_left, CAM_BACK: back,
                       CAM_BACK_RIGHT: back_right, CAM_FRONT_RIGHT: front_right}   # for a SurroundSim-trained model

``cameras`` empty means: the rig file beside the bag (``<BAG>/rig.yaml``) when there is one, else every camera
whose ``camera_info`` topic the bag has, in the bag's order. Per camera the raw ``image`` topic is used when the
bag has it, else ``compressed_image``. The ego motion is ``odom`` (nav_msgs/Odometry) when the bag has it, else the
``odom_frame -> base_frame`` transforms on ``tf``; every other transform on ``tf`` or ``tf_static`` is a mount.
``training_cameras`` names the camera of the model's training rig that each bag camera plays, for the focal-length
check (:mod:`surround_depth_ros.engine`: cameras are matched by name only; empty = the bag's names).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

from surround_depth_train.data.rosbag import topics
from surround_depth_train.config import load_config

__all__ = ['TopicMap', 'load_topic_map']


@dataclass
class TopicMap:
    """Topics and frames of one bag layout (module docstring)."""

    cameras: list[str] = field(default_factory=list)
    image: str = '/{cam}/image_raw'
    compressed_image: str = '/{cam}/image_raw/compressed'
    camera_info: str = '/{cam}/camera_info'
    lidar: str = topics.LIDAR_TOPIC
    tf: str = topics.TF_TOPIC
    tf_static: str = topics.TF_STATIC_TOPIC
    odom: str = topics.ODOM_TOPIC
    base_frame: str = topics.BASE_FRAME
    odom_frame: str = topics.ODOM_FRAME
    mask_files: list[str] = field(default_factory=list)  # per camera ego-body mask ('' = none); white = keep
    training_cameras: dict[str, str] = field(default_factory=dict)  # bag camera -> training rig camera it plays

    def image_topic(self, camera: str) -> str:
        return self.image.format(cam=camera) if self.image else ''

    def compressed_topic(self, camera: str) -> str:
        return self.compressed_image.format(cam=camera) if self.compressed_image else ''

    def info_topic(self, camera: str) -> str:
        return self.camera_info.format(cam=camera)

    def camera_of_info_topic(self, topic: str) -> str | None:
        """The camera name a ``camera_info`` topic stands for (None when the topic does not fit the pattern)."""
        head, _, tail = self.camera_info.partition('{cam}')
        if not topic.startswith(head) or not topic.endswith(tail) or len(topic) <= len(head) + len(tail):
            return None
        name = topic[len(head):len(topic) - len(tail)]
        return None if '/' in name else name


def load_topic_map(path: str | os.PathLike | None = None, overrides: list[str] = ()) -> TopicMap:
    """The default layout, or the YAML file at ``path`` (unknown keys and wrong types are refused)."""
    return load_config(TopicMap, path, list(overrides))
