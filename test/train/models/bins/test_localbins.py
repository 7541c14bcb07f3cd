"""LocalBins with LocalBins' own layers: the Table IV parameter count, bins that are distributions over sorted
centers, splits that keep each bin's width, gradients through its decoder, a distillation step, and old files."""
from __future__ import annotations

import pytest
import torch

from surround_depth_train.distill import DistillationTask
from surround_depth_train.losses import DistillationWeights
from surround_depth_train.models import create_model, load_model, save_model
from surround_depth_train.models.bins.localbins import LocalBins
from surround_depth_train.models.bins.splitting import BinSplitter, SeedWidths
from surround_depth_train.models.bins.upsample_block import UpsampleBlock
from surround_depth_train.models.modelfile import ModelFileError

SIZE = (64, 96)


def _images(batch: int = 2, size: tuple[int, int] = SIZE) -> torch.Tensor:
    return torch.rand(batch, 3, *size, generator=torch.Generator().manual_seed(0))


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_monodepth2_lb_has_table4s_18_20_m_parameters_from_localbins_layers():
    model = create_model('monodepth2_lb')
    head = model.metric_bins
    parts = {name: _count(child) for name, child in head.named_children()}
    assert parts == {'conv2': 262_656, 'up_blocks': 3_145_536, 'seed_widths': 132_356, 'seed_projector': 82_176,
                     'projectors': 128_000, 'splitters': 81_528, 'conv_out': 37_504}
    assert _count(model) - _count(head) == _count(create_model('monodepth2')) == 14_329_236
    assert _count(model) == 18_198_992 and f'{_count(model) / 1e6:.2f}' == '18.20'
    assert head.n_bins == 64 and head.n_seed == 4  # pairs with the 64-bin MetricBins teacher


def _head_inputs(batch: int = 2, size: tuple[int, int] = (40, 56)):
    """Encoder skips (strides 2..16), bottleneck (32), student stages (16..2) and last feature, relative depth."""
    g = torch.Generator().manual_seed(3)
    h, w = size
    def feature(c: int, stride: int) -> torch.Tensor:
        return torch.randn(batch, c, -(-h // stride), -(-w // stride), generator=g)

    skips = [feature(c, s) for c, s in ((6, 2), (8, 4), (10, 8), (12, 16))]
    bottleneck = feature(16, 32)
    stages = [feature(c, s) for c, s in ((12, 16), (10, 8), (8, 4), (6, 2))]
    last = torch.randn(batch, 4, h, w, generator=g)
    rel = torch.rand(batch, 1, h, w, generator=g)
    return bottleneck, stages, last, rel, skips


def _head(**kwargs) -> LocalBins:
    torch.manual_seed(0)
    return LocalBins(bottleneck_channels=16, stage_channels=(12, 10, 8, 6), last_channels=4,
                     skip_channels=(6, 8, 10, 12), n_bins=32, min_depth=0.5, max_depth=60.0, bin_embedding_dim=8,
                     seed_hidden=8, hidden=8, **kwargs)


@pytest.mark.parametrize('size', [(40, 56), (37, 53)])
def test_probabilities_sum_to_one_and_centers_are_positive_sorted_and_inside_the_range(size):
    bottleneck, stages, last, rel, skips = _head_inputs(size=size)
    out = _head().train()(bottleneck, stages, last, rel, skips=skips)
    assert out.probs.shape == out.centers.shape == (2, 32, *size) and out.depth.shape == (2, 1, *size)
    torch.testing.assert_close(out.probs.sum(1), torch.ones(2, *size), rtol=1e-5, atol=1e-5)
    assert bool((out.probs >= 0).all())
    assert bool((out.centers > 0).all()) and bool((out.centers[:, 1:] > out.centers[:, :-1]).all())
    assert out.centers.min() >= 0.5 and out.centers.max() <= 60.0
    torch.testing.assert_close(out.depth, (out.probs * out.centers).sum(1, keepdim=True))


def test_every_head_parameter_gets_a_finite_gradient():
    bottleneck, stages, last, rel, skips = _head_inputs()
    stages = [s.requires_grad_() for s in stages]
    head = _head().train()
    out = head(bottleneck, stages, last, rel, skips=skips)
    (out.depth.log().mean() + out.probs.square().mean()).backward()
    for name, p in head.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name
    assert stages[-1].grad.abs().sum() > 0  # the student's stride-2 feature feeds the output layer
    assert all(s.grad is None for s in stages[:-1])


def test_the_head_refuses_calls_without_the_encoder_skips_and_too_few_skips_at_build_time():
    bottleneck, stages, last, rel, skips = _head_inputs()
    with pytest.raises(ValueError, match='skips=features'):
        _head()(bottleneck, stages, last, rel)
    with pytest.raises(ValueError, match='4 skip features'):
        LocalBins(bottleneck_channels=16, stage_channels=(12, 10, 8, 6), last_channels=4, skip_channels=(8, 10, 12))
    with pytest.raises(ValueError, match='multiple of 16'):
        LocalBins(bottleneck_channels=16, stage_channels=(12, 10, 8, 6), last_channels=4, skip_channels=(6, 8, 10, 12),
                  n_bins=24)


def test_seed_widths_are_positive_and_sum_to_one_per_pixel():
    torch.manual_seed(0)
    widths = SeedWidths(8, 4, hidden=16)(torch.randn(2, 8, 3, 5))
    assert widths.shape == (2, 4, 3, 5) and widths.dtype == torch.float32 and bool((widths > 0).all())
    torch.testing.assert_close(widths.sum(1), torch.ones(2, 3, 5))


def test_a_split_halves_every_bin_into_two_adjacent_bins_of_the_same_total_width():
    torch.manual_seed(0)
    splitter = BinSplitter(6, n_prev=4, hidden=8)
    prev = torch.rand(1, 4, 3, 4) + 0.1
    prev_embedding = torch.randn(1, 6, 3, 4)
    widths = splitter(torch.randn(1, 6, 3, 4), prev_embedding, prev)  # same size: no resampling
    assert widths.shape == (1, 8, 3, 4) and bool((widths > 0).all())
    torch.testing.assert_close(widths[:, 0::2] + widths[:, 1::2], prev / prev.sum(1, keepdim=True))
    finer = splitter(torch.randn(1, 6, 6, 8), prev_embedding, prev)  # the previous stage is resized up
    assert finer.shape == (1, 8, 6, 8)
    torch.testing.assert_close(finer.sum(1), torch.ones(1, 6, 8))


def test_the_previous_embedding_changes_the_split():
    torch.manual_seed(0)
    splitter = BinSplitter(6, n_prev=2, hidden=8)
    e, prev = torch.randn(1, 6, 2, 2), torch.rand(1, 2, 2, 2) + 0.1
    assert not torch.allclose(splitter(e, torch.zeros(1, 6, 2, 2), prev), splitter(e, torch.randn(1, 6, 2, 2), prev))


def test_an_upsample_block_joins_its_skip_at_the_skips_resolution():
    torch.manual_seed(0)
    block = UpsampleBlock(8, 3, 5)
    out = block(torch.randn(2, 8, 3, 4), torch.randn(2, 3, 5, 7))
    assert out.shape == (2, 5, 5, 7)
    assert _count(block) == (9 * 11 * 5 + 5) + 2 * 5 + (9 * 5 * 5 + 5) + 2 * 5


def test_tiny_lb_student_distils_with_positive_ckd_and_vrkd_and_updates_localbins_decoder():
    torch.manual_seed(0)
    student = create_model('tiny_student_lb', min_depth=0.5, max_depth=80.0)
    teacher = create_model('depth_anything_tiny_metric', min_depth=0.5, max_depth=80.0, n_bins=16, input_size=56)
    task = DistillationTask(student, weights=DistillationWeights(sup=1.0, ckd=0.1, vrkd=1.0),
                            min_depth=0.5, max_depth=80.0, teacher=teacher)
    g = torch.Generator().manual_seed(1)
    batch = {'image': torch.rand(1, 6, 3, *SIZE, generator=g),
             'depth': torch.rand(1, 6, 1, *SIZE, generator=g) * 40 + 1,
             'depth_mask': torch.rand(1, 6, 1, *SIZE, generator=g) < 0.3,
             'self_mask': torch.ones(1, 6, 1, *SIZE, dtype=torch.bool)}
    opt = torch.optim.AdamW(student.parameters(), lr=1e-3)
    task.train()
    losses = task(batch)
    assert all(torch.isfinite(v) for v in losses.values())
    assert losses['ckd'] > 0 and losses['vrkd'] > 0 and losses['sup'] > 0
    before = {n: p.detach().clone() for n, p in student.metric_bins.named_parameters()}
    losses['loss'].backward()
    for part in ('up_blocks', 'seed_widths', 'splitters', 'conv_out'):
        grads = [p.grad for n, p in student.metric_bins.named_parameters() if n.startswith(part)]
        assert grads and all(g is not None and torch.isfinite(g).all() for g in grads), part
    opt.step()
    assert not torch.equal(before['up_blocks.0._net.0.weight'], student.metric_bins.up_blocks[0]._net[0].weight)
    assert not torch.equal(before['conv_out.weight'], student.metric_bins.conv_out.weight)


def test_a_localbins_model_file_round_trips(tmp_path):
    torch.manual_seed(0)
    model = create_model('tiny_student_lb', max_depth=60.0)
    model.train()(_images())  # moves the BatchNorm statistics off their defaults
    path = save_model(tmp_path / 'lb.pt', model, name='tiny_student_lb', kwargs={'max_depth': 60.0},
                      input_size=SIZE)
    loaded, meta = load_model(path)
    assert meta['head'] == {'type': 'localbins', 'n_bins': 16, 'bin_centers_type': 'normed'}
    with torch.no_grad():
        torch.testing.assert_close(loaded(_images()).depth, model.eval()(_images()).depth)


def test_a_model_file_with_the_earlier_localbins_head_is_refused_naming_the_change(tmp_path):
    torch.manual_seed(0)
    model = create_model('tiny_student_lb')
    path = save_model(tmp_path / 'old_lb.pt', model, name='tiny_student_lb', kwargs={}, input_size=SIZE)
    obj = torch.load(path, weights_only=True)
    state = {k: v for k, v in obj['state_dict'].items()
             if not k.startswith(('metric_bins.up_blocks.', 'metric_bins.seed_widths.', 'metric_bins.conv_out.'))}
    state.update({'metric_bins.seed_regressor.0.weight': torch.zeros(16, 64, 1, 1),  # the earlier head's layout
                  'metric_bins.out_feature.weight': torch.zeros(16, 5, 1, 1),
                  'metric_bins.out_embedding.weight': torch.zeros(16, 16, 1, 1),
                  'metric_bins.out_logits.weight': torch.zeros(16, 16, 1, 1)})
    obj['state_dict'] = state
    torch.save(obj, path)
    with pytest.raises(ModelFileError, match=r'old_lb\.pt.*earlier LocalBins head.*LocalBins now has its own '
                                             r'decoder.*retrain'):
        load_model(path)
