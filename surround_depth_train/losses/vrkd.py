"""View-relational knowledge distillation, ``L_vrkd`` (paper Eq. 6-7).

For the cyclic adjacent camera pairs ``A = {(1, 2), (2, 3), ..., (N, 1)}`` the relation between two views is the
distance between their bin-probability maps, normalised by a mean distance ``mu``:

    Gamma_ij = psi(P_i, P_j) = ||P_i - P_j||_2 / mu                       (Eq. 6)
    L_vrkd  = sum_{(i, j) in A} Huber(Gamma^t_ij, Gamma^s_ij)             (Eq. 7)

computed separately for teacher and student (each with its own ``mu``); the teacher is detached.

What the paper leaves open, and what is chosen here:

- **Extent of the norm** (``reduction``). ``'map'``: one distance per (sample, pair), the L2 norm over the whole
  ``K x H x W`` tensor, so ``Gamma`` is ``[B, N_pairs]``. ``'pixel'``: one distance per pixel, the L2 norm over the
  K bins, so ``Gamma`` is ``[B, N_pairs, H, W]``. ``'map'`` is the literal reading of ``||P_i - P_j||_2`` on whole
  maps; ``'pixel'`` keeps where the views differ. Both are tested; the default is ``'map'``.
- **mu**: as in RKD's distance loss, the mean of the *positive* distances, so identical views (distance 0) do not
  shrink it. It is taken **per sample**: over the N pairs (``'map'``) or over pairs x pixels (``'pixel'``) of one
  rig capture. RKD normalises over its mini-batch because its items are the batch; here the related items are the
  cameras of one capture, and per-sample normalisation keeps the loss of a sample independent of the others in the
  batch. If a sample has no positive distance, ``mu`` is taken as 1 (all its relations are 0). As in RKD, the
  gradient flows through the student's ``mu``.
- **Huber** = smooth L1 with threshold ``beta`` (RKD uses ``beta = 1``):
  ``h(x) = 0.5 x^2 / beta if |x| < beta else |x| - 0.5 beta``, ``x = Gamma^s - Gamma^t``.
- **Reduction of Eq. 7**: sum over pairs as written, mean over the batch (and pixels for ``'pixel'``), so the
  loss does not grow with the batch size or resolution.

Because of ``mu``, scaling all distances of a sample (e.g. all its probability maps) by a constant leaves
``L_vrkd`` unchanged.
"""
from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from surround_depth_train.losses.precision import fp32_region

__all__ = ['VRKD_REDUCTIONS', 'adjacent_pairs', 'view_distances', 'normalise_by_mean_distance', 'view_relations',
           'vrkd_loss']

VRKD_REDUCTIONS = ('map', 'pixel')
Reduction = Literal['map', 'pixel']


def adjacent_pairs(num_views: int) -> list[tuple[int, int]]:
    """Cyclic adjacent pairs ``[(0, 1), (1, 2), ..., (N-1, 0)]`` (0-based camera indices in rig order).

    With N = 2 the set is ``[(0, 1), (1, 0)]``: the single pair counted twice, as the cyclic definition gives.
    """
    if num_views < 2:
        raise ValueError(f'view-relational KD needs at least 2 cameras, got {num_views}; disable it (weight 0) for '
                         f'single-camera data')
    return [(i, (i + 1) % num_views) for i in range(num_views)]


def _check_probs(probs: Tensor, name: str) -> None:
    if probs.ndim != 5:
        raise ValueError(f'{name} must be [B, N, K, H, W] (cameras kept as dim 1), got shape {tuple(probs.shape)}; '
                         f'reshape [B*N, K, H, W] to [B, N, K, H, W] before the loss')
    adjacent_pairs(probs.shape[1])


def _check_reduction(reduction: str) -> None:
    if reduction not in VRKD_REDUCTIONS:
        raise ValueError(f'unknown VRKD reduction {reduction!r}; choose one of {VRKD_REDUCTIONS}')


def view_distances(probs: Tensor, reduction: Reduction = 'map') -> Tensor:
    """Unnormalised distances ``||P_i - P_{i+1 mod N}||_2`` between adjacent views, in fp32.

    Args:
        probs: ``[B, N, K, H, W]`` bin probabilities of the N cameras in rig order.
        reduction: ``'map'`` (norm over K x H x W) or ``'pixel'`` (norm over K).

    Returns:
        ``[B, N]`` for ``'map'``, ``[B, N, H, W]`` for ``'pixel'``; entry ``p`` is the pair ``(p, p+1 mod N)``.
    """
    _check_probs(probs, 'probs')
    _check_reduction(reduction)
    with fp32_region(probs):
        probs = probs.float()
        diff = probs - probs.roll(shifts=-1, dims=1)
        dims = (2, 3, 4) if reduction == 'map' else (2,)
        squared = diff.square().sum(dim=dims)
        # sqrt'(0) is infinite: identical views get distance 0 with gradient 0, not NaN.
        return torch.where(squared > 0, squared.clamp_min(1e-30).sqrt(), torch.zeros_like(squared))


def normalise_by_mean_distance(distances: Tensor) -> Tensor:
    """Divide each sample's distances by ``mu`` = the mean of its positive distances (RKD normalisation).

    Args:
        distances: ``[B, ...]`` non-negative distances; everything after dim 0 belongs to one sample.

    Returns:
        ``distances / mu`` with ``mu`` of shape ``[B, 1, ...]``; a sample without positive distance is left as is.
    """
    flat = distances.reshape(distances.shape[0], -1)
    positive = flat > 0
    count = positive.sum(dim=1)
    mu = torch.where(count > 0, (flat * positive).sum(dim=1) / count.clamp_min(1), torch.ones_like(flat[:, 0]))
    return distances / mu.reshape((-1,) + (1,) * (distances.ndim - 1))


def view_relations(probs: Tensor, reduction: Reduction = 'map') -> Tensor:
    """``Gamma_ij = ||P_i - P_j||_2 / mu`` for the cyclic adjacent pairs (Eq. 6); shapes as :func:`view_distances`."""
    return normalise_by_mean_distance(view_distances(probs, reduction))


def vrkd_loss(student_probs: Tensor, teacher_probs: Tensor, reduction: Reduction = 'map',
              beta: float = 1.0) -> Tensor:
    """``L_vrkd = sum_pairs mean Huber_beta(Gamma^s - Gamma^t)`` (Eq. 7); the teacher is detached.

    Args:
        student_probs: ``[B, N, K, H, W]`` student bin probabilities, cameras in rig (cyclic) order.
        teacher_probs: same shape, teacher bin probabilities.
        reduction: ``'map'`` (one relation per pair) or ``'pixel'`` (one relation per pair and pixel).
        beta: Huber / smooth-L1 threshold.

    Returns:
        Scalar fp32 loss: sum over the N pairs of the mean over batch (and pixels) of the Huber loss.
    """
    _check_probs(student_probs, 'student_probs')
    _check_probs(teacher_probs, 'teacher_probs')
    _check_reduction(reduction)
    if student_probs.shape != teacher_probs.shape:
        raise ValueError(f'student_probs {tuple(student_probs.shape)} and teacher_probs '
                         f'{tuple(teacher_probs.shape)} must have the same [B, N, K, H, W]; use the same n_bins and '
                         f'resize the teacher outputs to the student resolution')
    if beta <= 0:
        raise ValueError(f'beta must be positive, got {beta}')
    with fp32_region(student_probs):
        with torch.no_grad():
            gamma_t = view_relations(teacher_probs.detach(), reduction)
        gamma_s = view_relations(student_probs, reduction)
        per_element = F.smooth_l1_loss(gamma_s, gamma_t, reduction='none', beta=beta)
        # [B, P, (H, W)] -> mean over everything but the pair dim, then sum over pairs.
        return per_element.transpose(0, 1).reshape(per_element.shape[1], -1).mean(dim=1).sum()
