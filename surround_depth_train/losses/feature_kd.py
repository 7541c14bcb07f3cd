"""Feature-level KD baselines of Table III, between the decoder features of teacher and student.

All three take lists of ``[B, C, H, W]`` maps, one per tapped decoder stage (same number of stages on both sides,
matched in order), and **sum** the per-stage losses, as the three papers sum over their layer pairs. The teacher
features are detached. Each loss runs in fp32.

- FitNets (Romero et al.): a learnable 1x1 conv regressor per stage maps the student's channels to the teacher's;
  ``L = sum_s mean((r_s(F^s_s) - F^t_s)^2)``. The teacher map is resized (bilinear) to the student's resolution,
  so the regressor works at the student's own resolution.
- AT (Zagoruyko & Komodakis, p = 2): attention map ``Q = sum_c A_c^2`` flattened to ``[B, H*W]`` and L2-normalised
  per sample; ``L = sum_s mean_{b, hw}(Q^s/|Q^s| - Q^t/|Q^t|)^2``, the squared-difference mean of the authors'
  reference code (the paper's ``beta / 2`` and norm are left to the loss weight). Channel counts may differ; the
  teacher's attention map is resized (bilinear) to the student's resolution before normalisation.
- SP (Tung & Mori): per sample the flattened features ``Q = reshape(F, [B, -1])``, ``G = Q Q^T`` (``[B, B]``),
  rows L2-normalised; ``L = sum_s ||G^s - G^t||_F^2 / B^2``. Channels and resolution may differ (G is B x B).
  With B = 1 every normalised G is ``[[1]]`` and the loss is 0: SP needs at least 2 images per batch (cameras
  folded into the batch count).
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from surround_depth_train.losses.precision import fp32_region

__all__ = ['FitNetsLoss', 'attention_map', 'at_loss', 'similarity_matrix', 'sp_loss']


def _check_stages(student_feats: Sequence[Tensor], teacher_feats: Sequence[Tensor]) -> None:
    if len(student_feats) != len(teacher_feats) or not student_feats:
        raise ValueError(f'got {len(student_feats)} student and {len(teacher_feats)} teacher feature maps; tap the '
                         f'same (non-zero) number of decoder stages on both models, matched in order')
    for i, (s, t) in enumerate(zip(student_feats, teacher_feats)):
        if s.ndim != 4 or t.ndim != 4:
            raise ValueError(f'stage {i}: features must be [B, C, H, W], got student {tuple(s.shape)} and teacher '
                             f'{tuple(t.shape)}')
        if s.shape[0] != t.shape[0]:
            raise ValueError(f'stage {i}: batch sizes differ (student {s.shape[0]}, teacher {t.shape[0]}); feed '
                             f'both models the same images')


def _resize_to(x: Tensor, size: torch.Size) -> Tensor:
    if x.shape[-2:] == size:
        return x
    return F.interpolate(x, size=tuple(size), mode='bilinear', align_corners=False)


class FitNetsLoss(nn.Module):
    """FitNets hint loss with one learnable 1x1 conv regressor per tapped stage.

    ``L = sum_s mean((W_s * F^s_s + b_s - resize(F^t_s))^2)``. The regressors are trainable parameters: add this
    module's ``parameters()`` to the optimiser and move it to the student's device.

    Args:
        student_channels: channels of each tapped student stage.
        teacher_channels: channels of the matching teacher stages (same length).
    """

    def __init__(self, student_channels: Sequence[int], teacher_channels: Sequence[int]) -> None:
        super().__init__()
        if len(student_channels) != len(teacher_channels) or not student_channels:
            raise ValueError(f'student_channels {list(student_channels)} and teacher_channels '
                             f'{list(teacher_channels)} must list the same (non-zero) number of stages')
        self.student_channels = tuple(int(c) for c in student_channels)
        self.teacher_channels = tuple(int(c) for c in teacher_channels)
        self.regressors = nn.ModuleList(
            nn.Conv2d(cs, ct, kernel_size=1) for cs, ct in zip(self.student_channels, self.teacher_channels))

    def regress(self, student_feats: Sequence[Tensor]) -> list[Tensor]:
        """``r_s(F^s_s)`` for each tapped stage, in fp32.

        Under DDP this runs inside the wrapped module's forward (see ``distill.StudentSide``), so the regressors'
        gradients are synchronised like the student's.
        """
        if len(student_feats) != len(self.regressors) or not student_feats:
            raise ValueError(f'got {len(student_feats)} stages but FitNetsLoss was built for '
                             f'{len(self.regressors)}')
        out = []
        with fp32_region(student_feats[0]):
            for i, (s, reg) in enumerate(zip(student_feats, self.regressors)):
                if s.ndim != 4 or s.shape[1] != reg.in_channels:
                    raise ValueError(f'stage {i}: expected student features with {reg.in_channels} channels, got '
                                     f'{tuple(s.shape)}; build FitNetsLoss with the channels of the tapped stages')
                out.append(reg(s.float()))
        return out

    def hint_loss(self, regressed: Sequence[Tensor], teacher_feats: Sequence[Tensor]) -> Tensor:
        """``sum_s mean((regressed_s - resize(F^t_s))^2)`` for :meth:`regress`'s output."""
        _check_stages(regressed, teacher_feats)
        total = None
        with fp32_region(regressed[0]):
            for i, (r, t, reg) in enumerate(zip(regressed, teacher_feats, self.regressors)):
                if t.shape[1] != reg.out_channels:
                    raise ValueError(f'stage {i}: expected teacher features with {reg.out_channels} channels, got '
                                     f'{t.shape[1]}; build FitNetsLoss with the channels of the tapped stages')
                hint = _resize_to(t.detach().float(), r.shape[-2:])
                term = F.mse_loss(r.float(), hint)
                total = term if total is None else total + term
        return total

    def forward(self, student_feats: Sequence[Tensor], teacher_feats: Sequence[Tensor]) -> Tensor:
        """Sum over stages of the mean squared error between regressed student and (resized) teacher features."""
        _check_stages(student_feats, teacher_feats)
        return self.hint_loss(self.regress(student_feats), teacher_feats)


def attention_map(feat: Tensor) -> Tensor:
    """Spatial attention ``Q = sum_c A_c^2`` (p = 2) as ``[B, 1, H, W]``, not yet normalised."""
    return feat.float().square().sum(dim=1, keepdim=True)


def at_loss(student_feats: Sequence[Tensor], teacher_feats: Sequence[Tensor]) -> Tensor:
    """Attention transfer: ``sum_s mean((Q^s/|Q^s| - Q^t/|Q^t|)^2)`` over stages (see module docstring)."""
    _check_stages(student_feats, teacher_feats)
    total = None
    with fp32_region(student_feats[0]):
        for s, t in zip(student_feats, teacher_feats):
            q_s = attention_map(s)
            q_t = _resize_to(attention_map(t.detach()), q_s.shape[-2:])
            q_s = F.normalize(q_s.flatten(1), p=2, dim=1)
            q_t = F.normalize(q_t.flatten(1), p=2, dim=1)
            term = (q_s - q_t).square().mean()
            total = term if total is None else total + term
    return total


def similarity_matrix(feat: Tensor) -> Tensor:
    """Row-normalised batch similarity ``G = normalize_rows(Q Q^T)`` with ``Q = reshape(feat, [B, -1])``."""
    q = feat.float().flatten(1)
    return F.normalize(q @ q.t(), p=2, dim=1)


def sp_loss(student_feats: Sequence[Tensor], teacher_feats: Sequence[Tensor]) -> Tensor:
    """Similarity-preserving KD: ``sum_s ||G^s - G^t||_F^2 / B^2`` over stages (see module docstring)."""
    _check_stages(student_feats, teacher_feats)
    total = None
    with fp32_region(student_feats[0]):
        for s, t in zip(student_feats, teacher_feats):
            g_s = similarity_matrix(s)
            g_t = similarity_matrix(t.detach())
            term = (g_s - g_t).square().sum() / s.shape[0] ** 2
            total = term if total is None else total + term
    return total
