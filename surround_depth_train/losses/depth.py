"""Depth regression losses on valid pixels: scale-invariant log (SiLog) and L1.

``L_sup = L_depth(D_s, D_gt)`` (paper Eq. 3) uses one of these on the valid LiDAR pixels only; the same functions
serve as ``L_depth`` inside ``L_ckd`` and output-level KD.

Valid pixels are ``mask & isfinite(target) & (target > 0)``: a LiDAR depth of 0 (or NaN/Inf) means "no return",
so such pixels are never supervised, whatever the caller's mask says. The caller's mask carries the rest (GT depth
range, self-occlusion mask). Predictions at invalid pixels are never read, so NaNs there do not leak into the loss
or its gradient.

Both losses pool all valid pixels of the batch (as ZoeDepth does), run in fp32 and, when no pixel is valid, return
an exact zero that keeps a ``grad_fn`` (gradient zero), never NaN.
"""
from __future__ import annotations

from typing import Callable, Optional

import torch
from torch import Tensor

from surround_depth_train.losses.precision import fp32_region

__all__ = ['DepthLoss', 'DEPTH_LOSSES', 'silog_loss', 'l1_loss', 'depth_loss_by_name', 'valid_pixels']

#: ``loss(pred, target, mask) -> scalar``; every depth loss in this package has this signature.
DepthLoss = Callable[[Tensor, Tensor, Optional[Tensor]], Tensor]


def _as_depth_map(x: Tensor, name: str) -> Tensor:
    """Return ``x`` as ``[B, H, W]``, accepting ``[B, 1, H, W]`` or ``[B, H, W]``."""
    if x.ndim == 4 and x.shape[1] == 1:
        return x[:, 0]
    if x.ndim == 3:
        return x
    raise ValueError(f'{name} must be a depth map [B, 1, H, W] or [B, H, W], got shape {tuple(x.shape)}; '
                     f'fold cameras into the batch (reshape [B, N, 1, H, W] to [B*N, 1, H, W]) first')


def valid_pixels(pred: Tensor, target: Tensor, mask: Optional[Tensor] = None) -> tuple[Tensor, Tensor]:
    """Select the valid pixels of ``pred`` and ``target`` as two fp32 vectors of equal length.

    Args:
        pred: predicted depth, ``[B, 1, H, W]`` or ``[B, H, W]``.
        target: reference depth of the same spatial shape; pixels ``<= 0`` or non-finite are invalid.
        mask: optional bool tensor of the same shape, True = valid.

    Returns:
        ``(pred[valid], target[valid])`` in fp32 (possibly empty).
    """
    pred = _as_depth_map(pred, 'pred')
    target = _as_depth_map(target, 'target')
    if pred.shape != target.shape:
        raise ValueError(f'pred {tuple(pred.shape)} and target {tuple(target.shape)} differ in shape; resize the '
                         f'prediction to the target resolution before the loss')
    target = target.float()
    valid = torch.isfinite(target) & (target > 0)
    if mask is not None:
        if mask.dtype != torch.bool:
            raise TypeError(f'mask must be a bool tensor (True = valid), got {mask.dtype}; pass e.g. mask > 0.5')
        mask = _as_depth_map(mask, 'mask')
        if mask.shape != target.shape:
            raise ValueError(f'mask {tuple(mask.shape)} does not match target {tuple(target.shape)}')
        valid = valid & mask
    return pred.float()[valid], target[valid]


def _empty_zero(pred: Tensor) -> Tensor:
    # Sum over an empty slice: exactly 0, finite, and still attached to pred's graph (zero gradient).
    return pred.float().reshape(-1)[:0].sum()


def silog_loss(pred: Tensor, target: Tensor, mask: Optional[Tensor] = None, *, lam: float = 0.15,
               scale: float = 10.0, eps: float = 1e-7) -> Tensor:
    """Scale-invariant log loss over the valid pixels of the batch.

    ``g = log(max(pred, eps)) - log(target)`` on valid pixels, then
    ``L = scale * sqrt(Var(g) + lam * mean(g)^2)`` with the population variance
    ``Var(g) = mean(g^2) - mean(g)^2`` (divisor n).

    Choices, against ZoeDepth's ``10 * sqrt(torch.var(g) + 0.15 * mean(g)^2)``:
    - ``lam = 0.15`` and ``scale = 10`` as ZoeDepth.
    - Population variance (divisor n) instead of ``torch.var``'s unbiased one (n - 1): it is defined for a single
      valid pixel, and it makes the loss exactly Eigen et al.'s form ``scale * sqrt(mean(g^2) - (1 - lam) *
      mean(g)^2)`` (BTS's ``variance_focus = 0.85``). On thousands of pixels the two differ by a factor n/(n-1).
    - ``pred`` is clamped to ``eps`` instead of adding ``eps`` to both sides, so the loss of exact values is exact;
      targets need no epsilon since only ``target > 0`` is valid.
    - ``sqrt`` at exactly 0 (a perfect prediction) returns 0 with a zero gradient instead of NaN.

    Args:
        pred: predicted depth (metres), ``[B, 1, H, W]`` or ``[B, H, W]``.
        target: reference depth, same shape; ``<= 0`` or non-finite = invalid.
        mask: optional bool mask, True = valid.
        lam: weight of the squared mean log error (0 = fully scale-invariant).
        scale: output multiplier.
        eps: lower clamp of ``pred`` before the log.

    Returns:
        Scalar fp32 loss.
    """
    with fp32_region(pred):
        p, t = valid_pixels(pred, target, mask)
        if p.numel() == 0:
            return _empty_zero(pred)
        g = torch.log(p.clamp_min(eps)) - torch.log(t)
        dg = torch.var(g, correction=0) + lam * g.mean() ** 2
        # sqrt'(0) is infinite; keep a perfect prediction at value 0 with gradient 0.
        root = torch.where(dg > 0, dg.clamp_min(1e-20).sqrt(), torch.zeros_like(dg))
        return scale * root


def l1_loss(pred: Tensor, target: Tensor, mask: Optional[Tensor] = None) -> Tensor:
    """Mean absolute error over the valid pixels of the batch: ``L = mean(|pred - target|)``.

    Args:
        pred: predicted depth (metres), ``[B, 1, H, W]`` or ``[B, H, W]``.
        target: reference depth, same shape; ``<= 0`` or non-finite = invalid.
        mask: optional bool mask, True = valid.

    Returns:
        Scalar fp32 loss (metres).
    """
    with fp32_region(pred):
        p, t = valid_pixels(pred, target, mask)
        if p.numel() == 0:
            return _empty_zero(pred)
        return (p - t).abs().mean()


DEPTH_LOSSES: dict[str, DepthLoss] = {'silog': silog_loss, 'l1': l1_loss}


def depth_loss_by_name(name: str) -> DepthLoss:
    """Return the depth loss registered as ``name`` (``'silog'`` or ``'l1'``)."""
    try:
        return DEPTH_LOSSES[name]
    except KeyError:
        raise ValueError(f'unknown depth loss {name!r}; choose one of {sorted(DEPTH_LOSSES)}') from None
