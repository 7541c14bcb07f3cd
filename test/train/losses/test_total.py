import pytest
import torch

from surround_depth_train.losses.total import DistillationWeights, combine_losses


def test_default_weights_are_the_papers():
    w = DistillationWeights()
    assert (w.sup, w.ckd, w.vrkd) == (1.0, 0.1, 1.0)
    assert w.active == ('sup', 'ckd', 'vrkd')


def test_combine_losses_weights_and_reports_each_active_term():
    terms = {'sup': torch.tensor(2.0), 'ckd': torch.tensor(3.0), 'vrkd': torch.tensor(0.5)}
    out = combine_losses(terms, DistillationWeights())
    assert set(out) == {'loss', 'sup', 'ckd', 'vrkd'}
    assert out['loss'].item() == pytest.approx(2.0 + 0.1 * 3.0 + 1.0 * 0.5)
    assert out['ckd'].item() == 3.0


def test_combine_losses_leaves_out_inactive_terms_even_when_given():
    terms = {'sup': torch.tensor(2.0), 'ckd': torch.tensor(3.0), 'at': torch.tensor(7.0)}
    out = combine_losses(terms, DistillationWeights(ckd=0.0, vrkd=0.0, at=2.0))
    assert set(out) == {'loss', 'sup', 'at'}
    assert out['loss'].item() == pytest.approx(2.0 + 14.0)


def test_combine_losses_backpropagates_through_every_active_term():
    a = torch.tensor(1.0, requires_grad=True)
    b = torch.tensor(1.0, requires_grad=True)
    combine_losses({'sup': 3 * a, 'ckd': 5 * b, 'vrkd': a * 0}, DistillationWeights())['loss'].backward()
    assert a.grad.item() == pytest.approx(3.0)
    assert b.grad.item() == pytest.approx(0.5)


def test_combine_losses_rejects_missing_active_and_unknown_terms():
    with pytest.raises(ValueError, match=r"\['vrkd'\].*weight to 0"):
        combine_losses({'sup': torch.tensor(1.0), 'ckd': torch.tensor(1.0)}, DistillationWeights())
    with pytest.raises(ValueError, match='unknown loss terms'):
        combine_losses({'sup': torch.tensor(1.0), 'rkd': torch.tensor(1.0)}, DistillationWeights(ckd=0, vrkd=0))


def test_weights_must_be_finite_and_non_negative():
    with pytest.raises(ValueError, match='ckd'):
        DistillationWeights(ckd=-0.1)
    with pytest.raises(ValueError, match='sp'):
        DistillationWeights(sp=float('nan'))
