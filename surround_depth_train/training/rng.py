"""Capture and restore every RNG (torch CPU/CUDA, numpy, python) as tensors and plain types (weights_only)."""
from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch

__all__ = ['capture_rng_state', 'restore_rng_state']


def capture_rng_state() -> dict[str, Any]:
    """torch (CPU and CUDA), numpy and python RNG states as tensors and plain types."""
    np_state = np.random.get_state()
    py_version, py_state, py_gauss = random.getstate()
    state = {
        'torch': torch.get_rng_state(),
        'numpy': {'keys': torch.from_numpy(np_state[1].astype(np.int64)), 'pos': int(np_state[2]),
                  'has_gauss': int(np_state[3]), 'cached_gaussian': float(np_state[4])},
        'python': {'version': py_version, 'state': torch.tensor(py_state, dtype=torch.int64),
                   'gauss_next': py_gauss},
    }
    if torch.cuda.is_available():
        state['cuda'] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state['torch'])
    n = state['numpy']
    np.random.set_state(('MT19937', n['keys'].numpy().astype(np.uint32), n['pos'], n['has_gauss'],
                         n['cached_gaussian']))
    p = state['python']
    random.setstate((p['version'], tuple(int(v) for v in p['state'].tolist()), p['gauss_next']))
    if 'cuda' in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state['cuda'])
