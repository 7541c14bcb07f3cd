"""Running a model at another input size than its training size: what is refused, and the one warning.

A student is fully convolutional, so it runs at any size whose sides reach its ``min_input_side`` (the stride of
its deepest encoder level, plus one); below that it cannot run and the size is refused. At any other size than the
one it was trained at it runs, but its depth is usually much worse (metric depth learnt at one image scale: e.g.
AbsRel 1.62 instead of 0.37 at 100 x 70 for a student trained at 160 x 96), so every tool that runs a model warns
once, naming both sizes. Sizes are ``(height, width)`` here, as model files record them.
"""
from __future__ import annotations

from typing import Sequence

__all__ = ['input_size_warning', 'input_size_problem']


def input_size_warning(name: str, trained: Sequence[int], running: Sequence[int]) -> str:
    """The one warning for ``name`` (trained at ``trained``) run at ``running``."""
    return (f'{name} was trained at {trained[1]} x {trained[0]} (w x h) and runs at {running[1]} x {running[0]}: '
            f'depth from a network run at another size than its training size is usually much less accurate; run '
            f'it at {trained[1]} x {trained[0]} unless you have measured the other size')


def input_size_problem(name: str, running: Sequence[int], min_side: int) -> str | None:
    """Why ``name`` cannot run at ``running`` (None when it can)."""
    h, w = int(running[0]), int(running[1])
    if min(h, w) < int(min_side):
        return (f'{name} cannot run at {w} x {h} (w x h): both sides must be at least {min_side} pixels for its '
                f'encoder')
    return None
