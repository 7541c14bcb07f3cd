"""MetricBins: ZoeDepth's names, the same function as a plain (unfused) reading of ZoeDepth, and the bins invariants."""
from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from surround_depth_train.models.bins import (AttractorLayer, BinsOutput, LogBinomial, MetricBins, resize_bins,
                                              softplus_inference)

STAGES = (16, 12, 8, 8)


def make_head(**kwargs) -> MetricBins:
    torch.manual_seed(0)
    kwargs.setdefault('bottleneck_channels', 24)
    kwargs.setdefault('stage_channels', STAGES)
    kwargs.setdefault('last_channels', 6)
    kwargs.setdefault('n_bins', 16)
    kwargs.setdefault('bin_embedding_dim', 16)
    return MetricBins(**kwargs)


def make_inputs(head: MetricBins, batch: int = 2, size: tuple[int, int] = (32, 48), seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    h, w = size
    bottleneck = torch.randn(batch, head.conv2.in_channels, h // 32, w // 32, generator=g)
    stages = [torch.randn(batch, c, h // 2 ** (4 - i), w // 2 ** (4 - i), generator=g)
              for i, c in enumerate(p._net[0].in_channels for p in head.projectors)]
    last = torch.randn(batch, head.conditional_log_binomial.in_features - 1, h, w, generator=g)
    rel = torch.rand(batch, 1, h, w, generator=g)
    return bottleneck, stages, last, rel


def up(x, size):
    return F.interpolate(x, size=size, mode='bilinear', align_corners=True)


def reference_forward(head: MetricBins, bottleneck, stages, last, rel):
    """ZoeDepth's computation written plainly: concatenations, full-resolution embedding, unfused log-binomial."""
    lo, hi = head.min_depth, head.max_depth
    normed = head.bin_centers_type == 'normed'
    x = head.conv2(bottleneck)
    raw = head.seed_bin_regressor._net(x)
    if normed:
        wd = raw + 1e-3
        wd = wd / wd.sum(1, keepdim=True) * (hi - lo)
        edges = torch.cumsum(F.pad(wd, (0, 0, 0, 0, 1, 0), value=lo), dim=1)
        centers = 0.5 * (edges[:, :-1] + edges[:, 1:])
        b = (centers - lo) / (hi - lo)
    else:
        centers = b = raw
    prev = head.seed_projector._net(x)
    for proj, attr, feat in zip(head.projectors, head.attractors, stages):
        emb = proj._net(feat)
        a = attr._net(emb + up(prev, emb.shape[-2:]))
        if normed:
            n, _, h, w = a.shape
            a = (a + 1e-3).view(n, attr.n_attractors, 2, h, w)[:, :, 0]
        b = up(b, a.shape[-2:])
        dx = a.unsqueeze(2) - b.unsqueeze(1)
        delta = (dx / (1 + attr.alpha * dx.pow(attr.gamma))).mean(dim=1)
        b = b + delta
        centers = torch.clip(torch.sort((hi - lo) * b + lo, dim=1).values, lo, hi) if normed else b
        prev = emb
    clb = head.conditional_log_binomial
    feat = torch.cat([last, up(rel, last.shape[-2:]), up(prev, last.shape[-2:])], dim=1)
    pt = clb.mlp(feat) + 1e-4
    p = pt[:, 0] / (pt[:, 0] + pt[:, 1])
    t = (pt[:, 2] / (pt[:, 2] + pt[:, 3])).unsqueeze(1) * (clb.max_temp - clb.min_temp) + clb.min_temp
    lb = clb.log_binomial_transform
    k = lb.k_idx.to(lb.K_minus_1.dtype)
    n_, k_ = lb.K_minus_1 + 1e-7, k + 1e-7
    log_c = n_ * torch.log(n_) - k_ * torch.log(k_) - (n_ - k_) * torch.log(n_ - k_ + 1e-7)
    p = p.unsqueeze(1)
    y = log_c + k * torch.log(p.clamp(1e-4, 1)) + (lb.K - 1 - k) * torch.log((1 - p).clamp(1e-4, 1))
    probs = torch.softmax(y / t, dim=1)
    centers = up(centers, probs.shape[-2:])
    return centers, probs, (probs * centers).sum(1, keepdim=True)


def test_parameter_and_buffer_names_match_zoedepth():
    head = MetricBins(bottleneck_channels=256, stage_channels=[256] * 4, last_channels=32)
    names = set(head.state_dict())
    expected = {'conv2.weight', 'conv2.bias',
                'conditional_log_binomial.log_binomial_transform.k_idx',
                'conditional_log_binomial.log_binomial_transform.K_minus_1'}
    for prefix in ['seed_bin_regressor', 'seed_projector'] + [f'projectors.{i}' for i in range(4)] + \
            [f'attractors.{i}' for i in range(4)]:
        expected |= {f'{prefix}._net.{j}.{p}' for j in (0, 2) for p in ('weight', 'bias')}
    expected |= {f'conditional_log_binomial.mlp.{j}.{p}' for j in (0, 2) for p in ('weight', 'bias')}
    assert names == expected


def test_shapes_follow_zoedepth_for_the_depth_anything_configuration():
    head = MetricBins(bottleneck_channels=256, stage_channels=[256] * 4, last_channels=32)
    sd = head.state_dict()
    assert sd['seed_bin_regressor._net.2.weight'].shape == (64, 256, 1, 1)
    assert [sd[f'attractors.{i}._net.2.weight'].shape[0] for i in range(4)] == [16, 8, 4, 1]
    assert sd['conditional_log_binomial.mlp.0.weight'].shape == (80, 32 + 1 + 128, 1, 1)
    assert sd['conditional_log_binomial.log_binomial_transform.k_idx'].dtype == torch.int64
    assert sd['conditional_log_binomial.log_binomial_transform.K_minus_1'].item() == 63
    normed = MetricBins(bottleneck_channels=256, stage_channels=[256] * 4, last_channels=32,
                        bin_centers_type='normed')
    assert normed.state_dict()['attractors.0._net.2.weight'].shape[0] == 32


@pytest.mark.parametrize('centers_type', ['softplus', 'normed'])
def test_matches_a_plain_reading_of_zoedepth(centers_type):
    head = make_head(bin_centers_type=centers_type, min_depth=0.5, max_depth=40.0).double()
    inputs = [t.double() if torch.is_tensor(t) else [s.double() for s in t] for t in make_inputs(head)]
    out = head(*inputs)
    centers, probs, depth = reference_forward(head, *inputs)
    torch.testing.assert_close(out.centers, centers, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(out.probs, probs, rtol=1e-8, atol=1e-9)
    torch.testing.assert_close(out.depth, depth, rtol=1e-9, atol=1e-9)


def test_matches_the_plain_reading_in_float32_too():
    head = make_head()
    inputs = make_inputs(head)
    out = head(*inputs)
    _, probs, depth = reference_forward(head, *inputs)
    torch.testing.assert_close(out.probs, probs, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(out.depth, depth, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize('centers_type', ['softplus', 'normed'])
def test_probabilities_sum_to_one_and_depth_is_their_expectation(centers_type):
    head = make_head(bin_centers_type=centers_type)
    out = head(*make_inputs(head))
    assert out.probs.shape == out.centers.shape == (2, 16, 32, 48)
    assert out.depth.shape == (2, 1, 32, 48)
    assert bool((out.probs >= 0).all())
    torch.testing.assert_close(out.probs.sum(1), torch.ones(2, 32, 48))
    torch.testing.assert_close(out.depth, (out.probs * out.centers).sum(1, keepdim=True))


def test_normed_centers_are_ordered_and_inside_the_depth_range():
    head = make_head(bin_centers_type='normed', min_depth=0.1, max_depth=60.0)
    with torch.no_grad():  # push some attractors far out so the clip matters
        head.attractors[-1]._net[2].bias.fill_(3.0)
    out = head(*make_inputs(head))
    assert bool((out.centers[:, 1:] >= out.centers[:, :-1]).all())
    assert out.centers.min() >= 0.1 and out.centers.max() <= 60.0
    assert out.depth.min() >= 0.1 and out.depth.max() <= 60.0


def test_untrained_softplus_centers_span_the_depth_range_geometrically():
    head = make_head(min_depth=1e-3, max_depth=80.0)
    with torch.no_grad():
        seed = head.seed_bin_regressor(torch.zeros(1, 1, 1, head.conv2.in_channels))[0, 0, 0].double()
    expected = torch.logspace(torch.log10(torch.tensor(0.8)), torch.log10(torch.tensor(80.0)), 16,
                              dtype=torch.float64)
    torch.testing.assert_close(seed, expected, rtol=0.05, atol=0.05)  # the hidden layer adds a little
    out = head(*make_inputs(head))
    assert 2.0 < float(out.depth.detach().median()) < 40.0  # street scale from the first step, not softplus(0) = 0.69 m


def test_rel_depth_at_another_resolution_is_resized():
    head = make_head()
    bottleneck, stages, last, rel = make_inputs(head)
    out_small = head(bottleneck, stages, last, F.interpolate(rel, size=(16, 24), mode='bilinear',
                                                             align_corners=True))
    out_3d = head(bottleneck, stages, last, rel[:, 0])
    torch.testing.assert_close(out_3d.depth, head(bottleneck, stages, last, rel).depth)
    assert out_small.depth.shape == (2, 1, 32, 48)


@pytest.mark.parametrize('size', [(16, 24), (45, 70)])
def test_resize_bins_keeps_depth_the_expectation_of_resized_bins(size):
    head = make_head()
    out = resize_bins(head(*make_inputs(head)), size)
    assert out.centers.shape[-2:] == out.probs.shape[-2:] == out.depth.shape[-2:] == size
    torch.testing.assert_close(out.probs.sum(1), torch.ones(2, *size))
    torch.testing.assert_close(out.depth, (out.probs * out.centers).sum(1, keepdim=True))


def test_out_size_returns_resized_bins():
    head = make_head()
    inputs = make_inputs(head)
    direct = head(*inputs, out_size=(20, 30))
    resized = resize_bins(head(*inputs), (20, 30))
    torch.testing.assert_close(direct.depth, resized.depth)
    assert isinstance(direct, BinsOutput)


def test_gradients_are_finite_and_reach_every_parameter():
    head = make_head()
    out = head(*make_inputs(head))
    (out.depth.mean() + out.probs.pow(2).mean()).backward()
    for name, p in head.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name


def test_no_nan_under_bfloat16_autocast():
    head = make_head()
    with torch.autocast('cpu', dtype=torch.bfloat16):
        out = head(*make_inputs(head))
    for t in (out.centers, out.probs, out.depth):
        assert torch.isfinite(t).all()
    torch.testing.assert_close(out.probs.float().sum(1), torch.ones(2, 32, 48), rtol=1e-3, atol=1e-3)


def test_log_binomial_is_unimodal_with_the_mode_near_p_times_k_minus_one():
    lb = LogBinomial(33)
    p = torch.tensor([0.1, 0.5, 0.9]).view(3, 1)
    probs = lb(p, torch.ones(3, 1))
    modes = probs.argmax(1)
    assert modes.tolist() == [round(0.1 * 32), 16, round(0.9 * 32)]
    diffs = torch.sign(probs[:, 1:] - probs[:, :-1])
    for row, mode in zip(diffs, modes):  # rises up to the mode and falls after it
        assert bool((row[:mode] > 0).all()) and bool((row[mode:] < 0).all())


@pytest.mark.parametrize('kwargs, match', [
    ({'bin_centers_type': 'linear'}, 'bin_centers_type'),
    ({'n_attractors': (4, 2)}, 'n_attractors'),
    ({'attractor_kind': 'max'}, 'attractor_kind'),
    ({'attractor_type': 'log'}, 'attractor_type'),
    ({'min_depth': 10.0, 'max_depth': 1.0}, 'min_depth'),
])
def test_bad_configuration_is_refused_with_a_clear_message(kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_head(**kwargs)


def test_wrong_number_of_stage_features_is_refused():
    head = make_head()
    bottleneck, stages, last, rel = make_inputs(head)
    with pytest.raises(ValueError, match='stage features'):
        head(bottleneck, stages[:3], last, rel)


def _no_grad_and_grad(head, inputs, **kwargs):
    with torch.no_grad():
        fast = head(*inputs, **kwargs)
    return fast, head(*inputs, **kwargs)


@pytest.mark.parametrize('centers_type', ['softplus', 'normed'])
@pytest.mark.parametrize('size', [(32, 48), (37, 53)])
def test_inference_path_computes_the_same_function_as_the_autograd_path(centers_type, size):
    head = make_head(bin_centers_type=centers_type).double()
    inputs = [t.double() if torch.is_tensor(t) else [s.double() for s in t] for t in make_inputs(head, size=size)]
    fast, reference = _no_grad_and_grad(head, inputs)
    torch.testing.assert_close(fast.probs, reference.probs, rtol=1e-6, atol=1e-8)
    torch.testing.assert_close(fast.centers, reference.centers, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(fast.depth, reference.depth, rtol=1e-6, atol=1e-6)


def test_inference_path_matches_in_float32_and_with_out_size():
    head = make_head()
    fast, reference = _no_grad_and_grad(head, make_inputs(head), out_size=(20, 30))
    assert fast.depth.shape == (2, 1, 20, 30)
    torch.testing.assert_close(fast.probs, reference.probs, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(fast.depth, reference.depth, rtol=1e-4, atol=1e-4)


def test_inference_path_handles_a_head_without_stages():
    head = make_head(stage_channels=())
    bottleneck, _, last, rel = make_inputs(head)
    fast, reference = _no_grad_and_grad(head, (bottleneck, [], last, rel))
    torch.testing.assert_close(fast.depth, reference.depth, rtol=1e-4, atol=1e-4)


def test_outputs_are_channels_last_views_with_the_nchw_shape():
    head = make_head()
    with torch.no_grad():
        out = head(*make_inputs(head))
    assert out.probs.shape == (2, 16, 32, 48)
    assert out.probs.is_contiguous(memory_format=torch.channels_last)
    assert out.centers.is_contiguous(memory_format=torch.channels_last)


def test_memory_efficient_recomputation_gives_the_same_gradients():
    grads = []
    for memory_efficient in (True, False):
        head = make_head(memory_efficient=memory_efficient)
        out = head(*make_inputs(head))
        (out.depth.mean() + out.probs[:, 3].mean()).backward()
        grads.append({n: p.grad.clone() for n, p in head.named_parameters()})
    for name in grads[0]:
        torch.testing.assert_close(grads[0][name], grads[1][name], rtol=1e-5, atol=1e-7)


def test_frozen_head_under_bfloat16_autocast_stays_finite():
    head = make_head()
    with torch.no_grad(), torch.autocast('cpu', dtype=torch.bfloat16):
        out = head(*make_inputs(head))
    assert torch.isfinite(out.depth).all() and torch.isfinite(out.probs).all()


def _double(head, inputs):
    return head.double(), [t.double() if torch.is_tensor(t) else [s.double() for s in t] for t in inputs]


@pytest.mark.parametrize('kwargs', [{'attractor_type': 'exp'}, {'attractor_gamma': 3}, {'attractor_kind': 'sum'},
                                    {'bin_centers_type': 'normed', 'attractor_kind': 'sum', 'attractor_type': 'exp'}])
def test_inference_path_computes_the_same_function_for_every_attractor_variant(kwargs):
    head = make_head(**kwargs)
    head, inputs = _double(head, make_inputs(head))
    fast, reference = _no_grad_and_grad(head, inputs)
    torch.testing.assert_close(fast.probs, reference.probs, rtol=1e-6, atol=1e-8)
    torch.testing.assert_close(fast.depth, reference.depth, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize('grad', [False, True])
def test_depth_only_gives_the_same_depth_without_centers_and_probs(grad):
    head = make_head()
    inputs = make_inputs(head)
    with torch.no_grad():
        full = head(*inputs)
    with torch.set_grad_enabled(grad):
        only = head(*inputs, depth_only=True)
    assert only.centers is None and only.probs is None
    torch.testing.assert_close(only.depth, full.depth, rtol=1e-5, atol=1e-5)


def test_depth_only_with_out_size_is_refused_and_resize_needs_the_bins():
    head = make_head()
    inputs = make_inputs(head)
    with torch.no_grad(), pytest.raises(ValueError, match='depth_only'):
        head(*inputs, out_size=(20, 30), depth_only=True)
    with torch.no_grad():
        only = head(*inputs, depth_only=True)
    with pytest.raises(ValueError, match='depth_only'):
        resize_bins(only, (20, 30))


@pytest.mark.parametrize('attractor_type, gamma', [('inv', 2), ('inv', 3), ('exp', 2)])
@pytest.mark.parametrize('kind', ['mean', 'sum'])
@pytest.mark.parametrize('normed', [False, True])
def test_in_place_refinement_equals_the_plain_refinement(attractor_type, gamma, kind, normed):
    layer = AttractorLayer(8, 16, 4, alpha=300.0, gamma=gamma, kind=kind, attractor_type=attractor_type,
                           normed=normed, min_depth=0.5, max_depth=80.0).double()
    g = torch.Generator().manual_seed(0)
    points = torch.rand(50, 4, generator=g, dtype=torch.float64) * (1.0 if normed else 80.0)
    state = torch.rand(50, 16, generator=g, dtype=torch.float64) * (1.0 if normed else 80.0)
    expected_state, expected_centers = layer.refine(points, state)
    new_state, new_centers = torch.empty_like(state), torch.empty_like(state)
    layer.refine_into(points, state, new_state, new_centers)
    torch.testing.assert_close(new_state, expected_state, rtol=1e-12, atol=1e-12)
    if normed:
        torch.testing.assert_close(new_centers, expected_centers, rtol=1e-12, atol=1e-12)


# torch returns x itself above its threshold of 20; the exact softplus is x + 2e-9 there (1e-10 relative).
@pytest.mark.parametrize('dtype, rtol', [(torch.float32, 1e-6), (torch.float64, 1e-9)])
def test_fast_softplus_equals_torch_softplus(dtype, rtol):
    x = torch.cat([torch.linspace(-80.0, 100.0, 100001, dtype=dtype),
                   torch.tensor([0.0, 1e-8, -1e-8, 19.999, 20.0, 20.001], dtype=dtype)])
    expected = F.softplus(x)
    torch.testing.assert_close(softplus_inference(x), expected, rtol=rtol, atol=0.0)


def test_whole_tensor_inference_computes_the_same_function_as_the_banded_path():
    head = make_head()
    inputs = make_inputs(head)
    with torch.no_grad():
        banded = head(*inputs)
        head.banded_inference = False
        whole = head(*inputs)
    torch.testing.assert_close(whole.probs, banded.probs, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(whole.depth, banded.depth, rtol=1e-4, atol=1e-4)
