import math

import pytest
import torch
from torch import nn

from surround_depth_train.losses.ckd import ckd_loss, cross_depth
from surround_depth_train.losses.depth import l1_loss, silog_loss

# B=1, K=2, H=1, W=2: centers c_0 = [1, 2], c_1 = [3, 4]; probabilities p_0 = [0.5, 0.25], p_1 = [0.5, 0.75].
CENTERS = torch.tensor([[[[1.0, 2.0]], [[3.0, 4.0]]]])
PROBS = torch.tensor([[[[0.5, 0.25]], [[0.5, 0.75]]]])
# D_cross = [1*0.5 + 3*0.5, 2*0.25 + 4*0.75] = [2.0, 3.5]


def test_cross_depth_reads_student_probabilities_with_teacher_centers():
    assert torch.allclose(cross_depth(PROBS, CENTERS), torch.tensor([[[[2.0, 3.5]]]]))


def test_cross_depth_accepts_global_teacher_centers():
    centers = torch.tensor([[1.0, 3.0]])  # AdaBins-style [B, K]
    assert torch.allclose(cross_depth(PROBS, centers), torch.tensor([[[[2.0, 0.25 + 2.25]]]]))


def test_ckd_matches_hand_computed_l1_and_silog_values():
    teacher_depth = torch.tensor([[[[1.0, 7.0]]]])
    # L1: (|2 - 1| + |3.5 - 7|) / 2
    assert ckd_loss(PROBS, CENTERS, teacher_depth, depth_loss=l1_loss).item() == pytest.approx(2.25)
    # SiLog: g = [ln 2, ln 0.5] = [a, -a]; mean 0, population variance a^2 -> 10 a
    assert ckd_loss(PROBS, CENTERS, teacher_depth, depth_loss=silog_loss).item() == pytest.approx(
        10 * math.log(2), rel=1e-6)


def test_ckd_ignores_pixels_without_teacher_depth_and_masked_pixels():
    teacher_depth = torch.tensor([[[[0.0, 7.0]]]])
    assert ckd_loss(PROBS, CENTERS, teacher_depth, depth_loss=l1_loss).item() == pytest.approx(3.5)
    mask = torch.tensor([[[[True, False]]]])
    assert ckd_loss(PROBS, CENTERS, torch.tensor([[[[1.0, 7.0]]]]), mask, depth_loss=l1_loss).item() == (
        pytest.approx(1.0))


def test_ckd_gives_no_gradient_to_teacher_tensors():
    probs = PROBS.clone().requires_grad_(True)
    centers = CENTERS.clone().requires_grad_(True)
    teacher_depth = torch.tensor([[[[1.0, 7.0]]]], requires_grad=True)
    ckd_loss(probs, centers, teacher_depth).backward()
    assert centers.grad is None
    assert teacher_depth.grad is None
    assert probs.grad is not None and probs.grad.abs().sum() > 0


class _TinyBinStudent(nn.Module):
    """Shared trunk with a centers head and a probabilities head, like a MetricBins student."""

    def __init__(self, bins: int = 4) -> None:
        super().__init__()
        self.trunk = nn.Conv2d(3, 8, 3, padding=1)
        self.centers_head = nn.Conv2d(8, bins, 1)
        self.probs_head = nn.Conv2d(8, bins, 1)

    def forward(self, x):
        h = torch.relu(self.trunk(x))
        centers = nn.functional.softplus(self.centers_head(h)) + 0.1
        probs = self.probs_head(h).softmax(dim=1)
        return centers, probs, (centers * probs).sum(dim=1, keepdim=True)


def test_only_ckd_backpropagated_leaves_the_student_centers_without_gradient():
    torch.manual_seed(0)
    student = _TinyBinStudent()
    images = torch.rand(2, 3, 5, 6)
    teacher_centers = torch.rand(2, 4, 5, 6) * 10 + 1
    teacher_depth = torch.rand(2, 1, 5, 6) * 10 + 1
    centers, probs, depth = student(images)
    centers.retain_grad()
    ckd_loss(probs, teacher_centers, teacher_depth).backward()
    assert all(p.grad is None for p in student.centers_head.parameters())
    assert centers.grad is None
    assert student.probs_head.weight.grad.abs().sum() > 0
    assert student.trunk.weight.grad.abs().sum() > 0

    # The supervised loss on the same graph does reach the centers, so the check above can fail.
    student.zero_grad(set_to_none=True)
    centers, probs, depth = student(images)
    silog_loss(depth, teacher_depth).backward()
    assert student.centers_head.weight.grad.abs().sum() > 0


def test_ckd_rejects_mismatched_bins_and_resolutions_with_a_fix():
    with pytest.raises(ValueError, match='n_bins'):
        ckd_loss(torch.rand(1, 4, 2, 2), torch.rand(1, 3, 2, 2), torch.rand(1, 1, 2, 2))
    with pytest.raises(ValueError, match='resize the teacher'):
        ckd_loss(torch.rand(1, 4, 2, 2), torch.rand(1, 4, 4, 4), torch.rand(1, 1, 4, 4))
    with pytest.raises(ValueError, match='resize the teacher'):
        ckd_loss(torch.rand(1, 4, 2, 2), torch.rand(1, 4, 2, 2), torch.rand(1, 1, 4, 4))
