"""Where the package's files live: configs, the launch file, the RViz file, the shipped students.

``colcon build`` (``setup.py``) installs them into the package's share directory with the repository's layout,
``<prefix>/share/surround_depth_ros/{config,launch,docs/results/surroundsim_models}``, so one relative path such
as ``config/rigs/surroundsim.yaml`` names a file in both places. Code that runs from a source checkout (an editable
install, ``python -m`` in the repository) uses the checkout's files; installed code uses the share directory, found
through the ament index when ``ament_index_python`` imports and lists the package, else from the install layout
(``<prefix>/lib/pythonX.Y/site-packages/`` -> ``<prefix>/share/``) or ``sys.prefix``. No rclpy here: the training
side uses it too.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

__all__ = ['PACKAGE', 'share_directory', 'source_root', 'roots', 'resource_path', 'resolve_path']

PACKAGE = 'surround_depth_ros'
_MARKER = 'package.xml'


def source_root() -> Path | None:
    """The repository this code runs from, or None for installed code."""
    root = Path(__file__).resolve().parents[1]
    return root if (root / _MARKER).is_file() and (root / 'setup.py').is_file() else None


def _indexed_share() -> Path | None:
    try:
        from ament_index_python.packages import get_package_share_directory
    except ImportError:
        return None
    try:
        return Path(get_package_share_directory(PACKAGE))
    except (LookupError, ValueError, OSError):  # PackageNotFoundError is a KeyError: not indexed here
        return None


def share_directory() -> Path | None:
    """The installed share directory of the package, or None when the package is not installed."""
    here = Path(__file__).resolve()
    candidates = [_indexed_share()]
    candidates += [parent.parent / 'share' / PACKAGE for parent in here.parents if parent.name == 'lib']
    candidates.append(Path(sys.prefix) / 'share' / PACKAGE)
    for share in candidates:
        if share is not None and (share / _MARKER).is_file():
            return share
    return None


def roots() -> list[Path]:
    """Where package files are looked for, in order: the source checkout this code runs from, then the share
    directory (installed code has only the latter)."""
    found = [r for r in (source_root(), share_directory()) if r is not None]
    return list(dict.fromkeys(found))


def resource_path(relative: str | os.PathLike) -> Path:
    """The package file ``relative`` (e.g. ``config/rigs/surroundsim.yaml``) in the first root that has it; when
    none has it, its path under the first root (so an error message names where it was expected)."""
    all_roots = roots()
    for root in all_roots:
        if (root / relative).exists():
            return root / relative
    return (all_roots[0] if all_roots else Path.cwd()) / relative


def resolve_path(path: str | os.PathLike) -> Path:
    """A path a user gave: absolute, relative to the working directory when it exists there, else a package file
    (``config/rigs/surroundsim.yaml`` works from any directory, installed or in the checkout)."""
    candidate = Path(path).expanduser()
    if candidate.is_absolute() or candidate.exists():
        return candidate
    found = resource_path(candidate)
    return found if found.exists() else candidate
