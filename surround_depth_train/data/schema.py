"""The one sample schema shared by every surround-view dataset (SurroundSim, nuScenes, DDAD).

See :class:`SurroundDataset` for the schema itself; this module also holds the key names, :func:`validate_sample`
and :func:`collate_surround`.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch
from torch.utils.data import Dataset

from surround_depth_train.config import ConfigError
from surround_depth_train.geometry.rig import CameraRig

__all__ = [
    'IMAGE', 'K', 'T_BASE_CAM', 'DEPTH', 'DEPTH_MASK', 'SELF_MASK', 'DEPTH_NATIVE', 'DEPTH_NATIVE_MASK',
    'DEPTH_DENSE', 'DYNAMIC_MASK', 'LIDAR', 'LIDAR_COUNT', 'STAMPS', 'LIDAR_STAMP', 'T_WORLD_BASE', 'T_WORLD_BASE_CAMS',
    'META', 'REQUIRED_KEYS', 'OPTIONAL_KEYS', 'NUM_CAMERAS', 'SampleError', 'DatasetError', 'SurroundDataset', 'validate_sample',
    'collate_surround',
]

IMAGE = 'image'
K = 'K'
T_BASE_CAM = 'T_base_cam'
DEPTH = 'depth'
DEPTH_MASK = 'depth_mask'
SELF_MASK = 'self_mask'
DEPTH_NATIVE = 'depth_native'
DEPTH_NATIVE_MASK = 'depth_native_mask'
DEPTH_DENSE = 'depth_dense'
DYNAMIC_MASK = 'dynamic_mask'
LIDAR = 'lidar'
LIDAR_COUNT = 'lidar_count'
STAMPS = 'stamps'
LIDAR_STAMP = 'lidar_stamp'
T_WORLD_BASE = 'T_world_base'
T_WORLD_BASE_CAMS = 'T_world_base_cams'
META = 'meta'

NUM_CAMERAS = 6
REQUIRED_KEYS = (IMAGE, K, T_BASE_CAM, DEPTH, DEPTH_MASK, SELF_MASK, LIDAR, STAMPS, LIDAR_STAMP, T_WORLD_BASE,
                 META)
OPTIONAL_KEYS = (DEPTH_NATIVE, DEPTH_NATIVE_MASK, DEPTH_DENSE, DYNAMIC_MASK, T_WORLD_BASE_CAMS)
META_KEYS = ('dataset', 'scene', 'frame', 'camera_names')


class SampleError(ValueError):
    """A sample does not follow the schema; the message names the key, what was expected and what came."""


class DatasetError(ConfigError):
    """A dataset on disk cannot be read (wrong root, missing table, split or file); the message names the path
    and the fix. A :class:`ConfigError`, so command-line tools print it as one line."""


class SurroundDataset(Dataset):
    """Base class of the surround-view datasets. **This docstring is the sample schema.**

    One sample is one time instant of the whole rig: a ``dict`` whose tensors stack the ``N = 6`` cameras in the
    rig's cyclic order front, front_left, back_left, back, back_right, front_right (so camera ``i`` overlaps
    cameras ``i - 1`` and ``i + 1 mod N``). ``H x W`` is the network resolution ``image_size = (W, H)``.

    =====================  ===========  ==================  =========================================================
    key                    dtype        shape               meaning
    =====================  ===========  ==================  =========================================================
    ``image``              float32      ``[N, 3, H, W]``    RGB in ``[0, 1]`` (no normalisation: models own theirs)
    ``K``                  float32      ``[N, 3, 3]``       intrinsics at network resolution (OpenCV pixel centres)
    ``T_base_cam``         float32      ``[N, 4, 4]``       base_link <- camera optical frame (z fwd, x right, y down)
    ``depth``              float32      ``[N, 1, H, W]``    sparse LiDAR depth at network resolution, metres, optical
                                                            z (not range); ``0`` = no return
    ``depth_mask``         bool         ``[N, 1, H, W]``    True = usable GT: ``depth > 0``, ``min_depth <= depth <=
                                                            max_depth`` and ``self_mask``
    ``self_mask``          bool         ``[N, 1, H, W]``    True = the pixel sees the scene (False on the ego body)
    ``lidar``              float32      ``[M, 4]``          ``x, y, z`` (m, base_link at ``lidar_stamp``), intensity
    ``stamps``             float64      ``[N]``             camera shutter times, seconds
    ``lidar_stamp``        float64      ``[]``              LiDAR sweep time, seconds
    ``T_world_base``       float32      ``[4, 4]``          ego pose at ``lidar_stamp`` (world <- base_link)
    ``meta``               dict                             plain values: ``dataset``, ``scene``, ``frame``,
                                                            ``camera_names`` (list of N), dataset-specific extras
    =====================  ===========  ==================  =========================================================

    Optional keys are **absent** (never zero-filled) when a dataset has no such data:

    =====================  ===========  ==================  =========================================================
    ``depth_native``       float32      ``[N, 1, Hn, Wn]``  GT depth at the dataset's native resolution (evaluation,
                                                            as SurroundDepth does: predictions are resized to it)
    ``depth_native_mask``  bool         ``[N, 1, Hn, Wn]``  valid mask of ``depth_native`` (same rules as above)
    ``depth_dense``        float32      ``[N, 1, H, W]``    dense GT depth (synthetic data only); ``0`` = no depth
                                                            (sky, ego body)
    ``dynamic_mask``       bool         ``[N, 1, H, W]``    True = pixel on a moving object
    ``T_world_base_cams``  float32      ``[N, 4, 4]``       ego pose at each camera's stamp (world <- base_link);
                                                            ``T_world_base`` is the one at ``lidar_stamp``
    =====================  ===========  ==================  =========================================================

    Conventions: ``T_a_b`` maps points in frame ``b`` into frame ``a``; base_link follows REP 103 (x forward,
    y left, z up); every mask uses ``True = valid``; depth is metric; stamps are float seconds. LiDAR sparse depth is
    projected into each camera with ego-motion compensation from ``lidar_stamp`` to that camera's stamp.

    Batches (:func:`collate_surround`): tensors gain a leading batch dimension (``[B, N, ...]``, ``[B, N]``,
    ``[B]``); ``lidar`` is zero-padded to ``[B, Mmax, 4]`` with ``lidar_count`` int64 ``[B]`` giving each row's real
    length; ``meta`` becomes a dict of lists. An optional key is collated only when every sample has it.

    Subclasses set :attr:`rig` (the :class:`CameraRig` at network resolution), :attr:`min_depth`,
    :attr:`max_depth` and :attr:`image_size`, and implement ``__len__`` and ``__getitem__``.
    """

    dataset_name: str = 'surround'
    rig: CameraRig
    min_depth: float
    max_depth: float
    image_size: tuple[int, int]

    @property
    def camera_names(self) -> list[str]:
        return self.rig.names

    def __len__(self) -> int:  # pragma: no cover - abstract
        raise NotImplementedError

    def __getitem__(self, index: int) -> dict[str, Any]:  # pragma: no cover - abstract
        raise NotImplementedError


_SHAPES: dict[str, tuple[torch.dtype, tuple]] = {
    IMAGE: (torch.float32, ('N', 3, 'H', 'W')),
    K: (torch.float32, ('N', 3, 3)),
    T_BASE_CAM: (torch.float32, ('N', 4, 4)),
    DEPTH: (torch.float32, ('N', 1, 'H', 'W')),
    DEPTH_MASK: (torch.bool, ('N', 1, 'H', 'W')),
    SELF_MASK: (torch.bool, ('N', 1, 'H', 'W')),
    DEPTH_DENSE: (torch.float32, ('N', 1, 'H', 'W')),
    DYNAMIC_MASK: (torch.bool, ('N', 1, 'H', 'W')),
    DEPTH_NATIVE: (torch.float32, ('N', 1, 'Hn', 'Wn')),
    DEPTH_NATIVE_MASK: (torch.bool, ('N', 1, 'Hn', 'Wn')),
    LIDAR: (torch.float32, ('M', 4)),
    STAMPS: (torch.float64, ('N',)),
    LIDAR_STAMP: (torch.float64, ()),
    T_WORLD_BASE: (torch.float32, (4, 4)),
    T_WORLD_BASE_CAMS: (torch.float32, ('N', 4, 4)),
}


def validate_sample(sample: Mapping[str, Any], num_cameras: int = NUM_CAMERAS,
                    image_size: tuple[int, int] | None = None) -> None:
    """Check one (uncollated) sample against the schema.

    Args:
        sample: the sample dict.
        num_cameras: expected ``N``.
        image_size: expected ``(W, H)``; taken from ``image`` when None.

    Raises:
        SampleError: naming the first missing key, unknown key, wrong dtype or wrong shape.
    """
    if not isinstance(sample, Mapping):
        raise SampleError(f'a sample must be a dict of the schema keys, got {type(sample).__name__}')
    missing = [k for k in REQUIRED_KEYS if k not in sample]
    if missing:
        raise SampleError(f'sample is missing key(s) {missing}; every dataset must provide {list(REQUIRED_KEYS)} '
                          f'(see surround_depth_train.data.schema.SurroundDataset)')
    unknown = sorted(set(sample) - set(REQUIRED_KEYS) - set(OPTIONAL_KEYS))
    if unknown:
        raise SampleError(f'sample has unknown key(s) {unknown}; allowed optional keys are {list(OPTIONAL_KEYS)}')
    image = sample[IMAGE]
    if not isinstance(image, torch.Tensor) or image.dim() != 4:
        raise SampleError(f'{IMAGE!r}: expected a float32 tensor [N, 3, H, W], got '
                          f'{getattr(image, "shape", type(image).__name__)}')
    if image.shape[0] != num_cameras:
        raise SampleError(f'{IMAGE!r}: expected {num_cameras} cameras in cyclic order, got {image.shape[0]}; '
                          f'a sample holds the whole rig at one instant')
    if image_size is None:
        image_size = (image.shape[-1], image.shape[-2])
    dims = {'N': num_cameras, 'W': image_size[0], 'H': image_size[1]}
    if DEPTH_NATIVE in sample:
        dn = sample[DEPTH_NATIVE]
        if isinstance(dn, torch.Tensor) and dn.dim() == 4:
            dims.update(Hn=dn.shape[-2], Wn=dn.shape[-1])
    if (DEPTH_NATIVE in sample) != (DEPTH_NATIVE_MASK in sample):
        raise SampleError(f'{DEPTH_NATIVE!r} and {DEPTH_NATIVE_MASK!r} come together: give both or neither')
    for key, (dtype, shape) in _SHAPES.items():
        if key not in sample:
            continue
        value = sample[key]
        if not isinstance(value, torch.Tensor):
            raise SampleError(f'{key!r}: expected a torch tensor, got {type(value).__name__}')
        if value.dtype != dtype:
            raise SampleError(f'{key!r}: expected dtype {dtype}, got {value.dtype}')
        want = tuple(dims.get(s, s) if isinstance(s, str) else s for s in shape)
        if value.dim() != len(want) or any(not isinstance(w, str) and w != g for w, g in zip(want, value.shape)):
            raise SampleError(f'{key!r}: expected shape {list(want)} (symbolic {list(shape)}), got '
                              f'{list(value.shape)}')
    meta = sample[META]
    if not isinstance(meta, Mapping):
        raise SampleError(f'{META!r}: expected a dict of plain values, got {type(meta).__name__}')
    missing_meta = [k for k in META_KEYS if k not in meta]
    if missing_meta:
        raise SampleError(f'{META!r} is missing {missing_meta}')
    if len(meta['camera_names']) != num_cameras:
        raise SampleError(f'meta.camera_names: expected {num_cameras} names, got {meta["camera_names"]}')


def collate_surround(samples: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Collate samples into a batch (see :class:`SurroundDataset` for the batched shapes)."""
    if not samples:
        raise SampleError('collate_surround got an empty list of samples')
    batch: dict[str, Any] = {}
    keys = [k for k in samples[0] if k not in (LIDAR, META)]
    for key in keys:
        if not all(key in s for s in samples):
            if key in OPTIONAL_KEYS:
                continue  # absent rather than zero-filled
            raise SampleError(f'key {key!r} is missing from some samples of the batch')
        values = [s[key] for s in samples]
        shapes = {tuple(v.shape) for v in values}
        if len(shapes) > 1:
            raise SampleError(f'key {key!r} has different shapes in one batch: {sorted(shapes)}; resize every '
                              f'sample to the same image_size')
        batch[key] = torch.stack(values)
    counts = [int(s[LIDAR].shape[0]) for s in samples]
    lidar = torch.zeros((len(samples), max(counts + [1]), 4), dtype=torch.float32)
    for i, s in enumerate(samples):
        lidar[i, :counts[i]] = s[LIDAR]
    batch[LIDAR] = lidar
    batch[LIDAR_COUNT] = torch.tensor(counts, dtype=torch.int64)
    meta_keys = list(samples[0][META])
    batch[META] = {k: [s[META].get(k) for s in samples] for k in meta_keys}
    return batch

