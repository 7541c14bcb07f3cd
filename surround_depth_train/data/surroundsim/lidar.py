"""The roof LiDAR: a 32-beam spinning scanner simulated by exact ray casting.

Beam ``b`` points at elevation ``e_b`` (evenly spaced over ``elevation_deg``), column ``j`` at azimuth
``a_j = -pi + (j + 1/2) 2 pi / A`` in base_link, so the ray is ``(cos e cos a, cos e sin a, sin e)`` from the
mount. A return is kept when the range lies in ``[min_range, max_range]``, the ray is not blocked by the ego body
(real pipelines crop those), and a seeded Bernoulli draw keeps it (``dropout`` = probability of a lost return).
Intensity = albedo luminance x ``|cos|`` of the incidence angle, in ``[0, 1]``: lane markings come out bright.

Simplification: the sweep is instantaneous at its stamp (as if de-skewed), so the points are exact in base_link at
the LiDAR stamp; moving cars are placed at that stamp too, which is why they disagree with the camera images
taken up to 49 ms later (the dynamic mask marks them).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from surround_depth_train.config import ConfigError
from surround_depth_train.data.surroundsim.render import (FAR, _box_normal, _cast_all, _gather_prims, _hit_box,
                                                          azimuth_ranges, shade_albedo)
from surround_depth_train.data.surroundsim.rig import EGO_BODY_HI, EGO_BODY_LO, LIDAR_MOUNT
from surround_depth_train.data.surroundsim.world import Material, World

__all__ = ['LidarConfig', 'lidar_directions', 'simulate_sweep']


@dataclass
class LidarConfig:
    """The spinning LiDAR (defaults close to nuScenes' 32-beam LIDAR_TOP)."""

    beams: int = 32
    elevation_deg: tuple[float, float] = (-30.0, 10.0)
    columns: int = 1080
    min_range: float = 1.0
    max_range: float = 80.0
    dropout: float = 0.1

    def __post_init__(self) -> None:
        if self.beams < 1 or self.columns < 8:
            raise ConfigError(f'lidar: beams must be >= 1 and columns >= 8, got {self.beams}, {self.columns}')
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f'lidar.dropout: must be in [0, 1), got {self.dropout}')
        if not 0.0 <= self.min_range < self.max_range:
            raise ConfigError(f'lidar: need 0 <= min_range < max_range, got {self.min_range}, {self.max_range}')


def lidar_directions(config: LidarConfig) -> np.ndarray:
    """Unit ray directions ``[beams, columns, 3]`` in base_link."""
    e = np.deg2rad(np.linspace(config.elevation_deg[0], config.elevation_deg[1], config.beams))
    a = -np.pi + (np.arange(config.columns) + 0.5) * 2 * np.pi / config.columns
    e, a = np.meshgrid(e, a, indexing='ij')
    return np.stack([np.cos(e) * np.cos(a), np.cos(e) * np.sin(a), np.sin(e)], -1)


def simulate_sweep(world: World, t: float, T_world_base: np.ndarray, config: LidarConfig,
                   rng: np.random.Generator, mount: np.ndarray = LIDAR_MOUNT,
                   ego: bool = True) -> np.ndarray:
    """One sweep at time ``t``: points ``[M, 4]`` float32 ``(x, y, z, intensity)`` in base_link at ``t``."""
    R_wb = T_world_base[:3, :3]
    origin = T_world_base[:3, :3] @ mount + T_world_base[:3, 3]
    dirs_b = lidar_directions(config)
    dirs_w = dirs_b @ R_wb.T
    prims = _gather_prims(world, t, origin, config.max_range + 1.0)
    d = torch.tensor(dirs_w, dtype=torch.float32)
    dx, dy, dz = (d[..., i].contiguous() for i in range(3))
    zb = torch.full(dx.shape, FAR, dtype=torch.float32)
    ib = torch.full(dx.shape, -1, dtype=torch.int64)
    lo = np.concatenate([prims.lo, prims.center - prims.radius[:, None]])
    hi = np.concatenate([prims.hi, prims.center + prims.radius[:, None]])
    cols = azimuth_ranges(lo, hi, R_wb.T, config.columns) if len(lo) else []
    _cast_all(prims, dx, dy, dz, zb, ib, cols)
    hit = ib >= 0
    keep = hit & (zb >= config.min_range) & (zb <= config.max_range)
    if ego:
        db = torch.tensor(dirs_b, dtype=torch.float32)
        bx, by, bz = (db[..., i].contiguous() for i in range(3))
        te, he = _hit_box(bx, by, bz, 1.0 / bx, 1.0 / by, 1.0 / bz, EGO_BODY_LO - mount, EGO_BODY_HI - mount)
        keep &= ~(he & (te < zb))
    keep &= torch.from_numpy(rng.random(dx.shape) >= config.dropout)
    idx = ib[keep]
    rng_t = zb[keep]
    pr = torch.stack([dx[keep], dy[keep], dz[keep]], -1) * rng_t.unsqueeze(-1)
    material = prims.material[idx]
    n = _box_normal(pr, prims.table_lo[idx], prims.table_hi[idx])
    n_sph = pr - prims.table_center[idx]
    n_sph = n_sph / n_sph.norm(dim=-1, keepdim=True).clamp(min=1e-6)
    n = torch.where((material == Material.FOLIAGE).unsqueeze(-1), n_sph, n)
    n = torch.where((idx == 0).unsqueeze(-1), torch.tensor([0.0, 0.0, 1.0]), n)
    albedo = shade_albedo(world, material, pr + torch.tensor(origin, dtype=torch.float32), n, prims.color[idx])
    lum = 0.299 * albedo[:, 0] + 0.587 * albedo[:, 1] + 0.114 * albedo[:, 2]
    cos = (n[:, 0] * pr[:, 0] + n[:, 1] * pr[:, 1] + n[:, 2] * pr[:, 2]).abs() / rng_t
    intensity = (lum * cos).clamp(0, 1)
    # range x unit direction in base_link, in float64: exact to well under a millimetre
    pts_b = mount + dirs_b[keep.numpy()] * rng_t.double().numpy()[:, None]
    return np.concatenate([pts_b, intensity.double().numpy()[:, None]], 1).astype(np.float32)
