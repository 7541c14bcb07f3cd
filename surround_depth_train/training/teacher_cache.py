"""A disk cache of the teacher outputs the active loss terms read, at the student's resolution (fp16).

Only valid when the student sees exactly the images the cache was computed from: no flip, no colour jitter.
What is stored follows the terms (:attr:`DistillationTask.teacher_fields`): bin centers and probabilities for CKD
and VRKD, depth for CKD and output KD, the paired decoder features for FitNets, AT and SP. The cache key covers the
teacher (registry name, kwargs, checkpoint identity), the dataset's identity, the resolution, the stored fields and
the feature pairs; entries are written atomically, one file per dataset index.

The size grows as samples x cameras x pixels x (2 K channels for centers and probabilities + the feature maps) x
2 bytes: the demo's 48 samples at 160 x 96 with K = 64 bins take 1.1 GB. :func:`expected_cache_bytes` gives the
figure before the first entry is written.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Callable, Sequence

import torch
from torch import Tensor

from surround_depth_train.atomic import atomic_write
from surround_depth_train.models.output import DepthOutput

__all__ = ['TeacherCache', 'teacher_cache_key', 'expected_cache_bytes', 'CACHE_FIELDS']

#: What a cache entry can hold; ``features`` is the list of paired teacher features.
CACHE_FIELDS = ('centers', 'probs', 'depth', 'features')


def teacher_cache_key(teacher_name: str, teacher_kwargs: dict, checkpoint: str | None, dataset_id: str,
                      image_size: Sequence[int], fields: Sequence[str] = ('centers', 'probs', 'depth'),
                      feature_pairs: Sequence[Sequence[int]] = ()) -> str:
    """A short hash of everything that decides the cached tensors."""
    ident = {'teacher': teacher_name, 'kwargs': teacher_kwargs, 'dataset': dataset_id, 'size': list(image_size),
             'fields': sorted(fields), 'teacher_features': [int(p[1]) for p in feature_pairs]}
    if checkpoint:
        st = os.stat(checkpoint)
        ident['checkpoint'] = [os.path.abspath(checkpoint), st.st_size, st.st_mtime_ns]
    return hashlib.sha256(json.dumps(ident, sort_keys=True, default=str).encode()).hexdigest()[:16]


def expected_cache_bytes(out: DepthOutput, samples: int, cameras: int, fields: Sequence[str]) -> int:
    """Bytes a full cache takes, from a one-image teacher output ``out`` (e.g. a probe at the training size)."""
    per_image = 0
    for name in fields:
        if name == 'features':
            per_image += sum(f[0].numel() for f in out.features)
        else:
            per_image += getattr(out, name)[0].numel()
    return per_image * 2 * samples * cameras  # fp16


class TeacherCache:
    """``get(indices, images, compute)`` returns the teacher's DepthOutput, computing and storing what is missing.

    Args:
        root: cache folder; entries live in ``root/<key>/<index>.pt``.
        key: from :func:`teacher_cache_key`.
        fields: which outputs to store (see :data:`CACHE_FIELDS`).
    """

    def __init__(self, root: str | Path, key: str, fields: Sequence[str] = ('centers', 'probs', 'depth')):
        unknown = sorted(set(fields) - set(CACHE_FIELDS))
        if unknown or not fields:
            raise ValueError(f'cache fields must be a non-empty subset of {CACHE_FIELDS}, got {list(fields)}')
        self.fields = tuple(fields)
        self.dir = Path(root) / key
        self.dir.mkdir(parents=True, exist_ok=True)
        self.hits = 0
        self.misses = 0

    def _path(self, index: int) -> Path:
        return self.dir / f'{index:08d}.pt'

    def _entry(self, out: DepthOutput, lo: int, hi: int) -> dict:
        entry = {}
        for name in self.fields:
            if name == 'features':
                entry[name] = [f[lo:hi].half().cpu() for f in out.features]
            else:
                value = getattr(out, name)
                if value is None:
                    raise ValueError(f'the teacher returns no {name}; it cannot be cached (teacher.cache=false)')
                entry[name] = value[lo:hi].half().cpu()
        return entry

    def get(self, indices: Sequence[int], images: Tensor, compute: Callable[[Tensor], DepthOutput],
            cameras: int) -> DepthOutput:
        """``images`` are flattened ``[B*N, 3, H, W]`` for the ``B`` dataset ``indices`` (``N = cameras``)."""
        entries: list[dict | None] = [None] * len(indices)
        missing = []
        for i, index in enumerate(indices):
            path = self._path(int(index))
            if path.is_file():
                entries[i] = torch.load(path, map_location='cpu', weights_only=True)
                self.hits += 1
            else:
                missing.append(i)
        if missing:
            sel = torch.cat([torch.arange(i * cameras, (i + 1) * cameras) for i in missing]).to(images.device)
            out = compute(images[sel])
            for j, i in enumerate(missing):
                entry = self._entry(out, j * cameras, (j + 1) * cameras)
                with atomic_write(self._path(int(indices[i]))) as f:
                    torch.save(entry, f)
                entries[i] = entry
                self.misses += 1
        device = images.device

        def joined(name: str) -> Tensor | None:
            if name not in self.fields:
                return None
            return torch.cat([e[name] for e in entries]).to(device).float()

        centers, probs, depth = joined('centers'), joined('probs'), joined('depth')
        if probs is not None:
            probs = probs / probs.sum(dim=1, keepdim=True).clamp_min(1e-12)  # renormalise after fp16 rounding
            if centers is not None:
                depth = (probs * centers).sum(dim=1, keepdim=True)  # keeps depth == sum(P * C) exactly
        features = []
        if 'features' in self.fields:
            features = [torch.cat([e['features'][s] for e in entries]).to(device).float()
                        for s in range(len(entries[0]['features']))]
        if depth is None:  # VRKD or feature terms alone read no depth; keep the output type's contract
            depth = torch.zeros(images.shape[0], 1, *images.shape[-2:], device=device)
        return DepthOutput(depth=depth, centers=centers, probs=probs, features=features)
