"""Output-level KD for regression (the "KD" row of Table III).

Hinton-style distillation adapted to depth regression: the teacher's depth is the target of the depth loss,

    L_kd = L_depth(D_s, D_t)    on pixels where D_t > 0 (and mask),

with the teacher detached. Unlike ``L_ckd`` this transfers the teacher's metric scale too, which the paper notes
can hurt when the teacher's scale is off; it is a baseline only.
"""
from __future__ import annotations

from typing import Optional

from torch import Tensor

from surround_depth_train.losses.depth import DepthLoss, silog_loss

__all__ = ['output_kd_loss']


def output_kd_loss(student_depth: Tensor, teacher_depth: Tensor, mask: Optional[Tensor] = None,
                   depth_loss: DepthLoss = silog_loss) -> Tensor:
    """``L_depth(D_s, detach(D_t))`` on pixels where the teacher depth is positive (and ``mask``).

    Args:
        student_depth: ``[B, 1, H, W]`` or ``[B, H, W]`` student depth.
        teacher_depth: same shape, teacher depth (detached here).
        mask: optional bool mask, True = valid.
        depth_loss: the depth loss (SiLog or L1).

    Returns:
        Scalar fp32 loss.
    """
    return depth_loss(student_depth, teacher_depth.detach(), mask)
