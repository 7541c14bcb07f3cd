"""One schema sample from a real rig's native-resolution data (shared by the nuScenes and DDAD readers).

A real dataset gives, per time instant: six images at native resolution, the rig at native resolution (``K`` and
``T_base_cam`` per camera), one LiDAR sweep in base_link at the LiDAR stamp, and the ego pose at the LiDAR stamp and
at each camera's stamp. :func:`assemble_sample` turns that into :class:`~surround_depth_train.data.schema
.SurroundDataset`'s sample:

- images are resized to ``image_size`` by resizing the whole frame (anisotropic, as SurroundDepth does) and ``K``
  follows (``geometry.camera.resize_intrinsics``);
- the sweep is projected into each camera through the ego poses, ``base(t_cam) <- world <- base(t_lidar)``, with
  the z-buffered projection of ``geometry.lidar.points_to_depth``, once into the resized camera (``depth``) and,
  when asked, once into the native one (``depth_native``, for evaluation at native resolution);
- masks follow the schema's rule: ``depth > 0``, ``min_depth <= depth <= max_depth`` and ``self_mask``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from surround_depth_train.data import schema as S
from surround_depth_train.geometry.lidar import points_to_depth
from surround_depth_train.geometry.rig import CameraRig
from surround_depth_train.geometry.transforms import invert_transform

__all__ = ['read_rgb', 'ego_motion_corrections', 'assemble_sample']


def read_rgb(path: str | Path) -> np.ndarray:
    """An image file as ``[H, W, 3]`` uint8 RGB.

    Raises:
        DatasetError: naming the file when it is missing or cannot be decoded.
    """
    import cv2

    path = Path(path)
    if not path.is_file():
        raise S.DatasetError(f'image file {str(path)!r} is missing; the dataset on disk is incomplete (re-extract '
                             f'the archive that holds it, or leave the scene out with data.*_scenes)')
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise S.DatasetError(f'image file {str(path)!r} cannot be decoded; it is truncated or not an image '
                             f'(re-extract it from the dataset archive)')
    return np.ascontiguousarray(bgr[..., ::-1])


def ego_motion_corrections(T_world_base_lidar: np.ndarray, T_world_base_cams: Sequence[np.ndarray]) -> list:
    """Per camera ``base(t_cam) <- base(t_lidar) = inv(T_world_base(t_cam)) @ T_world_base(t_lidar)``."""
    return [invert_transform(T_c) @ T_world_base_lidar for T_c in T_world_base_cams]


def assemble_sample(*, images: Sequence[np.ndarray], rig_native: CameraRig, lidar_base: np.ndarray,
                    lidar_stamp: float, stamps: Sequence[float], T_world_base: np.ndarray,
                    T_world_base_cams: Sequence[np.ndarray], image_size: tuple[int, int], min_depth: float,
                    max_depth: float, meta: dict[str, Any], self_masks: Sequence[np.ndarray] | None = None,
                    native_depth: bool = False,
                    depth_native_given: Sequence[np.ndarray] | None = None) -> dict[str, Any]:
    """The schema sample (module docstring).

    Args:
        images: ``N`` RGB ``[Hn, Wn, 3]`` uint8 at native resolution, in the rig's order.
        rig_native: the rig at native resolution (each camera's size must match its image).
        lidar_base: ``[M, 4]`` x, y, z (base_link at ``lidar_stamp``), intensity.
        stamps: ``N`` camera stamps (s); ``lidar_stamp`` the sweep's.
        T_world_base: ego pose at ``lidar_stamp``; ``T_world_base_cams``: at each camera stamp.
        image_size: network ``(W, H)``.
        self_masks: optional ``N`` bool ``[H, W]`` (network resolution), True = the pixel sees the scene.
        native_depth: also return ``depth_native`` / ``depth_native_mask``.
        depth_native_given: ``N`` native-resolution depth maps to use instead of projecting the sweep (SurroundDepth's
            preprocessed ``.npy``); the network-resolution ``depth`` is then their nearest-neighbour resize.
    """
    import cv2

    w, h = image_size
    n = len(rig_native)
    rig = rig_native.resized(w, h)
    corrections = ego_motion_corrections(T_world_base, T_world_base_cams)
    imgs, depth, depth_n = [], [], []
    for i, cam in enumerate(rig_native):
        img = images[i]
        if img.shape[:2] != (cam.height, cam.width):
            raise S.DatasetError(f'camera {cam.name}: image is {img.shape[1]}x{img.shape[0]} but its calibration is '
                                 f'for {cam.width}x{cam.height}; the image file does not belong to this sample')
        interp = cv2.INTER_AREA if (w < cam.width and h < cam.height) else cv2.INTER_LINEAR
        imgs.append(cv2.resize(img, (w, h), interpolation=interp))
        if depth_native_given is not None:
            dn = np.asarray(depth_native_given[i], dtype=np.float32)
            if dn.shape != (cam.height, cam.width):
                raise S.DatasetError(f'camera {cam.name}: preprocessed depth is {dn.shape[::-1]} (W, H) but the '
                                     f'image is {cam.width}x{cam.height}; point data.depth_root at depth maps made '
                                     f'at native resolution')
            depth_n.append(dn)
            depth.append(cv2.resize(dn, (w, h), interpolation=cv2.INTER_NEAREST))
        else:
            depth.append(points_to_depth(lidar_base, rig[i], min_depth=0.0, max_depth=max_depth,
                                         T_correction=corrections[i]))
            if native_depth:
                depth_n.append(points_to_depth(lidar_base, cam, min_depth=0.0, max_depth=max_depth,
                                               T_correction=corrections[i]))
    depth_t = np.stack(depth)[:, None]
    if self_masks is None:
        self_mask = np.ones((n, 1, h, w), dtype=bool)
    else:
        self_mask = np.stack([np.asarray(m, dtype=bool) for m in self_masks])[:, None]
    sample = {
        S.IMAGE: torch.from_numpy(np.stack(imgs).transpose(0, 3, 1, 2).copy()).to(torch.float32) / 255.0,
        S.K: torch.tensor(rig.intrinsics(), dtype=torch.float32),
        S.T_BASE_CAM: torch.tensor(rig.extrinsics(), dtype=torch.float32),
        S.DEPTH: torch.from_numpy(depth_t),
        S.DEPTH_MASK: torch.from_numpy((depth_t > 0) & (depth_t >= min_depth) & (depth_t <= max_depth) & self_mask),
        S.SELF_MASK: torch.from_numpy(np.ascontiguousarray(self_mask)),
        S.LIDAR: torch.from_numpy(np.ascontiguousarray(lidar_base[:, :4], dtype=np.float32)),
        S.STAMPS: torch.tensor(np.asarray(stamps, dtype=np.float64)),
        S.LIDAR_STAMP: torch.tensor(float(lidar_stamp), dtype=torch.float64),
        S.T_WORLD_BASE: torch.tensor(np.asarray(T_world_base), dtype=torch.float32),
        S.T_WORLD_BASE_CAMS: torch.tensor(np.stack(T_world_base_cams), dtype=torch.float32),
        S.META: dict(meta, camera_names=rig.names),
    }
    if depth_n:
        shapes = {d.shape for d in depth_n}
        if len(shapes) != 1:
            raise S.DatasetError(f'cameras have different native sizes {sorted(shapes)}; depth_native needs one size')
        dn = np.stack(depth_n)[:, None]
        mask_n = (dn > 0) & (dn >= min_depth) & (dn <= max_depth)
        if self_masks is not None:
            hn, wn = dn.shape[-2:]
            mask_n &= np.stack([cv2.resize(m.astype(np.uint8), (wn, hn), interpolation=cv2.INTER_NEAREST) > 0
                                for m in self_masks])[:, None]
        sample[S.DEPTH_NATIVE] = torch.from_numpy(dn)
        sample[S.DEPTH_NATIVE_MASK] = torch.from_numpy(mask_n)
    return sample
