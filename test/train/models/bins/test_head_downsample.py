"""MetricBins at 1/N resolution for deployment: depth from the average-pooled last feature, upsampled bilinearly to
the full size, the same on the banded and the whole-tensor path, and refused where it cannot hold."""
import re

import pytest
import torch
from torch.nn import functional as F

from surround_depth_train.models import create_model
from surround_depth_train.models.bins import BINS_DOWNSAMPLES, MetricBins, set_bins_downsample
from surround_depth_train.models.bins import head as head_module


def head_and_inputs(size: tuple[int, int]):
    torch.manual_seed(0)
    head = MetricBins(bottleneck_channels=24, stage_channels=(16, 12, 8, 8), last_channels=6, n_bins=16,
                      bin_embedding_dim=16).double()
    g = torch.Generator().manual_seed(1)
    h, w = size
    bottleneck = torch.randn(2, 24, h // 32 + 1, w // 32 + 1, generator=g, dtype=torch.float64)
    stages = [torch.randn(2, c, h // 2 ** (4 - i) + 1, w // 2 ** (4 - i) + 1, generator=g, dtype=torch.float64)
              for i, c in enumerate((16, 12, 8, 8))]
    last = torch.randn(2, 6, h, w, generator=g, dtype=torch.float64)
    rel = torch.rand(2, 1, h, w, generator=g, dtype=torch.float64)
    return head, (bottleneck, stages, last, rel)


@pytest.mark.parametrize('factor', [2, 4])
@pytest.mark.parametrize('size', [(48, 64), (45, 61)])  # divisible, and odd sides with a partial last window
def test_the_head_at_one_nth_resolution_is_the_full_head_on_pooled_features_upsampled(factor, size):
    head, (bottleneck, stages, last, rel) = head_and_inputs(size)
    with torch.no_grad():
        small = head(bottleneck, stages, F.avg_pool2d(last, factor, ceil_mode=True, count_include_pad=False),
                     F.avg_pool2d(rel, factor, ceil_mode=True, count_include_pad=False), depth_only=True,
                     confidence=True)
        head.downsample = factor
        out = head(bottleneck, stages, last, rel, depth_only=True, confidence=True)
    assert out.depth.shape == out.confidence.shape == (2, 1, *size)
    assert out.centers is None and out.probs is None
    expected = F.interpolate(small.depth, scale_factor=factor, mode='bilinear', align_corners=False)
    torch.testing.assert_close(out.depth, expected[..., :size[0], :size[1]])


@pytest.mark.parametrize('factor', [2, 4])
def test_pooling_then_upsampling_leaves_a_linear_ramp_where_it_was(factor):
    # each pooled value sits at the center of the pixels it averaged, so nothing shifts by a pixel
    ramp = torch.arange(40, dtype=torch.float64).expand(1, 1, 8, 40) * 0.5 + 3.0
    pooled = F.avg_pool2d(ramp, factor, ceil_mode=True, count_include_pad=False)
    restored = head_module._upsample(pooled, factor, ramp.shape[-2:])
    inner = slice(factor, -factor)
    torch.testing.assert_close(restored[..., inner], ramp[..., inner])


@pytest.mark.parametrize('factor', [2, 4])
def test_the_banded_and_the_whole_tensor_paths_agree_at_one_nth_resolution(factor):
    head, inputs = head_and_inputs((45, 61))
    head.downsample = factor
    with torch.no_grad():
        banded = head(*inputs, depth_only=True, confidence=True)
    whole = head(*inputs, depth_only=True, confidence=True)  # autograd: the whole-tensor path
    torch.testing.assert_close(banded.depth, whole.depth, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(banded.confidence, whole.confidence, rtol=1e-6, atol=1e-8)


def test_a_downsampled_head_refuses_to_return_centers_and_probs():
    head, inputs = head_and_inputs((32, 32))
    head.downsample = 2
    with torch.no_grad(), pytest.raises(ValueError, match=r'downsample = 2 computes depth .* depth_only=True'):
        head(*inputs)


def test_set_bins_downsample_sets_every_metric_bins_head_and_back():
    model = create_model('tiny_student_mb').eval()
    images = torch.rand(2, 3, 64, 96)
    with torch.inference_mode():
        full = model(images, depth_only=True).depth
        assert set_bins_downsample(model, 2) is model and model.metric_bins.downsample == 2
        half = model(images, depth_only=True).depth
        set_bins_downsample(model, 1)
        again = model(images, depth_only=True).depth
    assert half.shape == full.shape == (2, 1, 64, 96)
    torch.testing.assert_close(again, full)
    assert not torch.equal(half, full)  # a cheaper function, not the same one


@pytest.mark.parametrize('factor', [0, 3, 8, 2.0, True, '2'])
def test_set_bins_downsample_names_the_factors_it_takes(factor):
    with pytest.raises(ValueError, match=re.escape(f'bins_downsample must be one of {list(BINS_DOWNSAMPLES)}')):
        set_bins_downsample(create_model('tiny_student_mb'), factor)


@pytest.mark.parametrize('name', ['tiny_student', 'tiny_student_ab'])
def test_set_bins_downsample_refuses_a_model_without_metric_bins(name):
    model = create_model(name)
    with pytest.raises(ValueError, match='has no MetricBins head'):
        set_bins_downsample(model, 2)
    assert set_bins_downsample(model, 1) is model  # the full resolution is every model's
