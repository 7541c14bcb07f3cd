"""What every command shares: the name its ``usage:`` line shows.

A tool runs as a console script (``train``, ``surround_depth_node``, ``ros2 run surround_depth_ros train``) or as
``python -m <module>``; its usage and error lines name the command as the user typed it.
"""
from __future__ import annotations

import sys
from pathlib import Path

__all__ = ['prog']


def prog(module: str) -> str:
    """``usage:`` name for the tool in ``module``: the console script's name, else ``python -m <module>``."""
    name = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else ''
    if not name or name.endswith('.py') or name in ('-m', '-c', 'python', 'python3'):
        return f'python -m {module}'
    return name
