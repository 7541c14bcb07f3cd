import math

import pytest
import torch

from surround_depth_train.losses.depth import l1_loss
from surround_depth_train.losses.output_kd import output_kd_loss


def test_output_kd_matches_hand_computed_values_on_teacher_depth():
    student = torch.tensor([[[[2.0, 4.0, 9.0]]]])
    teacher = torch.tensor([[[[1.0, 8.0, 0.0]]]])  # the third pixel has no teacher depth
    assert output_kd_loss(student, teacher, depth_loss=l1_loss).item() == pytest.approx((1 + 4) / 2)
    # SiLog: g = [ln 2, -ln 2], mean 0, population variance (ln 2)^2
    assert output_kd_loss(student, teacher).item() == pytest.approx(10 * math.log(2), rel=1e-6)


def test_output_kd_respects_the_mask():
    student = torch.tensor([[[[2.0, 4.0]]]])
    teacher = torch.tensor([[[[1.0, 8.0]]]])
    mask = torch.tensor([[[[False, True]]]])
    assert output_kd_loss(student, teacher, mask, depth_loss=l1_loss).item() == pytest.approx(4.0)


def test_output_kd_gives_no_gradient_to_the_teacher():
    student = torch.tensor([[[[2.0, 4.0]]]], requires_grad=True)
    teacher = torch.tensor([[[[1.0, 8.0]]]], requires_grad=True)
    output_kd_loss(student, teacher).backward()
    assert teacher.grad is None
    assert student.grad.abs().sum() > 0
