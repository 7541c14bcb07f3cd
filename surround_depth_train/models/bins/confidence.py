"""Per-pixel confidence of a bins head: one minus the normalised entropy of its bin probabilities.

For ``K`` bins with probabilities ``P_k`` (summing to one over ``k``):

    H(P) = -sum_k P_k log P_k,        confidence = 1 - H(P) / log K        in [0, 1]

``0 log 0 = 0``. A uniform ``P`` (the head does not know where the depth lies) gives 0, a one-hot ``P`` (all mass
in one bin) gives 1. The measure is scale-free: it does not depend on the bin centers, so it means the same for a
near and a far pixel, and for heads with different ``K``. It says how peaked the head's distribution is, not how
right it is; a threshold on it removes the pixels the head itself is unsure about (sky, reflections, the blurred
edges between a foreground object and the background, where ``P`` is bimodal).

The one function, :func:`bin_confidence`, serves the banded CPU path (band by band, from the band's probabilities
before they are multiplied into depth, so full-resolution ``P`` is never written), the whole-tensor path (training,
accelerators, export tracing) and the teacher (from the probabilities resized to the input resolution).
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ['bin_confidence']


def bin_confidence(probs: Tensor, dim: int = -1, *, out: Tensor | None = None,
                   scratch: Tensor | None = None) -> Tensor:
    """``1 - H(P) / log K`` over ``dim``, kept as a size-1 dimension (``[B, K, H, W]``, ``dim=1`` -> ``[B, 1, H, W]``).

    Computed in float32 for half-precision inputs (float64 stays float64), clamped to ``[0, 1]`` against rounding;
    ``P_k = 0`` contributes 0 (``log`` reads ``max(P_k, tiny)``). ``K = 1`` gives 1 (nothing to be unsure about).
    Only operations that ONNX exports (clamp, log, mul, sum), so a traced model carries it.

    Args:
        probs: probabilities, summing to one over ``dim``.
        dim: the bins dimension.
        out: optional output of the reduced shape (without autograd; the banded path writes into its batch buffer).
        scratch: optional buffer of ``probs``' shape and dtype for ``P log P`` (without autograd), so that a band
            loop allocates nothing; otherwise a temporary of ``probs``' size is made.
    """
    if probs.dtype not in (torch.float32, torch.float64):
        probs = probs.float()
    k = probs.shape[dim]
    if k == 1:
        ones = torch.ones_like(probs)
        return ones if out is None else out.copy_(ones)
    tiny = torch.finfo(probs.dtype).tiny
    inv_log_k = 1.0 / math.log(k)
    if out is None and scratch is None:
        neg_entropy = (probs * torch.log(probs.clamp_min(tiny))).sum(dim=dim, keepdim=True)
        return (neg_entropy * inv_log_k + 1.0).clamp(0.0, 1.0)
    if torch.is_grad_enabled() and probs.requires_grad:
        raise ValueError('bin_confidence: out= and scratch= are for inference; call it without them under autograd')
    plogp = torch.log(probs.clamp_min(tiny)) if scratch is None else \
        torch.clamp(probs, min=tiny, out=scratch).log_()
    plogp.mul_(probs)
    neg_entropy = torch.sum(plogp, dim=dim, keepdim=True, out=out) if out is not None else \
        plogp.sum(dim=dim, keepdim=True)
    return neg_entropy.mul_(inv_log_k).add_(1.0).clamp_(0.0, 1.0)
