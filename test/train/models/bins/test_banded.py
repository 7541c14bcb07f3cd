"""The banded inference path over several bands (and a short last band) equals the autograd path."""
import pytest
import torch

from surround_depth_train.models.bins import MetricBins
from surround_depth_train.models.bins import banded


def head_and_inputs(size: tuple[int, int], centers_type: str):
    torch.manual_seed(0)
    head = MetricBins(bottleneck_channels=24, stage_channels=(16, 12, 8, 8), last_channels=6, n_bins=16,
                      bin_embedding_dim=16, bin_centers_type=centers_type).double()
    g = torch.Generator().manual_seed(1)
    h, w = size
    bottleneck = torch.randn(2, 24, h // 32 + 1, w // 32 + 1, generator=g, dtype=torch.float64)
    stages = [torch.randn(2, c, h // 2 ** (4 - i), w // 2 ** (4 - i), generator=g, dtype=torch.float64)
              for i, c in enumerate((16, 12, 8, 8))]
    last = torch.randn(2, 6, h, w, generator=g, dtype=torch.float64)
    rel = torch.rand(2, 1, h, w, generator=g, dtype=torch.float64)
    return head, (bottleneck, stages, last, rel)


@pytest.mark.parametrize('centers_type', ['softplus', 'normed'])
@pytest.mark.parametrize('band_pixels', [64, 200])  # one row per band; three rows with a one-row last band
def test_banded_path_over_several_bands_equals_the_autograd_path(monkeypatch, centers_type, band_pixels):
    size = (40, 56)
    monkeypatch.setattr(banded, 'BAND_PIXELS', band_pixels)
    full_res_bands = banded.bands(*size)
    assert len(full_res_bands) >= 14 and full_res_bands[-1][1] == size[0]
    assert len(banded.bands(size[0] // 2, size[1] // 2)) > 2  # the finest stage is banded too
    head, inputs = head_and_inputs(size, centers_type)
    with torch.no_grad():
        fast = head(*inputs)
    reference = head(*inputs)  # autograd enabled: the whole-tensor path
    torch.testing.assert_close(fast.probs, reference.probs, rtol=1e-6, atol=1e-8)
    torch.testing.assert_close(fast.centers, reference.centers, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(fast.depth, reference.depth, rtol=1e-6, atol=1e-6)
    with torch.no_grad():
        depth_only = head(*inputs, depth_only=True)
    torch.testing.assert_close(depth_only.depth, reference.depth, rtol=1e-6, atol=1e-6)


def test_bf16_projections_leave_a_float64_head_exact():
    head, inputs = head_and_inputs((40, 56), 'softplus')
    with torch.no_grad():
        reference = head(*inputs, depth_only=True).depth
        head.projection_dtype = torch.bfloat16
        assert torch.equal(head(*inputs, depth_only=True).depth, reference)


@pytest.mark.parametrize('centers_type', ['softplus', 'normed'])
def test_bf16_projections_keep_a_float32_head_within_bf16_rounding(centers_type):
    head, inputs = head_and_inputs((40, 56), centers_type)
    head = head.float()
    bottleneck, stages, last, rel = inputs
    inputs = (bottleneck.float(), [s.float() for s in stages], last.float(), rel.float())
    with torch.no_grad():
        reference = head(*inputs, depth_only=True).depth
        head.projection_dtype = torch.bfloat16
        depth = head(*inputs, depth_only=True).depth
    assert depth.dtype == torch.float32 and not torch.equal(depth, reference)
    torch.testing.assert_close(depth, reference, rtol=1e-2, atol=1e-2)
