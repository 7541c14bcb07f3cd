"""Cross-view consistency: how well adjacent cameras' depth maps agree where their views overlap.

VRKD claims to make a student's cameras agree with each other; this measures it. For adjacent cameras ``i`` and
``j`` (the rig's cyclic pairs) and every valid pixel ``p`` of camera ``i``:

    X   = T_j<-i  unproject(p, D_i(p))        the 3D point camera i's depth puts there, in camera j's frame
    q,z = project(X)                          where camera j sees that point, and at which depth
    d   = D_j(q)                              camera j's own depth there (inverse depth interpolated bilinearly)
    r   = |z - d| / d                         relative disagreement

    T_j<-i = T_base_cam_j^-1  T_world_base(t_j)^-1  T_world_base(t_i)  T_base_cam_i

The cameras fire tens of milliseconds apart while the car moves, so each camera's pixels are placed in the world
with the ego pose at its own stamp (``T_world_base_cams``); without those poses (``None``) one pose serves all six
and the car's motion between the shutters shows up as disagreement. Left out:

- pixels on moving objects (``dynamic_mask``, where the dataset has it) and on the ego body (``self_mask``), in
  either camera: they moved between the stamps, or are not the scene;
- depths outside ``(min_depth, max_depth)`` or not finite, and points that land outside camera j's image;
- occluded points: when ``z > d (1 + occlusion_margin)`` camera j sees something nearer along that ray, which an
  occluder explains as well as an error does. The opposite case, ``z < d``, cannot be an occlusion (camera j sees
  through where camera i puts a surface: free space violated), so it always counts. Each pair is measured in both
  directions, so an error in either camera shows up in one direction at least;
- depth edges: the four target pixels around ``q`` must lie within a ratio ``1 + edge_ratio`` of each other, so that
  a point is never compared with a blend of foreground and background.

Inverse depth is interpolated because it is affine in the image coordinates on a plane: on planar patches the
interpolation is exact, so exact depth gives ``r ~ 0`` up to rendering precision. The source pixels may be taken on
a grid (``stride``; the evaluation keeps about 16 k per camera, every 4th pixel each way at 640 x 384): the median
is the same to three digits and the cost a quarter (0.1 s per camera set at 640 x 384). The pair's score is the
median of ``r`` over both directions (robust to the few occlusions and edges the tests above miss); the rig's score
is the mean over pairs. With SurroundSim's exact dense depth and its per-camera poses the rig median is below 1e-3
(the tests hold it to that), and it grows with a per-camera scale error ``s``: about ``|s - 1|`` for a camera whose
depth is scaled by ``s`` against its neighbours.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from surround_depth_train.geometry.camera import project, unproject_depth
from surround_depth_train.geometry.transforms import invert_transform, transform_points

__all__ = ['ConsistencySettings', 'relative_disagreement', 'pair_transform', 'view_consistency',
           'ConsistencyAccumulator', 'pair_name']


@dataclass(frozen=True)
class ConsistencySettings:
    """Thresholds of the consistency measure (module docstring)."""

    min_depth: float
    max_depth: float
    occlusion_margin: float = 0.1
    edge_ratio: float = 0.25
    stride: int = 1  # source pixels on a grid of this step (the target stays dense): a cheaper, equal median

    @staticmethod
    def stride_for(height: int, width: int, pixels: int = 16384) -> int:
        """The grid step that keeps about ``pixels`` source pixels per camera (1 at small sizes)."""
        return max(1, round((height * width / pixels) ** 0.5))


def pair_name(names: Sequence[str], i: int, j: int) -> str:
    return f'{names[i]}-{names[j]}'


def pair_transform(T_base_cam_i: np.ndarray, T_base_cam_j: np.ndarray, T_world_base_i: np.ndarray | None = None,
                   T_world_base_j: np.ndarray | None = None) -> np.ndarray:
    """``T_j<-i``: camera ``i``'s optical frame at its stamp into camera ``j``'s at its own (ego poses optional)."""
    T = invert_transform(np.asarray(T_base_cam_j, np.float64))
    if T_world_base_i is not None and T_world_base_j is not None:
        T = T @ invert_transform(np.asarray(T_world_base_j, np.float64)) @ np.asarray(T_world_base_i, np.float64)
    return T @ np.asarray(T_base_cam_i, np.float64)


def _valid_depth(depth: np.ndarray, settings: ConsistencySettings, mask: np.ndarray | None) -> np.ndarray:
    valid = np.isfinite(depth) & (depth > settings.min_depth) & (depth < settings.max_depth)
    if mask is not None:
        valid &= mask.astype(bool)
    return valid


def relative_disagreement(depth_src: np.ndarray, depth_tgt: np.ndarray, K_src: np.ndarray, K_tgt: np.ndarray,
                          T_tgt_src: np.ndarray, settings: ConsistencySettings, mask_src: np.ndarray | None = None,
                          mask_tgt: np.ndarray | None = None) -> np.ndarray:
    """``r = |z - d| / d`` for every source pixel that has a visible, valid counterpart in the target (1-D array).

    Args:
        depth_src, depth_tgt: ``[H, W]`` depth (metres, optical z) of the two cameras.
        K_src, K_tgt: their intrinsics at these resolutions.
        T_tgt_src: source optical frame -> target optical frame (:func:`pair_transform`).
        settings: range and thresholds.
        mask_src, mask_tgt: ``[H, W]`` bool, True = usable (scene, static).
    """
    depth_src = np.asarray(depth_src, np.float64)
    depth_tgt = np.asarray(depth_tgt, np.float64)
    valid_src = _valid_depth(depth_src, settings, mask_src)
    valid_tgt = _valid_depth(depth_tgt, settings, mask_tgt)
    if settings.stride > 1:
        grid = np.zeros_like(valid_src)
        grid[::settings.stride, ::settings.stride] = True
        valid_src &= grid
    if not valid_src.any() or not valid_tgt.any():
        return np.zeros(0)
    points = unproject_depth(depth_src, K_src)[valid_src]
    uv, z = project(transform_points(T_tgt_src, points), np.asarray(K_tgt, np.float64))
    h, w = depth_tgt.shape
    with np.errstate(invalid='ignore'):
        inside = (z > settings.min_depth) & (uv[:, 0] >= 0) & (uv[:, 0] <= w - 1) & (uv[:, 1] >= 0) & \
            (uv[:, 1] <= h - 1)
    uv, z = uv[inside], z[inside]
    u0 = np.minimum(np.floor(uv[:, 0]).astype(np.int64), w - 2) if w > 1 else np.zeros(len(uv), np.int64)
    v0 = np.minimum(np.floor(uv[:, 1]).astype(np.int64), h - 2) if h > 1 else np.zeros(len(uv), np.int64)
    u1, v1 = np.minimum(u0 + 1, w - 1), np.minimum(v0 + 1, h - 1)
    corners = [(v0, u0), (v0, u1), (v1, u0), (v1, u1)]
    ok = np.ones(len(z), dtype=bool)
    for v, u in corners:
        ok &= valid_tgt[v, u]
    d = np.stack([depth_tgt[v, u] for v, u in corners])  # [4, M]
    with np.errstate(divide='ignore', invalid='ignore'):
        ok &= d.max(axis=0) <= d.min(axis=0) * (1.0 + settings.edge_ratio)
        fu, fv = uv[:, 0] - u0, uv[:, 1] - v0
        weights = np.stack([(1 - fu) * (1 - fv), fu * (1 - fv), (1 - fu) * fv, fu * fv])
        inv = (weights / d).sum(axis=0)
        d_at = 1.0 / inv
    ok &= np.isfinite(d_at)
    z, d_at = z[ok], d_at[ok]
    visible = z <= d_at * (1.0 + settings.occlusion_margin)
    return np.abs(z[visible] - d_at[visible]) / d_at[visible]


def view_consistency(depths: np.ndarray, K: np.ndarray, T_base_cam: np.ndarray, settings: ConsistencySettings,
                     T_world_base_cams: np.ndarray | None = None, masks: np.ndarray | None = None,
                     pairs: Sequence[tuple[int, int]] | None = None) -> dict[tuple[int, int], dict | None]:
    """Consistency of one camera set, per adjacent pair.

    Args:
        depths: ``[N, H, W]`` depth of every camera.
        K: ``[N, 3, 3]``; ``T_base_cam``: ``[N, 4, 4]``.
        settings: range and thresholds.
        T_world_base_cams: ``[N, 4, 4]`` ego pose at each camera's stamp, or None (one pose for all).
        masks: ``[N, H, W]`` bool, True = usable (not ego body, not a moving object).
        pairs: camera index pairs; default the cyclic neighbours ``(i, i+1 mod N)``.

    Returns:
        ``{(i, j): {'median': m, 'mean': r_mean, 'count': n}}``, ``None`` for a pair without correspondences.
    """
    depths = np.asarray(depths)
    n = depths.shape[0]
    pairs = [(i, (i + 1) % n) for i in range(n)] if pairs is None else list(pairs)
    out: dict[tuple[int, int], dict | None] = {}
    for i, j in pairs:
        r = []
        for a, b in ((i, j), (j, i)):
            T = pair_transform(T_base_cam[a], T_base_cam[b],
                               None if T_world_base_cams is None else T_world_base_cams[a],
                               None if T_world_base_cams is None else T_world_base_cams[b])
            r.append(relative_disagreement(depths[a], depths[b], K[a], K[b], T, settings,
                                           None if masks is None else masks[a], None if masks is None else masks[b]))
        r = np.concatenate(r)
        out[(i, j)] = None if r.size == 0 else {'median': float(np.median(r)), 'mean': float(np.mean(r)),
                                                'count': int(r.size)}
    return out


class ConsistencyAccumulator:
    """Per-pair means over camera sets of the per-set medians; ``summary()`` adds the rig mean over pairs."""

    def __init__(self, camera_names: Sequence[str]):
        self.names = list(camera_names)
        self._values: dict[str, list[dict]] = {}
        self._empty: dict[str, int] = {}

    def add(self, result: dict[tuple[int, int], dict | None]) -> None:
        for (i, j), value in result.items():
            key = pair_name(self.names, i, j)
            if value is None:
                self._empty[key] = self._empty.get(key, 0) + 1
            else:
                self._values.setdefault(key, []).append(value)

    def summary(self) -> dict:
        """``{'pairs': {name: {'median', 'mean', 'count', 'sets'} or None}, 'rig': mean of pair medians or None}``."""
        pairs: dict[str, dict | None] = {}
        keys = [pair_name(self.names, i, (i + 1) % len(self.names)) for i in range(len(self.names))]
        for key in keys + [k for k in self._values if k not in keys]:
            values = self._values.get(key)
            pairs[key] = None if not values else {
                'median': float(np.mean([v['median'] for v in values])),
                'mean': float(np.mean([v['mean'] for v in values])),
                'count': int(sum(v['count'] for v in values)), 'sets': len(values)}
        medians = [p['median'] for p in pairs.values() if p is not None]
        return {'pairs': pairs, 'rig': float(np.mean(medians)) if medians else None, 'empty': dict(self._empty)}
