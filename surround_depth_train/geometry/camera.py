"""Pinhole camera math: projection, unprojection, and how resizing and cropping change ``K``.

Pixel-centre convention (OpenCV): the centre of pixel ``(u, v)`` (column, row) sits at integer coordinates, so
the image spans ``[-0.5, W - 0.5] x [-0.5, H - 0.5]``. Resizing an image of width ``W`` to ``W'`` maps a continuous
coordinate ``u`` to ``u' = (u + 0.5) * W'/W - 0.5``; hence ``fx' = fx * sx`` and ``cx' = (cx + 0.5) * sx - 0.5``
with ``sx = W'/W`` (likewise for y). This is exactly what ``cv2.resize`` does to pixel centres.
Cropping at ``(x0, y0)`` shifts the principal point: ``cx' = cx - x0``, ``cy' = cy - y0``.

Camera frames follow REP 103's optical convention: z forward, x right, y down. Depth means z in that frame.
Functions accept numpy arrays; ``unproject_depth`` also accepts batched torch tensors.
"""
from __future__ import annotations

import numpy as np

__all__ = [
    'scale_intrinsics', 'resize_intrinsics', 'crop_intrinsics', 'resize_image', 'project', 'unproject',
    'pixel_grid', 'unproject_depth', 'check_intrinsics',
]


def check_intrinsics(K: np.ndarray, name: str = 'K') -> np.ndarray:
    """Return ``K`` as a float64 3x3 array, or raise ValueError naming what is wrong."""
    K = np.asarray(K, dtype=np.float64)
    if K.shape != (3, 3):
        raise ValueError(f'{name}: expected a 3x3 intrinsic matrix, got shape {K.shape}')
    if not np.all(np.isfinite(K)) or K[0, 0] <= 0 or K[1, 1] <= 0 or not np.allclose(K[2], [0, 0, 1]):
        raise ValueError(f'{name}: expected [[fx, s, cx], [0, fy, cy], [0, 0, 1]] with fx, fy > 0, got {K.tolist()}')
    return K


def scale_intrinsics(K: np.ndarray, sx: float, sy: float) -> np.ndarray:
    """``K`` after scaling the image by ``sx`` horizontally and ``sy`` vertically (pixel-centre convention)."""
    K = np.array(K, dtype=np.float64)
    K[0, 0] *= sx
    K[0, 1] *= sx
    K[1, 1] *= sy
    K[0, 2] = (K[0, 2] + 0.5) * sx - 0.5
    K[1, 2] = (K[1, 2] + 0.5) * sy - 0.5
    return K


def resize_intrinsics(K: np.ndarray, src_size: tuple[int, int], dst_size: tuple[int, int]) -> np.ndarray:
    """``K`` for an image resized from ``src_size`` to ``dst_size``, both ``(width, height)``; anisotropic."""
    (w0, h0), (w1, h1) = src_size, dst_size
    return scale_intrinsics(K, w1 / w0, h1 / h0)


def crop_intrinsics(K: np.ndarray, x0: float, y0: float) -> np.ndarray:
    """``K`` for the crop whose top-left pixel is ``(x0, y0)`` of the original image."""
    K = np.array(K, dtype=np.float64)
    K[0, 2] -= x0
    K[1, 2] -= y0
    return K


def resize_image(image: np.ndarray, K: np.ndarray, size: tuple[int, int],
                 nearest: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Resize ``image`` to ``size = (width, height)`` and return it with the matching ``K``.

    ``nearest=True`` for depth maps and masks (no mixing of depths across edges); area averaging when shrinking
    colour images, bilinear when enlarging.
    """
    import cv2

    h0, w0 = image.shape[:2]
    w1, h1 = size
    if nearest:
        interp = cv2.INTER_NEAREST
    else:
        interp = cv2.INTER_AREA if (w1 < w0 and h1 < h0) else cv2.INTER_LINEAR
    out = cv2.resize(image, (w1, h1), interpolation=interp)
    return out, resize_intrinsics(K, (w0, h0), (w1, h1))


def project(points_cam: np.ndarray, K: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Project camera-frame points ``[..., 3]`` to pixels: ``u = fx x/z + s y/z + cx``, ``v = fy y/z + cy``.

    Returns:
        ``uv [..., 2]`` and depth ``z [...]``. Points with ``z <= 0`` get NaN pixels.
    """
    p = np.asarray(points_cam, dtype=np.float64)
    z = p[..., 2]
    with np.errstate(divide='ignore', invalid='ignore'):
        xn = np.where(z > 0, p[..., 0] / z, np.nan)
        yn = np.where(z > 0, p[..., 1] / z, np.nan)
    u = K[0, 0] * xn + K[0, 1] * yn + K[0, 2]
    v = K[1, 1] * yn + K[1, 2]
    return np.stack([u, v], axis=-1), z


def unproject(uv: np.ndarray, depth: np.ndarray, K: np.ndarray) -> np.ndarray:
    """Inverse of :func:`project`: pixels ``[..., 2]`` and depths ``[...]`` to camera-frame points ``[..., 3]``."""
    uv = np.asarray(uv, dtype=np.float64)
    depth = np.asarray(depth, dtype=np.float64)
    yn = (uv[..., 1] - K[1, 2]) / K[1, 1]
    xn = (uv[..., 0] - K[0, 2] - K[0, 1] * yn) / K[0, 0]
    return np.stack([xn * depth, yn * depth, depth], axis=-1)


def pixel_grid(width: int, height: int) -> np.ndarray:
    """Pixel-centre coordinates ``[H, W, 2]`` as ``(u, v)`` at integers (OpenCV convention)."""
    u, v = np.meshgrid(np.arange(width, dtype=np.float64), np.arange(height, dtype=np.float64))
    return np.stack([u, v], axis=-1)


def unproject_depth(depth, K):
    """Dense depth to camera-frame points.

    Args:
        depth: ``[H, W]`` numpy array, or a torch tensor ``[..., H, W]``.
        K: ``[3, 3]`` (numpy) or a torch tensor ``[..., 3, 3]`` matching depth's leading dims.

    Returns:
        Points ``[H, W, 3]`` (numpy) or ``[..., H, W, 3]`` (torch), in the camera optical frame.
    """
    if isinstance(depth, np.ndarray):
        h, w = depth.shape
        return unproject(pixel_grid(w, h), depth, check_intrinsics(K))
    import torch

    h, w = depth.shape[-2:]
    v, u = torch.meshgrid(torch.arange(h, dtype=depth.dtype, device=depth.device),
                          torch.arange(w, dtype=depth.dtype, device=depth.device), indexing='ij')
    K = K.to(depth.dtype)
    fx, fy = K[..., 0, 0, None, None], K[..., 1, 1, None, None]
    cx, cy, s = K[..., 0, 2, None, None], K[..., 1, 2, None, None], K[..., 0, 1, None, None]
    yn = (v - cy) / fy
    xn = (u - cx - s * yn) / fx
    return torch.stack([xn * depth, yn * depth, depth], dim=-1)
