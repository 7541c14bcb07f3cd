import math

import pytest
import torch

from surround_depth_train.losses.vrkd import (adjacent_pairs, normalise_by_mean_distance, view_distances,
                                              view_relations, vrkd_loss)


def _scalar_views(values):
    """[B=1, N, K=1, H=1, W=len] from per-camera lists of pixel values."""
    return torch.tensor(values, dtype=torch.float32)[None, :, None, None, :]


def _huber(x, beta):
    return 0.5 * x * x / beta if abs(x) < beta else abs(x) - 0.5 * beta


def _vrkd_by_loop(student, teacher, reduction, beta):
    """Independent reference on nested lists: per sample mu over positive distances, sum over pairs."""
    b_, n_, k_, h_, w_ = student.shape
    cells = [(y, x) for y in range(h_) for x in range(w_)]

    def relations(p):
        """Per pair i, the list of normalised distances (one for 'map', one per pixel for 'pixel')."""
        d = []
        for i in range(n_):
            j = (i + 1) % n_
            if reduction == 'map':
                d.append([math.sqrt(sum((p[i][k][y][x] - p[j][k][y][x]) ** 2 for k in range(k_) for y, x in cells))])
            else:
                d.append([math.sqrt(sum((p[i][k][y][x] - p[j][k][y][x]) ** 2 for k in range(k_))) for y, x in cells])
        pos = [v for row in d for v in row if v > 0]
        mu = sum(pos) / len(pos) if pos else 1.0
        return [[v / mu for v in row] for row in d]

    rel_s = [relations(sample) for sample in student.tolist()]
    rel_t = [relations(sample) for sample in teacher.tolist()]
    total = 0.0
    for i in range(n_):
        terms = [_huber(gs - gt, beta) for b in range(b_) for gs, gt in zip(rel_s[b][i], rel_t[b][i])]
        total += sum(terms) / len(terms)
    return total


def test_adjacent_pairs_are_cyclic():
    assert adjacent_pairs(6) == [(0, 1), (1, 2), (2, 3), (3, 4), (4, 5), (5, 0)]
    assert adjacent_pairs(2) == [(0, 1), (1, 0)]


def test_vrkd_map_reduction_matches_hand_computed_value():
    # teacher cameras [0, 1, 3]: distances 1, 2, 3, mu 2 -> Gamma^t = [0.5, 1.0, 1.5]
    # student cameras [0, 1, 2]: distances 1, 1, 2, mu 4/3 -> Gamma^s = [0.75, 0.75, 1.5]
    # Huber(beta=1) of the differences 0.25, 0.25, 0 summed over pairs: 2 * 0.5 * 0.25^2
    teacher = _scalar_views([[0.0], [1.0], [3.0]])
    student = _scalar_views([[0.0], [1.0], [2.0]])
    assert torch.allclose(view_relations(teacher, 'map'), torch.tensor([[0.5, 1.0, 1.5]]))
    assert vrkd_loss(student, teacher, 'map').item() == pytest.approx(0.0625, rel=1e-6)


def test_vrkd_pixel_reduction_matches_hand_computed_value():
    # pixel 0: teacher [0, 1, 3] -> 1, 2, 3; student [0, 1, 2] -> 1, 1, 2
    # pixel 1: teacher [0, 0, 0] -> 0, 0, 0; student [0, 0, 1] -> 0, 1, 1
    # mu^t = mean(1, 2, 3) = 2 (zeros excluded); mu^s = mean(1, 1, 2, 1, 1) = 1.2
    # Gamma^t: pair0 [0.5, 0], pair1 [1, 0], pair2 [1.5, 0]
    # Gamma^s: pair0 [5/6, 0], pair1 [5/6, 5/6], pair2 [5/3, 5/6]
    # per pair, mean over pixels of 0.5 x^2: pair0 (1/18 + 0)/2, pair1 (1/72 + 25/72)/2, pair2 the same
    teacher = _scalar_views([[0.0, 0.0], [1.0, 0.0], [3.0, 0.0]])
    student = _scalar_views([[0.0, 0.0], [1.0, 0.0], [2.0, 1.0]])
    expected = 1 / 36 + 13 / 72 + 13 / 72
    assert vrkd_loss(student, teacher, 'pixel').item() == pytest.approx(expected, rel=1e-6)
    # The map reduction of the same tensors is a different number, so the two options are really different.
    assert vrkd_loss(student, teacher, 'map').item() != pytest.approx(expected, rel=1e-3)


@pytest.mark.parametrize('reduction', ['map', 'pixel'])
@pytest.mark.parametrize('beta', [1.0, 0.1])
def test_vrkd_matches_a_plain_loop_on_random_probabilities(reduction, beta):
    torch.manual_seed(0)
    student = torch.rand(2, 4, 3, 2, 3).softmax(dim=2)
    teacher = (torch.rand(2, 4, 3, 2, 3) * 4).softmax(dim=2)
    expected = _vrkd_by_loop(student, teacher, reduction, beta)
    assert vrkd_loss(student, teacher, reduction, beta).item() == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize('reduction', ['map', 'pixel'])
def test_vrkd_is_invariant_to_scaling_all_distances(reduction):
    torch.manual_seed(1)
    student = torch.rand(2, 6, 4, 3, 5).softmax(dim=2)
    teacher = (torch.rand(2, 6, 4, 3, 5) * 3).softmax(dim=2)
    loss = vrkd_loss(student, teacher, reduction)
    assert loss.item() > 1e-3
    # Scaling a probability map scales every distance by the same factor; per-sample mu cancels it, even with a
    # different factor per sample and per model.
    s_scale = torch.tensor([3.0, 0.2]).reshape(2, 1, 1, 1, 1)
    t_scale = torch.tensor([0.5, 7.0]).reshape(2, 1, 1, 1, 1)
    assert not torch.allclose(view_distances(student * s_scale, reduction), view_distances(student, reduction))
    assert vrkd_loss(student * s_scale, teacher * t_scale, reduction).item() == pytest.approx(loss.item(), rel=1e-5)


def test_normalise_by_mean_distance_divides_each_sample_by_its_positive_mean():
    d = torch.tensor([[0.0, 2.0, 4.0], [1.0, 1.0, 4.0], [0.0, 0.0, 0.0]])
    expected = torch.tensor([[0.0, 2 / 3, 4 / 3], [0.5, 0.5, 2.0], [0.0, 0.0, 0.0]])
    assert torch.allclose(normalise_by_mean_distance(d), expected)


def test_vrkd_gives_gradient_to_the_student_only():
    torch.manual_seed(2)
    student = torch.rand(1, 3, 4, 2, 2).softmax(dim=2).requires_grad_(True)
    teacher = torch.rand(1, 3, 4, 2, 2).softmax(dim=2).requires_grad_(True)
    vrkd_loss(student, teacher, 'pixel').backward()
    assert teacher.grad is None
    assert torch.isfinite(student.grad).all() and student.grad.abs().sum() > 0


@pytest.mark.parametrize('reduction', ['map', 'pixel'])
def test_identical_views_give_a_finite_loss_and_gradient(reduction):
    student = torch.full((1, 3, 2, 2, 2), 0.5, requires_grad=True)
    teacher = torch.rand(1, 3, 2, 2, 2)
    loss = vrkd_loss(student, teacher, reduction)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(student.grad).all()


def test_vrkd_rejects_bad_input_with_a_fix():
    probs = torch.rand(1, 3, 4, 2, 2)
    with pytest.raises(ValueError, match='at least 2 cameras'):
        vrkd_loss(torch.rand(1, 1, 4, 2, 2), torch.rand(1, 1, 4, 2, 2))
    with pytest.raises(ValueError, match='n_bins'):
        vrkd_loss(probs, torch.rand(1, 3, 5, 2, 2))
    with pytest.raises(ValueError, match=r'\[B, N, K, H, W\]'):
        vrkd_loss(torch.rand(3, 4, 2, 2), torch.rand(3, 4, 2, 2))
    with pytest.raises(ValueError, match='reduction'):
        vrkd_loss(probs, probs, 'mean')
