"""SurroundSim's vehicle: the six-camera rig, the ego body that the cameras partly see, the roof LiDAR mount and
the per-camera shutter offsets.

Cameras (cyclic order front, front_left, back_left, back, back_right, front_right) follow nuScenes' layout: yaws
0, 55, 110, 180, -110, -55 deg; horizontal fields of view 65 deg (back: 100 deg); mounted 1.55 m high. Adjacent
cameras overlap by 10 deg of 65 (15 %), and the back pair by 12.5 deg (19 % of a side camera, 12.5 % of the back
camera). The ego body is a box below the cameras; the front and back cameras see its hood and boot along their
bottom border (about 1/7 of the rows at 640 x 384), which the self-occlusion mask marks, as DDAD's masks do.

Shutter offsets mimic nuScenes, where each camera fires when the spinning LiDAR sweeps across its field of view:
7 ms after the LiDAR stamp for the front camera, then clockwise (seen from above) every 8.4 ms, so the six stamps
span 42 ms.
"""
from __future__ import annotations

import numpy as np

from surround_depth_train.geometry.rig import RIG_PRESETS, CameraRig, synthetic_surround_rig

__all__ = ['CAMERA_NAMES', 'NATIVE_SIZE', 'EGO_BODY_LO', 'EGO_BODY_HI', 'LIDAR_MOUNT', 'SHUTTER_OFFSETS',
           'surroundsim_rig']

CAMERA_NAMES: tuple[str, ...] = RIG_PRESETS['surroundsim']
#: The rig's native image size ``(width, height)``; the dataset renders at any size with ``K`` rescaled.
NATIVE_SIZE: tuple[int, int] = (640, 384)
YAWS_DEG = (0.0, 55.0, 110.0, 180.0, -110.0, -55.0)
HFOVS_DEG = (65.0, 65.0, 65.0, 100.0, 65.0, 65.0)
POSITIONS = ((1.70, 0.0, 1.55), (1.50, 0.55, 1.55), (1.00, 0.55, 1.55),
             (0.0, 0.0, 1.55), (1.00, -0.55, 1.55), (1.50, -0.55, 1.55))
#: The ego body as one box in base_link (base_link on the ground below the rear axle, REP 103).
EGO_BODY_LO = np.array([-1.0, -0.95, 0.25])
EGO_BODY_HI = np.array([3.70, 0.95, 1.0])
#: LiDAR origin in base_link (roof, like nuScenes' LIDAR_TOP); its axes are base_link's.
LIDAR_MOUNT = np.array([0.9, 0.0, 1.84])
#: Shutter time after the LiDAR stamp, seconds, per camera in rig order.
SHUTTER_OFFSETS: tuple[float, ...] = (0.007, 0.049, 0.0406, 0.0322, 0.0238, 0.0154)


def surroundsim_rig(width: int = NATIVE_SIZE[0], height: int = NATIVE_SIZE[1]) -> CameraRig:
    """The SurroundSim rig at ``width`` x ``height`` (``K`` rescaled from the native 640 x 384 rig).

    Rescaling (rather than re-deriving ``K`` from the field of view) is what a real dataset's resize does, so the
    network sees the same intrinsics convention for SurroundSim as for nuScenes and DDAD.
    """
    native = synthetic_surround_rig(NATIVE_SIZE[0], NATIVE_SIZE[1], CAMERA_NAMES, YAWS_DEG, HFOVS_DEG, POSITIONS,
                                    pitch_deg=0.0)
    return native if (width, height) == NATIVE_SIZE else native.resized(width, height)
