"""Every registered depth model (ViT-L excluded): forward, gradients, bfloat16; students: sizes against the paper."""
from __future__ import annotations

import pytest
import torch

from surround_depth_train.models import DepthOutput, create_model, list_models

FORWARD_MODELS = [n for n in list_models() if 'vitl' not in n]
SIZE = (64, 96)


def _small_kwargs(name: str) -> dict:
    # Teachers resize their input to ``input_size``; keep it tiny here.
    return {'input_size': 56} if name.startswith('depth_anything_') else {}


def _images(batch: int = 2, size: tuple[int, int] = SIZE) -> torch.Tensor:
    return torch.rand(batch, 3, *size, generator=torch.Generator().manual_seed(0))


@pytest.fixture(scope='module')
def models() -> dict:
    return {}


def _model(models: dict, name: str):
    if name not in models:
        torch.manual_seed(0)
        models[name] = create_model(name, **_small_kwargs(name))
    return models[name]


@pytest.mark.parametrize('name', FORWARD_MODELS)
def test_forward_gives_depth_and_bins_at_the_input_resolution(models, name):
    model = _model(models, name).eval()
    with torch.no_grad():
        out = model(_images())
    assert isinstance(out, DepthOutput)
    assert out.depth.shape == (2, 1, *SIZE)
    assert torch.isfinite(out.depth).all() and bool((out.depth > 0).all())
    assert model.has_bins == (out.probs is not None) == (out.centers is not None)
    assert model.min_depth < model.max_depth
    if model.has_bins:
        assert out.probs.shape[2:] == out.centers.shape[2:] == SIZE
        torch.testing.assert_close(out.probs.sum(1), torch.ones(2, *SIZE), rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(out.depth, (out.probs * out.centers).sum(1, keepdim=True), rtol=1e-4, atol=1e-4)
    assert all(f.ndim == 4 for f in out.features)


@pytest.mark.parametrize('name', FORWARD_MODELS)
def test_gradients_are_finite(models, name):
    model = _model(models, name).train()
    out = model(_images())
    loss = out.depth.log().mean() + (out.probs.square().mean() if out.probs is not None else 0)
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert len(grads) > 0.8 * len(list(model.parameters()))
    assert all(torch.isfinite(g).all() for g in grads)
    model.zero_grad(set_to_none=True)


@pytest.mark.parametrize('name', FORWARD_MODELS)
def test_no_nan_under_bfloat16_autocast(models, name):
    model = _model(models, name).train()
    with torch.autocast('cpu', dtype=torch.bfloat16):
        out = model(_images())
    assert torch.isfinite(out.depth).all()
    if out.probs is not None:
        assert torch.isfinite(out.probs).all() and torch.isfinite(out.centers).all()


# Paper, Table I (M parameters) and the head's share (difference of the + MB row).
PAPER = {'monodepth2': (14.33, 15.03), 'hrdepth': (14.10, 14.80), 'monovit': (27.87, 28.31)}


def _count(model) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize('name', list(PAPER))
def test_parameter_counts_and_head_share_match_the_paper(name):
    plain, with_head = (_count(create_model(n)) / 1e6 for n in (name, f'{name}_mb'))
    paper_plain, paper_mb = PAPER[name]
    assert abs(plain - paper_plain) / paper_plain < 0.02
    assert abs(with_head - paper_mb) / paper_mb < 0.02
    assert abs((with_head - plain) - (paper_mb - paper_plain)) / (paper_mb - paper_plain) < 0.10


def test_normed_bins_give_ordered_centers_inside_the_depth_range():
    model = create_model('tiny_student_mb', min_depth=0.5, max_depth=50.0, bins={'bin_centers_type': 'normed'})
    with torch.no_grad():
        out = model.eval()(_images())
    assert bool((out.centers[:, 1:] >= out.centers[:, :-1]).all())
    assert out.centers.min() >= 0.5 and out.centers.max() <= 50.0


def test_plain_student_depth_follows_the_disparity_range():
    model = create_model('tiny_student', min_depth=1.0, max_depth=20.0).eval()
    with torch.no_grad():
        depth = model(_images()).depth
    assert depth.min() >= 1.0 and depth.max() <= 20.0


def test_bins_kwargs_reach_the_head():
    model = create_model('tiny_student_mb', bins={'n_bins': 8, 'bin_embedding_dim': 8})
    assert model.metric_bins.n_bins == 8
    with pytest.raises(ValueError, match='tiny_student_mb'):
        create_model('tiny_student', bins={'n_bins': 8})


def test_timm_student_takes_a_four_level_backbone_and_refuses_a_plain_vit():
    model = create_model('timm_student_mb', backbone='test_convnext', bins={'n_bins': 8, 'bin_embedding_dim': 8})
    assert len(model.metric_bins.attractors) == 3
    with torch.no_grad():
        assert model.eval()(_images()).depth.shape == (2, 1, *SIZE)
    with pytest.raises(ValueError, match='increasing strides'):
        create_model('timm_student', backbone='test_vit')
    with pytest.raises(ValueError, match='timm has no model'):
        create_model('timm_student', backbone='no_such_net')


@pytest.mark.parametrize('images, match', [(torch.rand(2, 4, 64, 64), r'\[B, 3, H, W\]'),
                                           (torch.zeros(2, 3, 64, 64, dtype=torch.uint8), 'uint8'),
                                           (torch.rand(1, 3, 32, 96), 'at least 33 pixels')])
def test_bad_images_are_refused_with_the_fix(images, match):
    with pytest.raises(ValueError, match=match):
        create_model('tiny_student')(images)


def test_odd_input_sizes_give_depth_at_that_size():
    model = create_model('tiny_student_mb').eval()
    with torch.no_grad():
        assert model(_images(1, (50, 70))).depth.shape == (1, 1, 50, 70)


@pytest.mark.parametrize('name', FORWARD_MODELS)
def test_depth_only_gives_the_same_depth_and_leaves_the_bins_out(models, name):
    model = _model(models, name).eval()
    with torch.no_grad():
        full = model(_images())
        only = model(_images(), depth_only=True)
    assert only.centers is None and only.probs is None
    torch.testing.assert_close(only.depth, full.depth, rtol=1e-5, atol=1e-5)
