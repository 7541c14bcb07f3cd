"""Exact ray casting of a SurroundSim world in torch: camera images, dense depth, object ids, LiDAR returns.

Rays start at the sensor and run along ``d``; a hit at parameter ``t`` lies at ``o + t d``. Camera rays use
``d = R_world_cam K^-1 [u, v, 1]^T`` (not normalised), so the optical-frame z of the hit is exactly ``t``: the
dense depth is the ray parameter itself, with no further conversion. Intersections are analytic:

- ground plane ``z = 0``: ``t = -o_z / d_z`` for ``d_z < 0``;
- axis-aligned box (slab method): ``t_near = max_a min(t_a^lo, t_a^hi)``, ``t_far = min_a max(t_a^lo, t_a^hi)``
  with ``t_a^lo = (lo_a - o_a) / d_a``; a hit when ``t_far >= t_near > 0``;
- sphere of centre ``c``, radius ``r``: ``t = (b - sqrt(b^2 - |d|^2 (|c - o|^2 - r^2))) / |d|^2``, ``b = d.(c - o)``.

Speed comes from culling, not approximation: for a camera each primitive is tested only on the pixel rectangle
its bounding box projects to (corners behind the camera are clipped against the near plane first), and for the
LiDAR only on the azimuth columns it spans. All arithmetic is elementwise (no matrix products, no reductions
across rays), so the bytes produced do not depend on the number of threads.

Shading: procedural albedo textures from world coordinates (asphalt with lane markings, paving slabs, facades
with window grids, car paint and glass, foliage), Lambert shading under a seeded sun, aerial haze towards the
horizon colour, and a sky gradient where nothing is hit. Sky pixels have depth 0 (no valid depth).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from surround_depth_train.data.surroundsim.world import Material, World

__all__ = ['NEAR', 'FAR', 'CameraRender', 'render_camera', 'cast_rays', 'shade_albedo', 'azimuth_ranges']

NEAR = 0.05
#: Rays travelling further than this (in ``t``) see sky; it keeps grazing ground rays finite.
FAR = 1000.0
_SKY_HORIZON = (0.80, 0.85, 0.90)
_SKY_ZENITH = (0.30, 0.50, 0.82)
_HAZE_DISTANCE = 350.0
_EGO_COLOR = (0.12, 0.13, 0.15)
_EDGES = np.array([[0, 1], [0, 2], [1, 3], [2, 3], [4, 5], [4, 6], [5, 7], [6, 7],
                   [0, 4], [1, 5], [2, 6], [3, 7]])


@dataclass
class _Prims:
    """Primitives near a sensor, relative to its origin (world axes), with lookup tables indexed by prim id.

    Prim id 0 is the ground, ``1..P`` the boxes kept, ``P+1..P+S`` the spheres kept; -1 is the sky.
    """

    lo: np.ndarray          # [P, 3] relative
    hi: np.ndarray
    center: np.ndarray      # [S, 3] relative
    radius: np.ndarray      # [S]
    material: torch.Tensor  # [1 + P + S] int64
    color: torch.Tensor     # [1 + P + S, 3]
    moving: torch.Tensor    # [1 + P + S] bool
    table_lo: torch.Tensor  # [1 + P + S, 3] relative (boxes only meaningful)
    table_hi: torch.Tensor
    table_center: torch.Tensor
    ground_z: float         # ground plane height relative to the origin


def _gather_prims(world: World, t: float, origin: np.ndarray, max_distance: float) -> _Prims:
    lo, hi = world.boxes_at(t)
    lo = lo - origin
    hi = hi - origin
    # distance from the origin (now 0) to each box
    gap = np.maximum(np.maximum(lo, -hi), 0.0)
    keep = np.sqrt((gap ** 2).sum(1)) <= max_distance
    lo, hi = lo[keep], hi[keep]
    c = world.sphere_center - origin
    r = world.sphere_radius
    keep_s = np.sqrt((c ** 2).sum(1)) - r <= max_distance
    c, r = c[keep_s], r[keep_s]
    p, s = len(lo), len(c)
    material = np.concatenate([[Material.GROUND], world.box_material[keep], np.full(s, Material.FOLIAGE)])
    color = np.concatenate([np.zeros((1, 3), np.float32), world.box_color[keep],
                            world.sphere_color[keep_s]]).astype(np.float32)
    moving = np.concatenate([[False], world.box_velocity[keep] != 0, np.zeros(s, bool)])
    zeros1 = np.zeros((1, 3))
    table_lo = np.concatenate([zeros1, lo, np.zeros((s, 3))])
    table_hi = np.concatenate([zeros1, hi, np.zeros((s, 3))])
    table_c = np.concatenate([zeros1, np.zeros((p, 3)), c])
    f32 = torch.float32
    return _Prims(lo=lo, hi=hi, center=c, radius=r, material=torch.from_numpy(material.astype(np.int64)),
                  color=torch.from_numpy(color), moving=torch.from_numpy(moving),
                  table_lo=torch.tensor(table_lo, dtype=f32), table_hi=torch.tensor(table_hi, dtype=f32),
                  table_center=torch.tensor(table_c, dtype=f32), ground_z=float(-origin[2]))


def _hit_box(dx, dy, dz, ix, iy, iz, lo, hi):
    """Slab test of rays from the origin against box ``[lo, hi]``: ``(t_near, hit)``."""
    lo, hi = [float(a) for a in lo], [float(a) for a in hi]
    ax, bx = lo[0] * ix, hi[0] * ix
    ay, by = lo[1] * iy, hi[1] * iy
    az, bz = lo[2] * iz, hi[2] * iz
    t_near = torch.maximum(torch.maximum(torch.minimum(ax, bx), torch.minimum(ay, by)), torch.minimum(az, bz))
    t_far = torch.minimum(torch.minimum(torch.maximum(ax, bx), torch.maximum(ay, by)), torch.maximum(az, bz))
    return t_near, (t_far >= t_near) & (t_near > NEAR)


def _hit_sphere(dx, dy, dz, dd, c, r):
    """Rays from the origin against a sphere: ``(t, hit)``; ``dd = |d|^2``."""
    c, r = [float(a) for a in c], float(r)
    b = dx * c[0] + dy * c[1] + dz * c[2]
    disc = b * b - dd * float(c[0] ** 2 + c[1] ** 2 + c[2] ** 2 - r * r)
    t = (b - torch.sqrt(torch.clamp(disc, min=0.0))) / dd
    return t, (disc >= 0) & (t > NEAR)


def _zbuffer(zb, ib, t, hit, prim_id: int) -> None:
    closer = hit & (t < zb)
    zb.copy_(torch.where(closer, t, zb))
    ib.copy_(torch.where(closer, torch.full_like(ib, prim_id), ib))


def _ground(dz, ground_z: float):
    t = ground_z / torch.where(dz < 0, dz, torch.full_like(dz, -1e-30))
    return t, (dz < 0) & (t > NEAR) & (t < FAR)


def _hash(ix: torch.Tensor, iy: torch.Tensor, seed: int) -> torch.Tensor:
    """Integer hash of lattice cells to ``[0, 1]`` (wrapping int64 arithmetic: identical on every machine)."""
    h = ix * 374761393 + iy * 668265263 + seed * 1442695041
    h = (h ^ (h >> 13)) * 1274126177
    h = h ^ (h >> 16)
    return (h & 0xFFFF).to(torch.float32) / 65535.0


def _cell(a: torch.Tensor, b: torch.Tensor, scale: float, seed: int) -> torch.Tensor:
    """Blocky noise: one random value per ``scale`` x ``scale`` cell."""
    return _hash(torch.floor(a / scale).to(torch.int64), torch.floor(b / scale).to(torch.int64), seed)


def _smooth(a: torch.Tensor, b: torch.Tensor, scale: float, seed: int) -> torch.Tensor:
    """Bilinear value noise with lattice spacing ``scale``."""
    a, b = a / scale, b / scale
    fa, fb = torch.floor(a), torch.floor(b)
    ia, ib = fa.to(torch.int64), fb.to(torch.int64)
    wa, wb = a - fa, b - fb
    wa, wb = wa * wa * (3 - 2 * wa), wb * wb * (3 - 2 * wb)
    h00, h10 = _hash(ia, ib, seed), _hash(ia + 1, ib, seed)
    h01, h11 = _hash(ia, ib + 1, seed), _hash(ia + 1, ib + 1, seed)
    return (h00 * (1 - wa) + h10 * wa) * (1 - wb) + (h01 * (1 - wa) + h11 * wa) * wb


def _box_normal(p, lo, hi):
    """Outward normal of the box face nearest to hit point ``p`` (all ``[..., 3]``)."""
    dist = torch.cat([(p - lo).abs(), (p - hi).abs()], dim=-1)
    face = torch.argmin(dist, dim=-1)
    axis = face % 3
    sign = torch.where(face >= 3, 1.0, -1.0)
    n = torch.zeros_like(p)
    n.scatter_(-1, axis.unsqueeze(-1), sign.unsqueeze(-1))
    return n


def shade_albedo(world: World, material: torch.Tensor, pw: torch.Tensor, n: torch.Tensor,
                 base: torch.Tensor) -> torch.Tensor:
    """Procedural albedo ``[..., 3]`` in [0, 1] at world points ``pw`` with normals ``n`` (flat tensors ``[R]``).

    The texture is a function of world coordinates only, so the same surface looks the same from every camera
    and frame (what photometric self-supervision relies on), and its grain shrinks with distance (a texture
    gradient, one of the monocular depth cues).
    """
    seed = world.texture_seed
    x, y, z = pw[..., 0], pw[..., 1], pw[..., 2]
    out = base.clone()
    cfg = world.config
    road = cfg.road_half_width
    # ground: asphalt with markings on the road, earth and gravel beyond the sidewalk
    g = material == Material.GROUND
    ay = y.abs()
    asphalt = 0.20 + 0.10 * _smooth(x, y, 2.0, seed) + 0.08 * _cell(x, y, 0.12, seed + 1)
    lanes = cfg.lanes_per_direction * cfg.lane_width
    centre = ay < 0.08
    edge = (ay - lanes).abs() < 0.08
    k = torch.round(ay / cfg.lane_width)
    divider = ((ay - k * cfg.lane_width).abs() < 0.07) & (k >= 1) & (k < cfg.lanes_per_direction) & \
        (torch.remainder(x, 9.0) < 3.0)
    white = (edge | divider) & (ay < road)
    earth = 0.30 + 0.12 * _smooth(x, y, 1.5, seed + 2) + 0.08 * _cell(x, y, 0.2, seed + 3)
    grey = torch.where(ay < road, asphalt, earth)
    gcol = torch.stack([grey, grey, grey * 0.95], -1)
    gcol = torch.where((ay >= road).unsqueeze(-1), gcol * torch.tensor([1.05, 1.0, 0.75]), gcol)
    gcol = torch.where(white.unsqueeze(-1), torch.full_like(gcol, 0.85), gcol)
    gcol = torch.where((centre & (ay < road)).unsqueeze(-1), torch.tensor([0.85, 0.70, 0.20]).expand_as(gcol),
                       gcol)
    out = torch.where(g.unsqueeze(-1), gcol, out)
    # sidewalk: 1 m slabs with dark joints on top, plain concrete on the curb face
    sw = material == Material.SIDEWALK
    top = n[..., 2] > 0.5
    joint = (torch.remainder(x, 1.0) < 0.04) | (torch.remainder(y, 1.0) < 0.04)
    slab = 0.85 + 0.2 * _cell(x, y, 1.0, seed + 4) + 0.1 * _cell(x, y, 0.1, seed + 5)
    swf = torch.where(top & joint, 0.6, torch.where(top, slab, 1.15)).unsqueeze(-1)
    out = torch.where(sw.unsqueeze(-1), (base * swf).clamp(0, 1), out)
    # buildings: window grid on the facades (3.2 m floors), a darker ground floor, noisy render
    bd = material == Material.BUILDING
    along = torch.where(n[..., 0].abs() > 0.5, y, x)
    vertical = n[..., 2].abs() < 0.5
    win = (torch.remainder(along, 3.0) > 0.9) & (torch.remainder(along, 3.0) < 2.3) & \
        (torch.remainder(z, 3.2) > 1.0) & (torch.remainder(z, 3.2) < 2.5) & (z > 3.2) & vertical
    ground_floor = (z < 3.2) & vertical
    wall = base * (0.9 + 0.15 * _cell(along, z, 0.25, seed + 6)).unsqueeze(-1)
    glass = (0.12 + 0.25 * _cell(torch.floor(along / 3.0), torch.floor(z / 3.2), 1.0, seed + 7)).unsqueeze(-1) * \
        torch.tensor([0.75, 0.85, 1.0])
    bcol = torch.where(win.unsqueeze(-1), glass, wall)
    bcol = torch.where(ground_floor.unsqueeze(-1), bcol * 0.7, bcol)
    bcol = torch.where((~vertical).unsqueeze(-1), base * 0.5, bcol)
    out = torch.where(bd.unsqueeze(-1), bcol, out)
    # cars: paint with a dark rocker/wheel band; glass on the cabin's sides, paint on its roof
    car = material == Material.CAR_BODY
    ccol = torch.where((z < 0.45).unsqueeze(-1), torch.full_like(base, 0.05), base)
    out = torch.where(car.unsqueeze(-1), ccol, out)
    cab = material == Material.CAR_GLASS
    cglass = torch.where(vertical.unsqueeze(-1), (0.08 + 0.10 * (z - 0.9).clamp(0, 1)).unsqueeze(-1) *
                         torch.tensor([0.9, 1.0, 1.15]), (base / 0.6).clamp(0, 1))
    out = torch.where(cab.unsqueeze(-1), cglass, out)
    # trunks and foliage: bark stripes and leafy grain
    tr = material == Material.TRUNK
    out = torch.where(tr.unsqueeze(-1), base * (0.7 + 0.5 * _cell(x + y, z, 0.15, seed + 8)).unsqueeze(-1), out)
    fo = material == Material.FOLIAGE
    leaf = 0.55 + 0.6 * _cell(x + 0.5 * z, y - 0.5 * z, 0.18, seed + 9) * _cell(x, z + y, 0.31, seed + 10)
    out = torch.where(fo.unsqueeze(-1), (base * leaf.unsqueeze(-1)).clamp(0, 1), out)
    return out


def _shade(world: World, albedo: torch.Tensor, n: torch.Tensor, dist: torch.Tensor) -> torch.Tensor:
    sun = world.sun.astype(np.float64)
    lambert = (n[..., 0] * float(sun[0]) + n[..., 1] * float(sun[1]) + n[..., 2] * float(sun[2])).clamp(min=0)
    # sky light is stronger on up-facing surfaces
    ambient = 0.38 + 0.12 * n[..., 2].clamp(min=0)
    col = albedo * (ambient + 0.75 * lambert).unsqueeze(-1)
    fog = (1.0 - torch.exp(-dist / _HAZE_DISTANCE)).unsqueeze(-1)
    return col * (1 - fog) + torch.tensor(_SKY_HORIZON) * fog


def _sky(dz_unit: torch.Tensor) -> torch.Tensor:
    w = (dz_unit * 2.5).clamp(0, 1).unsqueeze(-1)
    return torch.tensor(_SKY_HORIZON) * (1 - w) + torch.tensor(_SKY_ZENITH) * w


def _screen_rects(lo: np.ndarray, hi: np.ndarray, R_cam_world: np.ndarray, K: np.ndarray, width: int,
                  height: int) -> np.ndarray:
    """Pixel rectangles ``[P, 4]`` (u0, u1, v0, v1; half-open) covering each box's projection, near-clipped.

    The visible part of a box is the convex hull of its corners in front of the near plane and the points where
    its edges cross that plane, so the rectangle of their projections bounds every pixel the box can cover.
    """
    if len(lo) == 0:
        return np.zeros((0, 4), np.int64)
    sel = np.array([[(i >> 0) & 1, (i >> 1) & 1, (i >> 2) & 1] for i in range(8)], dtype=bool)
    corners = np.where(sel[None], hi[:, None, :], lo[:, None, :])           # [P, 8, 3]
    pc = corners @ R_cam_world.T
    a, b = pc[:, _EDGES[:, 0]], pc[:, _EDGES[:, 1]]                          # [P, 12, 3]
    za, zb = a[..., 2] - NEAR, b[..., 2] - NEAR
    cross = (za * zb) < 0
    with np.errstate(divide='ignore', invalid='ignore'):
        s = np.where(cross, za / (za - zb), 0.0)
    xing = a + s[..., None] * (b - a)
    xing[..., 2] = NEAR
    pts = np.concatenate([pc, xing], axis=1)                                 # [P, 20, 3]
    valid = np.concatenate([pc[..., 2] >= NEAR, cross], axis=1)
    z = np.where(valid, pts[..., 2], 1.0)
    xn, yn = pts[..., 0] / z, pts[..., 1] / z
    u = K[0, 0] * xn + K[0, 1] * yn + K[0, 2]
    v = K[1, 1] * yn + K[1, 2]
    umin = np.where(valid, u, np.inf).min(1)
    umax = np.where(valid, u, -np.inf).max(1)
    vmin = np.where(valid, v, np.inf).min(1)
    vmax = np.where(valid, v, -np.inf).max(1)
    any_valid = valid.any(1)
    rect = np.zeros((len(lo), 4), np.int64)
    with np.errstate(invalid='ignore'):
        rect[:, 0] = np.clip(np.floor(np.nan_to_num(umin, posinf=width, neginf=0)) - 1, 0, width)
        rect[:, 1] = np.clip(np.ceil(np.nan_to_num(umax, posinf=width, neginf=0)) + 2, 0, width)
        rect[:, 2] = np.clip(np.floor(np.nan_to_num(vmin, posinf=height, neginf=0)) - 1, 0, height)
        rect[:, 3] = np.clip(np.ceil(np.nan_to_num(vmax, posinf=height, neginf=0)) + 2, 0, height)
    rect[~any_valid] = 0
    return rect


@dataclass
class CameraRender:
    """One rendered camera: ``rgb`` uint8 ``[H, W, 3]``, ``depth`` float32 ``[H, W]`` (optical z, metres; 0 on sky
    and on the ego body), ``self_mask`` bool (True = sees the scene), ``dynamic`` bool (True = moving object),
    ``material`` int64 (-1 sky)."""

    rgb: np.ndarray
    depth: np.ndarray
    self_mask: np.ndarray
    dynamic: np.ndarray
    material: np.ndarray


def _camera_dirs(K: np.ndarray, R: np.ndarray, width: int, height: int):
    """Directions ``R K^-1 [u, v, 1]`` as three ``[H, W]`` float32 tensors (elementwise, thread-independent)."""
    u = torch.arange(width, dtype=torch.float64).view(1, -1)
    v = torch.arange(height, dtype=torch.float64).view(-1, 1)
    fx, s, cx, fy, cy = (float(K[0, 0]), float(K[0, 1]), float(K[0, 2]), float(K[1, 1]), float(K[1, 2]))
    yn = (v - cy) / fy
    xn = (u - cx - s * yn) / fx
    xn, yn = torch.broadcast_tensors(xn, yn)
    R = [[float(a) for a in row] for row in R]
    d = [(R[i][0] * xn + R[i][1] * yn + R[i][2]).to(torch.float32).contiguous() for i in range(3)]
    return d


def _inverse(d: torch.Tensor) -> torch.Tensor:
    return 1.0 / d


def render_camera(world: World, t: float, T_world_base: np.ndarray, T_base_cam: np.ndarray, K: np.ndarray,
                  width: int, height: int, ego_lo: np.ndarray | None = None, ego_hi: np.ndarray | None = None,
                  max_distance: float = 250.0) -> CameraRender:
    """Render one pinhole camera at time ``t``.

    Args:
        world: the scene; boxes are placed at time ``t``.
        T_world_base: ego pose at ``t``; T_base_cam: the camera mount (base_link <- optical).
        K: 3x3 intrinsics for ``width`` x ``height``.
        ego_lo, ego_hi: the ego body box in base_link (None: no ego body).
        max_distance: primitives further than this are not drawn (the haze hides them).
    """
    T_wc = T_world_base @ T_base_cam
    origin = T_wc[:3, 3]
    R = T_wc[:3, :3]
    prims = _gather_prims(world, t, origin, max_distance)
    dx, dy, dz = _camera_dirs(K, R, width, height)
    ix, iy, iz = _inverse(dx), _inverse(dy), _inverse(dz)
    dd = dx * dx + dy * dy + dz * dz
    zb = torch.full((height, width), FAR, dtype=torch.float32)
    ib = torch.full((height, width), -1, dtype=torch.int64)
    tg, hg = _ground(dz, prims.ground_z)
    _zbuffer(zb, ib, tg, hg, 0)
    rects = _screen_rects(prims.lo, prims.hi, R.T, K, width, height)
    for k in range(len(prims.lo)):
        u0, u1, v0, v1 = (int(r) for r in rects[k])
        if u1 <= u0 or v1 <= v0:
            continue
        sl = (slice(v0, v1), slice(u0, u1))
        tk, hk = _hit_box(dx[sl], dy[sl], dz[sl], ix[sl], iy[sl], iz[sl], prims.lo[k], prims.hi[k])
        _zbuffer(zb[sl], ib[sl], tk, hk, 1 + k)
    srects = _screen_rects(prims.center - prims.radius[:, None], prims.center + prims.radius[:, None], R.T, K,
                           width, height)
    p = len(prims.lo)
    for j in range(len(prims.center)):
        u0, u1, v0, v1 = (int(r) for r in srects[j])
        if u1 <= u0 or v1 <= v0:
            continue
        sl = (slice(v0, v1), slice(u0, u1))
        tj, hj = _hit_sphere(dx[sl], dy[sl], dz[sl], dd[sl], prims.center[j], prims.radius[j])
        _zbuffer(zb[sl], ib[sl], tj, hj, 1 + p + j)
    # ego body, in base_link coordinates (it moves with the cameras)
    self_hit = torch.zeros((height, width), dtype=torch.bool)
    ego_t = None
    if ego_lo is not None:
        Rb = T_base_cam[:3, :3]
        bx, by, bz = _camera_dirs(K, Rb, width, height)
        o = T_base_cam[:3, 3]
        ego_t, eh = _hit_box(bx, by, bz, _inverse(bx), _inverse(by), _inverse(bz), ego_lo - o, ego_hi - o)
        self_hit = eh & (ego_t < zb)
    sky = ib < 0
    idx = ib.clamp(min=0)
    material = prims.material[idx]
    depth = torch.where(sky | self_hit, torch.zeros_like(zb), zb)
    pr = torch.stack([dx * zb, dy * zb, dz * zb], -1)  # hit point relative to the camera
    n_box = _box_normal(pr, prims.table_lo[idx], prims.table_hi[idx])
    n_sph = pr - prims.table_center[idx]
    n_sph = n_sph / n_sph.norm(dim=-1, keepdim=True).clamp(min=1e-6)
    n = torch.where((material == Material.FOLIAGE).unsqueeze(-1), n_sph, n_box)
    n = torch.where((idx == 0).unsqueeze(-1), torch.tensor([0.0, 0.0, 1.0]), n)
    pw = pr + torch.tensor(origin, dtype=torch.float32)
    albedo = shade_albedo(world, material, pw, n, prims.color[idx])
    dist = zb * torch.sqrt(dd)
    rgb = _shade(world, albedo, n, dist)
    rgb = torch.where(sky.unsqueeze(-1), _sky(dz / torch.sqrt(dd)), rgb)
    if ego_t is not None:
        ego = torch.tensor(_EGO_COLOR) * (0.7 + 0.6 * (-bz / torch.sqrt(dd)).clamp(0, 1)).unsqueeze(-1)
        rgb = torch.where(self_hit.unsqueeze(-1), ego, rgb)
    rgb8 = torch.round(rgb.clamp(0, 1) * 255.0).to(torch.uint8)
    dynamic = prims.moving[idx] & ~sky & ~self_hit
    material = torch.where(sky, torch.full_like(material, -1), material)
    material = torch.where(self_hit, torch.full_like(material, Material.EGO), material)
    return CameraRender(rgb=rgb8.numpy(), depth=depth.numpy(), self_mask=(~self_hit).numpy(),
                        dynamic=dynamic.numpy(), material=material.numpy())


def cast_rays(world: World, t: float, origin: np.ndarray, dirs: np.ndarray,
              max_distance: float = 250.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cast arbitrary rays (no culling) from ``origin`` along ``dirs [R, 3]`` (world frame) at time ``t``.

    Returns:
        ``t [R]`` float64 ray parameters (0 where nothing is hit), ``material [R]`` (-1 = sky) and ``moving [R]``.
    """
    origin = np.asarray(origin, np.float64)
    prims = _gather_prims(world, t, origin, max_distance)
    d = torch.tensor(np.asarray(dirs, np.float64).reshape(-1, 3), dtype=torch.float32)
    dx, dy, dz = d[:, 0].contiguous(), d[:, 1].contiguous(), d[:, 2].contiguous()
    zb = torch.full(dx.shape, FAR, dtype=torch.float32)
    ib = torch.full(dx.shape, -1, dtype=torch.int64)
    _cast_all(prims, dx, dy, dz, zb, ib)
    hit = ib >= 0
    return (torch.where(hit, zb, torch.zeros_like(zb)).double().numpy(),
            torch.where(hit, prims.material[ib.clamp(min=0)], torch.full_like(ib, -1)).numpy(),
            (prims.moving[ib.clamp(min=0)] & hit).numpy())


def _cast_all(prims: _Prims, dx, dy, dz, zb, ib, cols: list[np.ndarray] | None = None) -> None:
    """Z-buffer every primitive into ``zb``/``ib`` (``[..., A]`` tensors); ``cols[k]``: the last-axis index
    ranges to test for primitive ``k`` (all when None)."""
    ix, iy, iz = _inverse(dx), _inverse(dy), _inverse(dz)
    dd = dx * dx + dy * dy + dz * dz
    tg, hg = _ground(dz, prims.ground_z)
    _zbuffer(zb, ib, tg, hg, 0)
    p = len(prims.lo)
    for k in range(p + len(prims.center)):
        ranges = [(0, dx.shape[-1])] if cols is None else cols[k]
        for a, b in ranges:
            sl = (..., slice(a, b))
            if k < p:
                tk, hk = _hit_box(dx[sl], dy[sl], dz[sl], ix[sl], iy[sl], iz[sl], prims.lo[k], prims.hi[k])
            else:
                j = k - p
                tk, hk = _hit_sphere(dx[sl], dy[sl], dz[sl], dd[sl], prims.center[j], prims.radius[j])
            _zbuffer(zb[sl], ib[sl], tk, hk, 1 + k)


def azimuth_ranges(lo: np.ndarray, hi: np.ndarray, R_base_world: np.ndarray, columns: int) -> list[list]:
    """Column index ranges of a spinning sensor's grid (column ``j`` at azimuth ``-pi + (j + 0.5) 2 pi / A``)
    that each box (relative to the sensor, world axes) can cover; boxes around the sensor get every column."""
    sel = np.array([[(i >> 0) & 1, (i >> 1) & 1, (i >> 2) & 1] for i in range(8)], dtype=bool)
    corners = np.where(sel[None], hi[:, None, :], lo[:, None, :]) @ R_base_world.T
    centre = 0.5 * (lo + hi) @ R_base_world.T
    az_c = np.arctan2(centre[:, 1], centre[:, 0])
    az = np.arctan2(corners[..., 1], corners[..., 0])
    delta = np.angle(np.exp(1j * (az - az_c[:, None])))
    dmin, dmax = delta.min(1), delta.max(1)
    gap = np.maximum(np.maximum(lo, -hi), 0.0)[:, :2]
    around = (np.sqrt((gap ** 2).sum(1)) < 0.5) | (dmax - dmin > 0.9 * math.pi)
    step = 2 * math.pi / columns
    out = []
    for k in range(len(lo)):
        if around[k]:
            out.append([(0, columns)])
            continue
        j0 = int(math.floor((az_c[k] + dmin[k] + math.pi) / step - 0.5)) - 1
        j1 = int(math.ceil((az_c[k] + dmax[k] + math.pi) / step - 0.5)) + 2
        if j0 < 0:
            out.append([(0, min(j1, columns)), (columns + j0, columns)])
        elif j1 > columns:
            out.append([(j0, columns), (0, j1 - columns)])
        else:
            out.append([(j0, j1)])
    return out
