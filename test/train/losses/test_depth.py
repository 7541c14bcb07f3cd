import math

import pytest
import torch

from surround_depth_train.losses.depth import depth_loss_by_name, l1_loss, silog_loss, valid_pixels


def _silog_by_loop(pred, target, mask, lam=0.15):
    g = [math.log(p) - math.log(t) for p, t, m in zip(pred, target, mask) if m and t > 0]
    mean = sum(g) / len(g)
    var = sum((x - mean) ** 2 for x in g) / len(g)
    return 10 * math.sqrt(var + lam * mean ** 2)


def test_silog_matches_hand_computed_value_with_population_variance():
    pred = torch.tensor([[[[2.0, 4.0]]]])
    target = torch.ones(1, 1, 1, 2)
    # g = [a, 2a] with a = ln 2: population variance a^2 / 4, mean 1.5 a -> 10 * a * sqrt(0.25 + 0.15 * 2.25).
    expected = 10 * math.log(2) * math.sqrt(0.25 + 0.15 * 2.25)
    assert silog_loss(pred, target).item() == pytest.approx(expected, rel=1e-6)


def test_silog_of_a_constant_factor_error_is_the_mean_term_only():
    target = torch.rand(2, 1, 3, 4) * 50 + 1
    loss = silog_loss(3 * target, target)
    assert loss.item() == pytest.approx(10 * math.sqrt(0.15) * math.log(3), rel=1e-5)


def test_silog_matches_a_plain_loop_on_random_masked_pixels():
    torch.manual_seed(0)
    pred = torch.rand(2, 1, 4, 5) * 20 + 0.5
    target = torch.rand(2, 1, 4, 5) * 20 + 0.5
    target[0, 0, 0, :3] = 0.0  # no LiDAR return
    mask = torch.rand(2, 1, 4, 5) > 0.3
    expected = _silog_by_loop(pred.flatten().tolist(), target.flatten().tolist(), mask.flatten().tolist())
    assert silog_loss(pred, target, mask).item() == pytest.approx(expected, rel=1e-5)


def test_l1_matches_hand_computed_value_and_ignores_invalid_pixels():
    pred = torch.tensor([[1.0, 5.0, float('nan'), 7.0]]).reshape(1, 1, 2, 2)
    target = torch.tensor([[2.0, 2.0, 3.0, 0.0]]).reshape(1, 1, 2, 2)
    mask = torch.tensor([[True, True, False, True]]).reshape(1, 1, 2, 2)
    # valid: pixel 0 (|1-2| = 1) and pixel 1 (|5-2| = 3); pixel 2 is masked, pixel 3 has no target.
    assert l1_loss(pred, target, mask).item() == pytest.approx(2.0)


def test_depth_losses_accept_three_and_four_dimensional_maps_alike():
    torch.manual_seed(1)
    pred = torch.rand(2, 1, 3, 3) + 0.5
    target = torch.rand(2, 1, 3, 3) + 0.5
    mask = torch.rand(2, 1, 3, 3) > 0.2
    for loss in (silog_loss, l1_loss):
        assert loss(pred[:, 0], target[:, 0], mask[:, 0]).item() == pytest.approx(loss(pred, target, mask).item())


@pytest.mark.parametrize('loss', [silog_loss, l1_loss])
def test_an_all_invalid_mask_gives_a_finite_zero_with_a_grad_fn(loss):
    pred = torch.full((1, 1, 2, 2), float('nan'), requires_grad=True)
    target = torch.ones(1, 1, 2, 2)
    out = loss(pred, target, torch.zeros(1, 1, 2, 2, dtype=torch.bool))
    assert out.item() == 0.0
    assert out.grad_fn is not None
    out.backward()
    assert torch.equal(pred.grad, torch.zeros_like(pred))


def test_nan_predictions_outside_the_mask_do_not_reach_the_gradient():
    pred = torch.tensor([[[[2.0, float('nan')], [3.0, 4.0]]]], requires_grad=True)
    target = torch.tensor([[[[1.0, 1.0], [1.0, 2.0]]]])
    mask = torch.tensor([[[[True, False], [True, True]]]])
    silog_loss(pred, target, mask).backward()
    assert torch.isfinite(pred.grad).all()
    assert pred.grad[0, 0, 0, 1] == 0


def test_silog_of_a_perfect_prediction_is_zero_with_a_finite_gradient():
    target = torch.rand(1, 1, 3, 3) + 1
    pred = target.clone().requires_grad_(True)
    loss = silog_loss(pred, target)
    loss.backward()
    assert loss.item() == 0.0
    assert torch.isfinite(pred.grad).all()


def test_valid_pixels_rejects_a_non_bool_mask_with_a_fix():
    with pytest.raises(TypeError, match='bool'):
        valid_pixels(torch.ones(1, 2, 2), torch.ones(1, 2, 2), torch.ones(1, 2, 2))


def test_depth_losses_reject_mismatched_shapes_with_a_fix():
    with pytest.raises(ValueError, match='resize the prediction'):
        l1_loss(torch.ones(1, 1, 4, 4), torch.ones(1, 1, 2, 2))
    with pytest.raises(ValueError, match=r'\[B, 1, H, W\]'):
        l1_loss(torch.ones(1, 3, 4, 4), torch.ones(1, 3, 4, 4))


def test_depth_loss_by_name_finds_both_losses_and_rejects_others():
    assert depth_loss_by_name('silog') is silog_loss
    assert depth_loss_by_name('l1') is l1_loss
    with pytest.raises(ValueError, match='silog'):
        depth_loss_by_name('l2')
