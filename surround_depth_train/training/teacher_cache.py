"""A disk cache of the teacher's bin centers and probabilities at the student's resolution (fp16).

Only valid when the student sees exactly the images the cache was computed from: no flip, no colour jitter.
The cache key covers the teacher (registry name, kwargs, checkpoint identity), the dataset's identity and the
resolution; entries are written atomically, one file per dataset index.
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

__all__ = ['TeacherCache', 'teacher_cache_key']


def teacher_cache_key(teacher_name: str, teacher_kwargs: dict, checkpoint: str | None, dataset_id: str,
                      image_size: Sequence[int]) -> str:
    ident = {'teacher': teacher_name, 'kwargs': teacher_kwargs, 'dataset': dataset_id, 'size': list(image_size)}
    if checkpoint:
        st = os.stat(checkpoint)
        ident['checkpoint'] = [os.path.abspath(checkpoint), st.st_size, st.st_mtime_ns]
    return hashlib.sha256(json.dumps(ident, sort_keys=True, default=str).encode()).hexdigest()[:16]


class TeacherCache:
    """``get(indices, images, compute)`` returns the teacher's DepthOutput, computing and storing what is missing.

    Args:
        root: cache folder; entries live in ``root/<key>/<index>.pt``.
        key: from :func:`teacher_cache_key`.
    """

    def __init__(self, root: str | Path, key: str):
        self.dir = Path(root) / key
        self.dir.mkdir(parents=True, exist_ok=True)
        self.hits = 0
        self.misses = 0

    def _path(self, index: int) -> Path:
        return self.dir / f'{index:08d}.pt'

    def get(self, indices: Sequence[int], images: Tensor, compute: Callable[[Tensor], DepthOutput],
            cameras: int) -> DepthOutput:
        """``images`` are flattened ``[B*N, 3, H, W]`` for the ``B`` dataset ``indices`` (``N = cameras``)."""
        centers, probs = [None] * len(indices), [None] * len(indices)
        missing = []
        for i, index in enumerate(indices):
            path = self._path(int(index))
            if path.is_file():
                entry = torch.load(path, map_location=images.device, weights_only=True)
                centers[i], probs[i] = entry['centers'], entry['probs']
                self.hits += 1
            else:
                missing.append(i)
        if missing:
            sel = torch.cat([torch.arange(i * cameras, (i + 1) * cameras) for i in missing]).to(images.device)
            out = compute(images[sel])
            for j, i in enumerate(missing):
                c = out.centers[j * cameras:(j + 1) * cameras].half()
                p = out.probs[j * cameras:(j + 1) * cameras].half()
                with atomic_write(self._path(int(indices[i]))) as f:
                    torch.save({'centers': c.cpu(), 'probs': p.cpu()}, f)
                centers[i], probs[i] = c, p
                self.misses += 1
        c = torch.cat(centers).float()
        p = torch.cat(probs).float()
        p = p / p.sum(dim=1, keepdim=True).clamp_min(1e-12)  # renormalise after fp16 rounding
        return DepthOutput(depth=(p * c).sum(dim=1, keepdim=True), centers=c, probs=p)
