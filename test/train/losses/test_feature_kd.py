import math

import pytest
import torch

from surround_depth_train.losses.feature_kd import FitNetsLoss, at_loss, attention_map, similarity_matrix, sp_loss


def test_at_matches_hand_computed_value():
    # student attention [1, 0] -> normalised [1, 0]; teacher [0, 4] -> [0, 1]; mean of squared diff = 1
    student = torch.tensor([[[[1.0, 0.0]]]])
    teacher = torch.tensor([[[[0.0, 2.0]]]])
    assert at_loss([student], [teacher]).item() == pytest.approx(1.0)


def test_at_sums_channels_of_squared_activations():
    feat = torch.tensor([[[[1.0, 2.0]], [[3.0, -1.0]]]])
    assert torch.allclose(attention_map(feat), torch.tensor([[[[10.0, 5.0]]]]))


def test_at_resizes_the_teacher_attention_to_the_student_resolution_and_sums_stages():
    student = torch.tensor([[[[1.0, 0.0]]]])  # [1, 1, 1, 2] -> [1, 0]
    teacher = torch.ones(1, 5, 2, 4)  # uniform attention at another size and channel count -> [1, 1] / sqrt(2)
    one_stage = (1 - 1 / math.sqrt(2)) ** 2 / 2 + 0.5 / 2
    assert one_stage == pytest.approx(1 - 1 / math.sqrt(2))
    assert at_loss([student], [teacher]).item() == pytest.approx(one_stage, rel=1e-6)
    assert at_loss([student, student], [teacher, teacher]).item() == pytest.approx(2 * one_stage, rel=1e-6)


def test_sp_matches_hand_computed_value():
    # student rows [1, 0], [0, 1]: G = I; teacher rows [1, 0], [1, 0]: G = ones -> rows / sqrt(2)
    # ||I - ones/sqrt(2)||_F^2 / 2^2 = (2 (1 - 1/sqrt(2))^2 + 2 * 0.5) / 4
    student = torch.tensor([[1.0, 0.0], [0.0, 1.0]]).reshape(2, 2, 1, 1)
    teacher = torch.tensor([[1.0, 0.0], [1.0, 0.0]]).reshape(2, 1, 1, 2)
    expected = (2 * (1 - 1 / math.sqrt(2)) ** 2 + 1.0) / 4
    assert sp_loss([student], [teacher]).item() == pytest.approx(expected, rel=1e-6)


def test_sp_similarity_rows_are_unit_norm():
    torch.manual_seed(0)
    g = similarity_matrix(torch.rand(3, 4, 2, 2))
    assert torch.allclose(g.norm(dim=1), torch.ones(3))


def test_sp_is_zero_when_batch_similarities_agree_across_shapes():
    torch.manual_seed(1)
    feat = torch.rand(3, 4, 2, 2)
    # A scaled copy with other channel and spatial layout has the same normalised similarities.
    other = (5 * feat).reshape(3, 2, 2, 4)
    assert sp_loss([feat], [other]).item() == pytest.approx(0.0, abs=1e-6)


def _set_regressor(loss: FitNetsLoss, stage: int, weight: float, bias: float) -> None:
    reg = loss.regressors[stage]
    with torch.no_grad():
        reg.weight.zero_()
        for c in range(min(reg.in_channels, reg.out_channels)):
            reg.weight[c, c] = weight
        reg.bias.fill_(bias)


def test_fitnets_builds_one_1x1_regressor_per_stage():
    loss = FitNetsLoss([16, 32], [64, 128])
    assert [(r.in_channels, r.out_channels, r.kernel_size) for r in loss.regressors] == [
        (16, 64, (1, 1)), (32, 128, (1, 1))]


def test_fitnets_matches_hand_computed_value_with_known_regressors():
    loss = FitNetsLoss([1, 1], [2, 1])
    _set_regressor(loss, 0, weight=2.0, bias=1.0)  # out_0 = 2 s + 1, out_1 = 1
    _set_regressor(loss, 1, weight=1.0, bias=0.0)
    s0 = torch.tensor([[[[1.0, 2.0]]]])  # regressed: channel 0 [3, 5], channel 1 [1, 1]
    t0 = torch.tensor([[[[3.0, 3.0]], [[0.0, 1.0]]]])
    stage0 = (0 + 4 + 1 + 0) / 4
    s1 = torch.tensor([[[[1.0, 1.0]]]])
    t1 = torch.full((1, 1, 2, 4), 3.0)  # constant teacher at twice the resolution, resized to 1x2
    stage1 = (4 + 4) / 2
    assert loss([s0, s1], [t0, t1]).item() == pytest.approx(stage0 + stage1, rel=1e-6)


def test_fitnets_trains_the_regressors_and_student_but_not_the_teacher():
    torch.manual_seed(2)
    loss = FitNetsLoss([3], [5])
    student = torch.rand(2, 3, 4, 4, requires_grad=True)
    teacher = torch.rand(2, 5, 8, 8, requires_grad=True)
    loss([student], [teacher]).backward()
    assert loss.regressors[0].weight.grad.abs().sum() > 0
    assert student.grad.abs().sum() > 0
    assert teacher.grad is None


@pytest.mark.parametrize('name', ['fitnets', 'at', 'sp'])
def test_feature_kd_gives_no_gradient_to_the_teacher(name):
    torch.manual_seed(3)
    student = torch.rand(2, 3, 4, 4, requires_grad=True)
    teacher = torch.rand(2, 3, 4, 4, requires_grad=True)
    fn = {'fitnets': FitNetsLoss([3], [3]), 'at': at_loss, 'sp': sp_loss}[name]
    fn([student], [teacher]).backward()
    assert teacher.grad is None
    assert student.grad.abs().sum() > 0


def test_feature_kd_rejects_mismatched_stages_and_channels_with_a_fix():
    s, t = torch.rand(1, 3, 2, 2), torch.rand(1, 4, 2, 2)
    with pytest.raises(ValueError, match='same .* number of decoder stages'):
        at_loss([s, s], [t])
    with pytest.raises(ValueError, match='stage 0.*channels'):
        FitNetsLoss([3], [5])([s], [t])
    with pytest.raises(ValueError, match='same'):
        FitNetsLoss([3, 4], [5])
    with pytest.raises(ValueError, match='batch sizes differ'):
        sp_loss([s], [torch.rand(2, 4, 2, 2)])
