"""glibc allocator settings for CPU inference, and a process that re-executes itself with them.

glibc hands large freed blocks back to the system, so by default every forward pass page-faults its activations in
again: over a third of a plain Monodepth2 pass on a 2-core CPU (see the README's benchmark section). Keeping freed
memory (``MALLOC_MMAP_THRESHOLD_`` and ``MALLOC_TRIM_THRESHOLD_`` large) removes that cost. glibc reads these only
at process start, so a process that wants them and lacks them re-executes itself with them
(:func:`ensure_allocator_settings`); a preloaded jemalloc or tcmalloc counts as already set.
"""
from __future__ import annotations

import os
import sys
from typing import Mapping, MutableMapping

__all__ = ['ALLOCATOR_SETTINGS', 'describe_allocator', 'allocator_settings_in_effect', 'ensure_allocator_settings']

ALLOCATOR_SETTINGS = {'MALLOC_MMAP_THRESHOLD_': '4000000000', 'MALLOC_TRIM_THRESHOLD_': '4000000000'}
_REEXEC_MARKER = 'SURROUND_DEPTH_ALLOCATOR_REEXEC'
_NAMES = ('MALLOC_MMAP_THRESHOLD_', 'MALLOC_TRIM_THRESHOLD_', 'GLIBC_TUNABLES', 'LD_PRELOAD')


def describe_allocator(env: Mapping[str, str] = os.environ) -> str:
    """The malloc settings that change CPU latency, as one line for benchmark headers and diagnostics."""
    settings = [f'{n}={env[n]}' for n in _NAMES if env.get(n)]
    return ', '.join(settings) if settings else 'glibc defaults'


def allocator_settings_in_effect(env: Mapping[str, str] = os.environ) -> bool:
    """True when the thresholds are set or jemalloc/tcmalloc is preloaded."""
    preload = env.get('LD_PRELOAD', '')
    if 'jemalloc' in preload or 'tcmalloc' in preload:
        return True
    return all(env.get(k) for k in ALLOCATOR_SETTINGS)


def ensure_allocator_settings(env: MutableMapping[str, str] | None = None) -> None:
    """Re-execute this process with :data:`ALLOCATOR_SETTINGS` when they are not in effect (once; glibc reads
    them at start). Set ``SURROUND_DEPTH_ALLOCATOR_REEXEC=0`` to opt out."""
    env = os.environ if env is None else env
    if allocator_settings_in_effect(env) or env.get(_REEXEC_MARKER) is not None:
        return
    new_env = dict(env)
    for key, value in ALLOCATOR_SETTINGS.items():
        new_env.setdefault(key, value)
    new_env[_REEXEC_MARKER] = '1'
    argv = list(getattr(sys, 'orig_argv', [sys.executable, *sys.argv]))
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, *argv[1:]], new_env)
