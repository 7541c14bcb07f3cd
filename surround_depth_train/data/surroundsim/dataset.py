"""SurroundSim as a torch Dataset in the shared schema (``data.schema.SurroundDataset``), with splits and a cache.

Sample ``index`` of a split is frame ``index % frames_per_scene`` of scene ``index // frames_per_scene``; the
scene's seed is ``SPLIT_SEEDS[split] + seed_offset + scene``. Split seed ranges are disjoint (train from 0, val
from 1,000,000, test from 2,000,000), so held-out streets are never seen in training. Everything about a sample is
a function of ``(world config, image size, split, seed_offset, index)`` alone, so DataLoader workers, resumed runs
and DDP shards see identical data. Augmentations draw from a generator seeded with ``(seed, index, epoch)``
(:meth:`SurroundSimDataset.set_epoch`).

Images are rendered directly at the network resolution with the rig's ``K`` rescaled from the native 640 x 384
rig (what a resize does to a real camera), so there is no ``depth_native`` key: the network resolution is the
native one. Depth range: ``min_depth = 0.5`` m, ``max_depth = 80`` m (the LiDAR's range, as nuScenes).

Per sample (schema keys): six RGB images; ``depth`` = LiDAR sweep projected into each camera with ego-motion
compensation ``base(t_cam) <- base(t_lidar)`` looked up in a ``TransformBuffer`` of 100 Hz ego poses;
``depth_dense`` = exact rendered depth at each camera's own shutter time; ``self_mask``; ``dynamic_mask``; ``lidar``
in base_link at the LiDAR stamp; ``stamps``; ``T_world_base``; ``T_world_base_cams``. Parallax between the roof LiDAR and a camera can put
a return on a pixel where the camera sees a nearer surface (as in real data); such pixels are rare and kept.

Cache: with ``cache_dir``, the rendered (un-augmented) payload is stored as one ``.npz`` per sample under a key
that hashes everything it depends on, written atomically, so later epochs load instead of rendering and a crashed
render never leaves a partial entry.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from surround_depth_train.atomic import atomic_write
from surround_depth_train.config import ConfigError, to_mapping
from surround_depth_train.data import schema as S
from surround_depth_train.data.surroundsim.lidar import LidarConfig, simulate_sweep
from surround_depth_train.data.surroundsim.render import render_camera
from surround_depth_train.data.surroundsim.rig import EGO_BODY_HI, EGO_BODY_LO, surroundsim_rig
from surround_depth_train.data.surroundsim.sequence import (BASE_FRAME, WORLD_FRAME, camera_stamps, ego_pose,
                                                            ego_transform_buffer, lidar_stamp)
from surround_depth_train.data.surroundsim.world import World, WorldConfig, generate_world, load_world_config
from surround_depth_train.data.transforms import AugmentConfig, augment_sample
from surround_depth_train.geometry.lidar import points_to_depth
from surround_depth_train.geometry.rig import CameraRig

__all__ = ['SPLIT_SEEDS', 'MIN_DEPTH', 'MAX_DEPTH', 'RENDER_VERSION', 'render_sample', 'payload_to_sample',
           'SurroundSimDataset']

SPLIT_SEEDS = {'train': 0, 'val': 1_000_000, 'test': 2_000_000}
#: Scenes per split before seed ranges would overlap.
SPLIT_CAPACITY = 1_000_000
MIN_DEPTH = 0.5
MAX_DEPTH = 80.0
#: Bump when rendering changes, so stale cache entries are not reused.
RENDER_VERSION = 2  # 2: T_world_base_cams
_PAYLOAD_KEYS = ('image', 'depth_dense', 'sparse_index', 'sparse_value', 'self_mask', 'dynamic_mask', 'lidar',
                 'stamps', 'lidar_stamp', 'T_world_base', 'T_world_base_cams')


#: Cameras of at most this many pixels render on one torch thread (see :func:`render_sample`).
SINGLE_THREAD_PIXELS = 320 * 192


@contextlib.contextmanager
def _torch_threads(n: int):
    before = torch.get_num_threads()
    if n >= before:
        yield
        return
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def render_sample(world: World, rig: CameraRig, frame: int, lidar: LidarConfig | None = None,
                  timings: dict[str, float] | None = None) -> dict[str, np.ndarray]:
    """Render frame ``frame`` of ``world`` with ``rig``: the numpy payload that the cache stores.

    Returns:
        ``image [N, H, W, 3]`` uint8, ``depth_dense [N, H, W]`` float32, ``sparse_index`` int64 / ``sparse_value``
        float32 (flat indices into ``[N, H, W]`` of LiDAR depth), ``self_mask`` / ``dynamic_mask`` bool
        ``[N, H, W]``, ``lidar [M, 4]`` float32, ``stamps [N]`` float64, ``lidar_stamp`` float64,
        ``T_world_base [4, 4]`` float64, ``T_world_base_cams [N, 4, 4]`` float64 (ego pose at each shutter).
        ``timings`` (optional) receives seconds per stage.

    Small cameras (``<= SINGLE_THREAD_PIXELS``) render on one torch thread: their many small ops gain nothing
    from a second thread, and become 5-20x slower when another process competes for the cores (the threads wait
    on each other at every op). The bytes produced are the same either way.
    """
    small = all(cam.width * cam.height <= SINGLE_THREAD_PIXELS for cam in rig)
    with _torch_threads(1 if small else torch.get_num_threads()):
        return _render_sample(world, rig, frame, lidar, timings)


def _render_sample(world: World, rig: CameraRig, frame: int, lidar: LidarConfig | None,
                   timings: dict[str, float] | None) -> dict[str, np.ndarray]:
    import time

    lidar = lidar or LidarConfig()
    clock = time.perf_counter
    t_l = lidar_stamp(frame)
    stamps = camera_stamps(frame)
    if len(stamps) != len(rig):
        raise ValueError(f'SurroundSim has {len(stamps)} shutter offsets but the rig has {len(rig)} cameras')
    t0 = clock()
    T_wb = ego_pose(world, t_l)
    buf = ego_transform_buffer(world, t_l - 0.05, t_l + 0.1)
    t1 = clock()
    images, dense, selfm, dyn = [], [], [], []
    T_wb_cams = np.stack([ego_pose(world, float(t_c)) for t_c in stamps])
    for cam, t_c, T_wb_c in zip(rig, stamps, T_wb_cams):
        r = render_camera(world, float(t_c), T_wb_c, cam.T_base_cam, cam.K, cam.width,
                          cam.height, EGO_BODY_LO, EGO_BODY_HI)
        images.append(r.rgb)
        dense.append(r.depth)
        selfm.append(r.self_mask)
        dyn.append(r.dynamic)
    t2 = clock()
    rng = np.random.default_rng(np.random.SeedSequence([world.seed, frame, 0x11DA2]))
    points = simulate_sweep(world, t_l, T_wb, lidar, rng)
    t3 = clock()
    sparse = np.stack([
        points_to_depth(points, cam, T_correction=buf.motion_compensation(WORLD_FRAME, BASE_FRAME, t_l, float(t_c)))
        for cam, t_c in zip(rig, stamps)])
    flat = np.flatnonzero(sparse)
    t4 = clock()
    if timings is not None:
        timings.update(ego=t1 - t0, cameras=t2 - t1, lidar=t3 - t2, projection=t4 - t3)
    return {
        'image': np.stack(images), 'depth_dense': np.stack(dense), 'sparse_index': flat.astype(np.int64),
        'sparse_value': sparse.reshape(-1)[flat].astype(np.float32), 'self_mask': np.stack(selfm),
        'dynamic_mask': np.stack(dyn), 'lidar': points, 'stamps': stamps.astype(np.float64),
        'lidar_stamp': np.float64(t_l), 'T_world_base': T_wb, 'T_world_base_cams': T_wb_cams,
    }


def payload_to_sample(payload: dict[str, np.ndarray], rig: CameraRig, min_depth: float = MIN_DEPTH,
                      max_depth: float = MAX_DEPTH, meta: dict[str, Any] | None = None) -> dict[str, Any]:
    """The schema sample (torch tensors) of a rendered payload."""
    image = payload['image']
    n, h, w = image.shape[:3]
    depth = np.zeros(n * h * w, np.float32)
    depth[payload['sparse_index']] = payload['sparse_value']
    depth = depth.reshape(n, 1, h, w)
    self_mask = payload['self_mask'].reshape(n, 1, h, w)
    mask = (depth > 0) & (depth >= min_depth) & (depth <= max_depth) & self_mask
    return {
        S.IMAGE: torch.from_numpy(np.ascontiguousarray(image.transpose(0, 3, 1, 2))).to(torch.float32) / 255.0,
        S.K: torch.tensor(rig.intrinsics(), dtype=torch.float32),
        S.T_BASE_CAM: torch.tensor(rig.extrinsics(), dtype=torch.float32),
        S.DEPTH: torch.from_numpy(depth),
        S.DEPTH_MASK: torch.from_numpy(mask),
        S.SELF_MASK: torch.from_numpy(np.ascontiguousarray(self_mask)),
        S.DEPTH_DENSE: torch.from_numpy(np.ascontiguousarray(payload['depth_dense'].reshape(n, 1, h, w))),
        S.DYNAMIC_MASK: torch.from_numpy(np.ascontiguousarray(payload['dynamic_mask'].reshape(n, 1, h, w))),
        S.LIDAR: torch.from_numpy(np.ascontiguousarray(payload['lidar'], dtype=np.float32)),
        S.STAMPS: torch.from_numpy(np.asarray(payload['stamps'], np.float64)),
        S.LIDAR_STAMP: torch.tensor(float(payload['lidar_stamp']), dtype=torch.float64),
        S.T_WORLD_BASE: torch.tensor(np.asarray(payload['T_world_base']), dtype=torch.float32),
        S.T_WORLD_BASE_CAMS: torch.tensor(np.asarray(payload['T_world_base_cams']), dtype=torch.float32),
        S.META: dict(meta or {}, camera_names=rig.names),
    }


class SurroundSimDataset(S.SurroundDataset):
    """SurroundSim samples in the shared schema (module docstring).

    Args:
        split: ``'train'``, ``'val'`` or ``'test'`` (disjoint seed ranges).
        num_samples: length of the dataset.
        image_size: network resolution ``(W, H)``.
        world: a :class:`WorldConfig`, a YAML path (``config/surroundsim/*.yaml``) or None (defaults).
        cache_dir: directory for rendered samples (None: render every time).
        augment: False, True (default :class:`AugmentConfig`) or an :class:`AugmentConfig`.
        seed_offset: shifts the scene seeds inside the split (another draw of the same city).
        frames_per_scene: consecutive 10 Hz frames taken from each scene.
        lidar: the LiDAR model (None: defaults, 32 beams).
    """

    dataset_name = 'surroundsim'

    def __init__(self, split: str = 'train', num_samples: int = 100, image_size: tuple[int, int] = (640, 384),
                 world: WorldConfig | str | os.PathLike | None = None, cache_dir: str | os.PathLike | None = None,
                 augment: bool | AugmentConfig = False, seed_offset: int = 0, frames_per_scene: int = 4,
                 lidar: LidarConfig | None = None):
        if split not in SPLIT_SEEDS:
            raise ValueError(f'unknown split {split!r}; use one of {list(SPLIT_SEEDS)}')
        if num_samples < 1 or frames_per_scene < 1:
            raise ValueError(f'num_samples and frames_per_scene must be >= 1, got {num_samples}, {frames_per_scene}')
        w, h = (int(v) for v in image_size)
        if w < 8 or h < 8:
            raise ValueError(f'image_size must be (width, height) of at least 8 x 8 pixels, got {image_size}')
        scenes = -(-num_samples // frames_per_scene)
        if seed_offset < 0 or seed_offset + scenes > SPLIT_CAPACITY:
            raise ValueError(f'seed_offset {seed_offset} + {scenes} scenes leaves the {split!r} seed range '
                             f'(0..{SPLIT_CAPACITY}); use a smaller offset or fewer samples')
        try:
            self.world_config = load_world_config(world)
        except ConfigError as exc:
            raise ConfigError(f'SurroundSim world config: {exc}') from None
        self.split = split
        self.num_samples = int(num_samples)
        self.image_size = (w, h)
        self.rig = surroundsim_rig(w, h)
        self.min_depth = MIN_DEPTH
        self.max_depth = MAX_DEPTH
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.augment = AugmentConfig() if augment is True else (augment or None)
        self.seed_offset = int(seed_offset)
        self.frames_per_scene = int(frames_per_scene)
        self.lidar = lidar or LidarConfig()
        self.epoch = 0
        self._world: World | None = None

    def __len__(self) -> int:
        return self.num_samples

    def set_epoch(self, epoch: int) -> None:
        """Choose the augmentation draws of this epoch (rendered content does not change)."""
        self.epoch = int(epoch)

    def locate(self, index: int) -> tuple[int, int]:
        """``(scene seed, frame)`` of sample ``index``."""
        if not 0 <= index < self.num_samples:
            raise IndexError(f'index {index} out of range for {self.num_samples} samples')
        scene = index // self.frames_per_scene
        return SPLIT_SEEDS[self.split] + self.seed_offset + scene, index % self.frames_per_scene

    def world(self, seed: int) -> World:
        if self._world is None or self._world.seed != seed:
            self._world = generate_world(self.world_config, seed)
        return self._world

    def cache_key(self, seed: int, frame: int) -> str:
        desc = {'version': RENDER_VERSION, 'world': to_mapping(self.world_config), 'lidar': to_mapping(self.lidar),
                'size': list(self.image_size), 'seed': seed, 'frame': frame}
        return hashlib.sha1(json.dumps(desc, sort_keys=True).encode()).hexdigest()

    def payload(self, index: int) -> dict[str, np.ndarray]:
        """The rendered numpy payload of sample ``index`` (from the cache when present)."""
        seed, frame = self.locate(index)
        path = None
        if self.cache_dir is not None:
            path = self.cache_dir / f'{self.cache_key(seed, frame)}.npz'
            if path.is_file():
                try:
                    with np.load(path) as z:
                        return {k: z[k] for k in _PAYLOAD_KEYS}
                except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError):
                    pass  # unreadable entry (e.g. another version's): render again and overwrite it
        payload = render_sample(self.world(seed), self.rig, frame, self.lidar)
        if path is not None:
            with atomic_write(path, 'wb') as f:
                np.savez(f, **payload)
        return payload

    def __getitem__(self, index: int) -> dict[str, Any]:
        seed, frame = self.locate(index)
        meta = {'dataset': self.dataset_name, 'split': self.split, 'scene': f'surroundsim-{seed}', 'frame': frame,
                'seed': seed, 'index': index}
        sample = payload_to_sample(self.payload(index), self.rig, self.min_depth, self.max_depth, meta)
        if self.augment is not None:
            g = torch.Generator().manual_seed(int(hashlib.sha1(f'{seed}/{frame}/{self.epoch}'.encode())
                                                  .hexdigest()[:15], 16))
            sample = augment_sample(sample, self.augment, g)
        return sample
