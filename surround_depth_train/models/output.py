"""The one output type of every depth model (students and teacher)."""
from __future__ import annotations

from dataclasses import dataclass, field

from torch import Tensor

__all__ = ['DepthOutput']


@dataclass
class DepthOutput:
    """Depth at the model's input resolution, plus bins and decoder features where the model has them.

    Every depth model takes float RGB in ``[0, 1]`` of shape ``[B, 3, H, W]`` (``B`` = batch x cameras), owns its
    input normalisation, and returns this. With bins, ``depth == sum(probs * centers, dim=1)``.

    ``confidence`` is filled when the forward pass is called with ``confidence=True`` and the model has a bins head
    (``1 - H(probs) / log K``, see :func:`~surround_depth_train.models.bins.bin_confidence`); a model without bins
    (the plain students) has no distribution to take it from and returns None, so callers report it unavailable.
    """

    depth: Tensor                  # [B,1,H,W] metres, at the model's input resolution
    centers: Tensor | None = None  # [B,K,H,W] metres (None for plain students)
    probs: Tensor | None = None    # [B,K,H,W], softmax over K
    features: list[Tensor] = field(default_factory=list)  # decoder features coarse->fine, for FitNets/AT/SP
    confidence: Tensor | None = None  # [B,1,H,W] in [0, 1], only when asked for and the model has bins
