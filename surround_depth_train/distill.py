"""The distillation task: a frozen teacher and a trainable student -> a dict of the total and each loss term.

For a batch of ``B`` camera sets of ``N`` cameras (images ``[B, N, 3, H, W]``), with the student's
``C^s, P^s, D^s`` and the teacher's ``C^t, P^t, D^t`` at the student's resolution (all ``[B*N, ...]``):

    L_sup   = L_depth(D^s, D_gt)                           on valid LiDAR pixels (range and self-occlusion)
    L_ckd   = L_depth(sum_k c^t_k p^s_k, D^t)              teacher detached, student centers untouched
    L_vrkd  = sum_{(i,i+1 mod N)} Huber(Gamma^t_ij, Gamma^s_ij)
    L_total = L_sup + lambda_ckd L_ckd + lambda_vrkd L_vrkd (+ the Table III baselines when weighted)

``L_sup``, ``L_ckd`` and output KD are computed per camera set and averaged over the ``B`` sets, so the loss of a
global batch does not depend on how it is split across processes (DDP equals one process on the same batches).
Only :class:`StudentSide` (the student and any trainable adapters) is wrapped in DDP; the teacher is frozen, in
eval mode, and never receives gradients.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn

from surround_depth_train.losses import (DistillationWeights, FitNetsLoss, at_loss, ckd_loss, combine_losses,
                                         depth_loss_by_name, output_kd_loss, sp_loss, vrkd_loss)
from surround_depth_train.models.output import DepthOutput

__all__ = ['StudentSide', 'DistillationTask', 'probe', 'flatten_cameras']


def flatten_cameras(x: Tensor) -> Tensor:
    """``[B, N, ...] -> [B*N, ...]``."""
    return x.reshape(x.shape[0] * x.shape[1], *x.shape[2:])


@torch.no_grad()
def probe(model: nn.Module, size: tuple[int, int]) -> DepthOutput:
    """One eval-mode forward on a zero image of ``size = (width, height)``: reveals bins and feature channels."""
    was_training = model.training
    model.eval()
    out = model(torch.zeros(1, 3, size[1], size[0], device=next(model.parameters()).device))
    model.train(was_training)
    return out


class StudentSide(nn.Module):
    """The trainable part: the student and, for FitNets, its feature regressors. This is what DDP wraps."""

    def __init__(self, student: nn.Module, fitnets: FitNetsLoss | None = None):
        super().__init__()
        self.student = student
        self.fitnets = fitnets

    def forward(self, images: Tensor) -> DepthOutput:
        return self.student(images)


class DistillationTask(nn.Module):
    """Computes every active loss term for one batch.

    Args:
        student: the trainable depth model (a student, or the teacher itself when fine-tuning it).
        weights: loss weights; a term with weight 0 is not computed.
        min_depth, max_depth: GT range used for supervision masks of dense targets.
        teacher: the frozen teacher, required when any distillation weight is non-zero.
        depth_loss: ``'silog'`` or ``'l1'`` for ``L_sup``, ``L_ckd`` and output KD.
        vrkd_reduction: ``'map'`` or ``'pixel'`` (see :func:`surround_depth_train.losses.vrkd_loss`).
        target: ``'depth'`` (sparse LiDAR) or ``'depth_dense'`` (dense GT, where the dataset has it).
        fitnets_channels: ``(student_channels, teacher_channels)`` of the tapped decoder features.
    """

    def __init__(self, student: nn.Module, *, weights: DistillationWeights, min_depth: float, max_depth: float,
                 teacher: nn.Module | None = None, depth_loss: str = 'silog', vrkd_reduction: str = 'map',
                 target: str = 'depth', fitnets_channels: tuple[Sequence[int], Sequence[int]] | None = None):
        super().__init__()
        kd_terms = [n for n in ('ckd', 'vrkd', 'kd', 'fitnets', 'at', 'sp') if getattr(weights, n) > 0]
        if kd_terms and teacher is None:
            raise ValueError(f'loss terms {kd_terms} need a teacher; configure teacher.* or set their weights to 0')
        if (weights.ckd > 0 or weights.vrkd > 0) and not getattr(student, 'has_bins', False):
            raise ValueError('CKD and VRKD need a student with the MetricBins head (a *_mb model); '
                             'pick e.g. model.name=monodepth2_mb or set loss.ckd=0 loss.vrkd=0')
        fitnets = None
        if weights.fitnets > 0:
            if fitnets_channels is None:
                raise ValueError('FitNets needs the student and teacher feature channels (fitnets_channels)')
            fitnets = FitNetsLoss(*fitnets_channels)
        self.student_side = StudentSide(student, fitnets)
        self.runner: nn.Module = self.student_side  # replaced by the DDP wrapper in distributed runs
        self.teacher = teacher
        if teacher is not None:
            teacher.eval()
            for p in teacher.parameters():
                p.requires_grad_(False)
        self.weights = weights
        self.depth_loss = depth_loss_by_name(depth_loss)
        self.vrkd_reduction = vrkd_reduction
        self.target = target
        self.min_depth, self.max_depth = float(min_depth), float(max_depth)

    def train(self, mode: bool = True) -> 'DistillationTask':
        super().train(mode)
        if self.teacher is not None:
            self.teacher.eval()  # the teacher never leaves eval mode (frozen BN, no dropout)
        return self

    @property
    def student(self) -> nn.Module:
        return self.student_side.student

    @torch.no_grad()
    def teacher_outputs(self, images: Tensor) -> DepthOutput:
        """Teacher outputs for flattened images ``[B*N, 3, H, W]`` at the same resolution."""
        return self.teacher(images)

    def supervision(self, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        """Target depth and its valid mask, ``[B, N, 1, H, W]``."""
        if self.target == 'depth':
            return batch['depth'], batch['depth_mask']
        if 'depth_dense' not in batch:
            raise ValueError('loss.teacher_target=dense needs a dataset with dense GT (SurroundSim); '
                             'use loss.teacher_target=lidar for nuScenes/DDAD')
        dense = batch['depth_dense']
        mask = (dense > self.min_depth) & (dense < self.max_depth)
        if 'self_mask' in batch:
            mask &= batch['self_mask']
        return dense, mask

    def forward(self, batch: dict[str, Tensor], teacher_out: DepthOutput | None = None) -> dict[str, Tensor]:
        images = batch['image']
        if images.ndim != 5:
            raise ValueError(f'expected images [B, N, 3, H, W] (a batch of camera sets), got {tuple(images.shape)}')
        B, N = images.shape[:2]
        flat = flatten_cameras(images)
        out: DepthOutput = self.runner(flat)
        w = self.weights
        needs_teacher = any(getattr(w, n) > 0 for n in ('ckd', 'vrkd', 'kd', 'fitnets', 'at', 'sp'))
        if needs_teacher and teacher_out is None:
            teacher_out = self.teacher_outputs(flat)
        terms: dict[str, Tensor] = {}

        def per_set(fn, *tensors):
            # mean over camera sets of a loss computed on each set's N images
            return torch.stack([fn(*(t[b * N:(b + 1) * N] if t is not None else None for t in tensors))
                                for b in range(B)]).mean()

        if w.sup > 0:
            target, mask = self.supervision(batch)
            terms['sup'] = per_set(lambda p, g, m: self.depth_loss(p, g, m), out.depth, flatten_cameras(target),
                                   flatten_cameras(mask))
        if w.ckd > 0:
            terms['ckd'] = per_set(lambda p, c, d: ckd_loss(p, c, d, depth_loss=self.depth_loss),
                                   out.probs, teacher_out.centers, teacher_out.depth)
        if w.vrkd > 0:
            terms['vrkd'] = vrkd_loss(out.probs.reshape(B, N, *out.probs.shape[1:]),
                                      teacher_out.probs.reshape(B, N, *teacher_out.probs.shape[1:]),
                                      reduction=self.vrkd_reduction)
        if w.kd > 0:
            terms['kd'] = per_set(lambda s, t: output_kd_loss(s, t, depth_loss=self.depth_loss),
                                  out.depth, teacher_out.depth)
        if w.fitnets > 0:
            terms['fitnets'] = self.student_side.fitnets(out.features, teacher_out.features)
        if w.at > 0:
            terms['at'] = at_loss(out.features, teacher_out.features)
        if w.sp > 0:
            terms['sp'] = sp_loss(out.features, teacher_out.features)
        result = combine_losses(terms, w)
        return result
