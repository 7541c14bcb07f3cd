"""Where a command writes: checked before the work, so a run never fails at the end for want of a writable place.

Every command that writes a folder or a file calls :func:`check_output_dir` / :func:`check_output_file` on it with
the option that named it, before any long work; the check writes nothing that stays (it creates and deletes an
anonymous temporary file in the nearest folder that exists, which also catches read-only file systems and
permissions that ``os.access`` misjudges for root).
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

from surround_depth_train.config import ConfigError

__all__ = ['check_output_dir', 'check_output_file']


def _nearest_existing(path: Path) -> Path:
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    return Path('.')


def _check_writable_folder(folder: Path, path: Path, option: str) -> None:
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise ConfigError(f'{option}: cannot write {path} ({folder} is not writable: {reason}); pass a path in a '
                          f'writable folder') from None


def check_output_dir(path: str | os.PathLike, option: str) -> Path:
    """Check that the folder ``path`` exists or can be created, and that files can be written in it.

    Returns:
        ``path`` as a :class:`~pathlib.Path` (nothing is created).

    Raises:
        ConfigError: naming ``option``, the path and the fix.
    """
    path = Path(path)
    existing = _nearest_existing(path)
    if not existing.is_dir():
        where = 'is a file' if existing == path else f'cannot be created: {existing} is a file'
        raise ConfigError(f'{option}: {path} {where}, not a folder; pass a folder path')
    _check_writable_folder(existing, path, option)
    return path


def check_output_file(path: str | os.PathLike, option: str) -> Path:
    """Check that the file ``path`` can be written (its folder exists or can be created, and is writable); an
    existing folder at ``path`` is refused."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f'{option}: {path} is a folder; pass a file path')
    existing = _nearest_existing(path.parent)
    if not existing.is_dir():
        raise ConfigError(f'{option}: {path} cannot be created: {existing} is a file, not a folder; pass a path '
                          f'in a folder')
    _check_writable_folder(existing, path, option)
    return path
