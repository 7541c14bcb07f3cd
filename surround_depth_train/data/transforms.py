"""Training augmentations on schema samples (see ``schema.SurroundDataset``) that keep the geometry consistent.

Horizontal flip of the whole camera set: mirror every image, depth and mask left-right, and mirror the world across
the vehicle's x-z plane (``y -> -y``, ``M = diag(1, -1, 1)``). A camera with pose ``T_base_cam = [R | t]`` then
becomes ``[M R S | M t]`` with ``S = diag(-1, 1, 1)`` in its optical frame (its x axis flips with the image), a
proper rotation again since ``det(M) det(S) = 1``. Intrinsics: ``cx' = W - 1 - cx`` (pixel centres at integers),
skew ``s' = -s``. The mirrored left camera now sees what a right camera would, so cameras swap places in the cyclic
order: ``i -> (N - i) mod N`` (front and back keep theirs; front_left <-> front_right, back_left <-> back_right).
LiDAR points, ``T_world_base`` (conjugated, ``M T M``) and the masks follow.

Colour jitter: brightness, contrast and saturation scale factors drawn per camera (real rigs expose each camera on
its own), applied as ``x' = clip(mix(gray, (x - mean) c + mean, s) b)``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from surround_depth_train.data import schema as S

__all__ = ['AugmentConfig', 'flip_permutation', 'flip_sample', 'color_jitter', 'augment_sample']

_MIRROR = torch.diag(torch.tensor([1.0, -1.0, 1.0, 1.0], dtype=torch.float64))
_MIRROR_OPT = torch.diag(torch.tensor([-1.0, 1.0, 1.0, 1.0], dtype=torch.float64))
_PER_PIXEL = (S.IMAGE, S.DEPTH, S.DEPTH_MASK, S.SELF_MASK, S.DEPTH_DENSE, S.DYNAMIC_MASK, S.DEPTH_NATIVE,
              S.DEPTH_NATIVE_MASK)


@dataclass
class AugmentConfig:
    """Training augmentations; probabilities per sample, jitter strengths as ``1 +- x`` ranges."""

    flip_probability: float = 0.5
    brightness: float = 0.2
    contrast: float = 0.2
    saturation: float = 0.2


def flip_permutation(num_cameras: int) -> list[int]:
    """New camera ``i`` is old camera ``(N - i) mod N`` (a rig in cyclic order starting at the front)."""
    return [(num_cameras - i) % num_cameras for i in range(num_cameras)]


def _flip_K(K: torch.Tensor, width: int) -> torch.Tensor:
    K = K.clone()
    K[..., 0, 2] = width - 1 - K[..., 0, 2]
    K[..., 0, 1] = -K[..., 0, 1]
    return K


def flip_sample(sample: dict[str, Any]) -> dict[str, Any]:
    """Mirror a sample across the vehicle's x-z plane (module docstring); returns a new dict."""
    n = sample[S.IMAGE].shape[0]
    width = sample[S.IMAGE].shape[-1]
    perm = torch.tensor(flip_permutation(n))
    out = dict(sample)
    for key in _PER_PIXEL:
        if key in sample:
            out[key] = torch.flip(sample[key], dims=[-1])[perm]
    out[S.K] = _flip_K(sample[S.K], width)[perm]
    T = sample[S.T_BASE_CAM].to(torch.float64)
    out[S.T_BASE_CAM] = (_MIRROR @ T @ _MIRROR_OPT).to(torch.float32)[perm]
    out[S.STAMPS] = sample[S.STAMPS][perm]
    lidar = sample[S.LIDAR].clone()
    lidar[:, 1] = -lidar[:, 1]
    out[S.LIDAR] = lidar
    out[S.T_WORLD_BASE] = (_MIRROR @ sample[S.T_WORLD_BASE].to(torch.float64) @ _MIRROR).to(torch.float32)
    if S.T_WORLD_BASE_CAMS in sample:
        out[S.T_WORLD_BASE_CAMS] = (_MIRROR @ sample[S.T_WORLD_BASE_CAMS].to(torch.float64) @ _MIRROR)\
            .to(torch.float32)[perm]
    meta = dict(sample[S.META])
    meta['flipped'] = not meta.get('flipped', False)
    out[S.META] = meta
    return out


def color_jitter(image: torch.Tensor, generator: torch.Generator, brightness: float = 0.2, contrast: float = 0.2,
                 saturation: float = 0.2) -> torch.Tensor:
    """Jitter ``image [N, 3, H, W]`` in ``[0, 1]`` with factors drawn per camera from ``generator``."""
    n = image.shape[0]

    def draw(strength: float) -> torch.Tensor:
        return (1.0 + (torch.rand(n, generator=generator, dtype=torch.float64) * 2 - 1) * strength) \
            .to(image.dtype).view(n, 1, 1, 1)

    b, c, s = draw(brightness), draw(contrast), draw(saturation)
    gray = (0.299 * image[:, 0:1] + 0.587 * image[:, 1:2] + 0.114 * image[:, 2:3])
    mean = gray.mean(dim=(1, 2, 3), keepdim=True)
    x = (image - mean) * c + mean
    gray = (0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3])
    x = gray + (x - gray) * s
    return (x * b).clamp(0.0, 1.0)


def augment_sample(sample: dict[str, Any], config: AugmentConfig, generator: torch.Generator) -> dict[str, Any]:
    """Random flip then colour jitter, all draws from ``generator`` (seed it from the sample index and epoch)."""
    flip = torch.rand((), generator=generator, dtype=torch.float64).item() < config.flip_probability
    out = flip_sample(sample) if flip else dict(sample)
    out[S.IMAGE] = color_jitter(out[S.IMAGE], generator, config.brightness, config.contrast, config.saturation)
    return out
