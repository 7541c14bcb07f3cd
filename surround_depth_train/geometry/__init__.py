"""Camera rig, projection, LiDAR depth and transform buffer: framework-free geometry shared by every part."""
from surround_depth_train.geometry.camera import (crop_intrinsics, project, resize_image, resize_intrinsics,
                                                  scale_intrinsics, unproject, unproject_depth)
from surround_depth_train.geometry.lidar import (depth_to_points, points_to_depth, rig_depth_to_cloud,
                                                 rig_points_to_depth)
from surround_depth_train.geometry.rig import (RIG_PRESETS, Camera, CameraRig, RigError, preset_camera_names,
                                               synthetic_surround_rig)
from surround_depth_train.geometry.transforms import (ExtrapolationError, TransformBuffer, invert_transform,
                                                      make_transform, matrix_to_quat, quat_to_matrix, slerp)

__all__ = [
    'Camera', 'CameraRig', 'RigError', 'RIG_PRESETS', 'preset_camera_names', 'synthetic_surround_rig',
    'project', 'unproject', 'unproject_depth', 'scale_intrinsics', 'resize_intrinsics', 'crop_intrinsics',
    'resize_image', 'points_to_depth', 'rig_points_to_depth', 'depth_to_points', 'rig_depth_to_cloud',
    'TransformBuffer', 'ExtrapolationError', 'make_transform', 'invert_transform', 'quat_to_matrix',
    'matrix_to_quat', 'slerp',
]
