"""Full precision for losses: every loss runs in fp32 even when called inside an autocast region.

Mixed precision turns ``log``/``sqrt``/variance terms into NaNs (ZoeDepth disables autocast in SiLog for this
reason), and under autocast ``mm``/``conv`` would silently run in bf16/fp16 even on ``.float()`` inputs. So losses
both disable autocast and cast their inputs with ``.float()``.
"""
from __future__ import annotations

import contextlib
from typing import Iterator

import torch

__all__ = ['fp32_region']


@contextlib.contextmanager
def fp32_region(like: torch.Tensor) -> Iterator[None]:
    """Disable autocast for the device type of ``like`` (inputs must still be cast with ``.float()``)."""
    with torch.autocast(device_type=like.device.type, enabled=False):
        yield
