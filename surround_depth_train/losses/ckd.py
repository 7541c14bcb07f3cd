"""Cross-interaction knowledge distillation, ``L_ckd`` (paper Eq. 4-5).

The student's bin probabilities are read out with the teacher's bin centers and compared with the teacher's depth:

    D_cross[u, v] = sum_k c^t_k[u, v] * p^s_k[u, v]
    L_ckd = L_depth(D_cross, D_t)

What receives gradient from ``L_ckd``:

- the student's probabilities ``p^s`` and every layer upstream of them: in MetricBins the conditional
  log-binomial head and the last stage's projector (whose embedding conditions it), then the decoder and the
  encoder;
- **not** the student's center tensor ``c^s``: it never enters ``L_ckd``, so its gradient from this loss is
  exactly zero (``None`` when ``L_ckd`` is the only loss), and neither do the layers that only shape centers
  (seed regressor, seed projector, attractors, the earlier stages' projectors). Layers that feed both centers and
  probabilities (the last projector, the decoder, the encoder) do get gradient, through the probabilities only.
  The metric scale of ``c^s`` is learnt from ``L_sup`` (the paper's point: probabilities carry the teacher's
  scale-invariant structure, centers carry the metric scale from LiDAR);
- nothing of the teacher: its centers and depth are detached here.

``mask`` restricts the loss to pixels where the student sees the scene: the distillation task passes the sample's
``self_mask`` by default (``loss.ckd_mask=self_mask``), so the ego body visible in a camera (DDAD) is not distilled.
"""
from __future__ import annotations

from typing import Optional

from torch import Tensor

from surround_depth_train.losses.depth import DepthLoss, silog_loss
from surround_depth_train.losses.precision import fp32_region

__all__ = ['cross_depth', 'ckd_loss']


def cross_depth(student_probs: Tensor, teacher_centers: Tensor) -> Tensor:
    """``D_cross = sum_k c^t_k * p^s_k`` in fp32, with the teacher's centers detached.

    Args:
        student_probs: ``[B, K, H, W]`` bin probabilities of the student (softmax over K).
        teacher_centers: ``[B, K, H, W]`` per-pixel centers, or ``[B, K, 1, 1]`` / ``[B, K]`` global centers
            (AdaBins-style heads).

    Returns:
        ``[B, 1, H, W]`` depth.
    """
    if student_probs.ndim != 4:
        raise ValueError(f'student_probs must be [B, K, H, W], got shape {tuple(student_probs.shape)}')
    if teacher_centers.ndim == 2:
        teacher_centers = teacher_centers[:, :, None, None]
    if teacher_centers.ndim != 4:
        raise ValueError(f'teacher_centers must be [B, K, H, W] (or [B, K] global), got shape '
                         f'{tuple(teacher_centers.shape)}')
    b, k, h, w = student_probs.shape
    tb, tk, th, tw = teacher_centers.shape
    if (tb, tk) != (b, k):
        raise ValueError(f'teacher_centers {tuple(teacher_centers.shape)} and student_probs '
                         f'{tuple(student_probs.shape)} must share batch and bin count K; build both heads with '
                         f'the same n_bins')
    if (th, tw) not in ((h, w), (1, 1)):
        raise ValueError(f'teacher_centers are {th}x{tw} but student_probs are {h}x{w}; resize the teacher outputs '
                         f'to the student resolution first')
    with fp32_region(student_probs):
        return (teacher_centers.detach().float() * student_probs.float()).sum(dim=1, keepdim=True)


def ckd_loss(student_probs: Tensor, teacher_centers: Tensor, teacher_depth: Tensor, mask: Optional[Tensor] = None,
             depth_loss: DepthLoss = silog_loss) -> Tensor:
    """``L_ckd = L_depth(sum_k c^t_k p^s_k, D_t)`` on pixels where ``D_t > 0`` (and ``mask``).

    Args:
        student_probs: ``[B, K, H, W]`` student bin probabilities.
        teacher_centers: ``[B, K, H, W]`` teacher bin centers (detached here).
        teacher_depth: ``[B, 1, H, W]`` or ``[B, H, W]`` teacher depth (detached here).
        mask: optional bool mask, True = valid (e.g. the self-occlusion mask).
        depth_loss: the ``L_depth`` of Eq. 3, usually the same as for ``L_sup``.

    Returns:
        Scalar fp32 loss; gradient reaches ``student_probs`` only.
    """
    d_cross = cross_depth(student_probs, teacher_centers)
    if teacher_depth.shape[-2:] != d_cross.shape[-2:]:
        raise ValueError(f'teacher_depth {tuple(teacher_depth.shape)} does not match the student resolution '
                         f'{tuple(d_cross.shape[-2:])}; resize the teacher outputs first')
    with fp32_region(student_probs):
        # depth losses treat target <= 0 as invalid, which is exactly "teacher depth > 0".
        return depth_loss(d_cross, teacher_depth.detach().float(), mask)
