"""Bin confidence ``1 - H(P) / log K``: its values, the banded path equal to the whole-tensor path, and no
full-resolution ``P`` when only depth and confidence are asked for."""
from __future__ import annotations

import math

import pytest
import torch
from torch.multiprocessing.reductions import StorageWeakRef
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from surround_depth_train.models import create_model
from surround_depth_train.models.bins import MetricBins, bin_confidence
from surround_depth_train.models.bins import banded


def make_head(**kwargs) -> MetricBins:
    torch.manual_seed(0)
    return MetricBins(bottleneck_channels=24, stage_channels=(16, 12, 8, 8), last_channels=6, n_bins=16,
                      bin_embedding_dim=16, **kwargs)


def make_inputs(head: MetricBins, batch: int = 2, size: tuple[int, int] = (32, 48), dtype=torch.float32):
    g = torch.Generator().manual_seed(1)
    h, w = size
    bottleneck = torch.randn(batch, head.conv2.in_channels, h // 32, w // 32, generator=g, dtype=dtype)
    stages = [torch.randn(batch, p._net[0].in_channels, h // 2 ** (4 - i), w // 2 ** (4 - i), generator=g,
                          dtype=dtype) for i, p in enumerate(head.projectors)]
    last = torch.randn(batch, head.conditional_log_binomial.in_features - 1, h, w, generator=g, dtype=dtype)
    rel = torch.rand(batch, 1, h, w, generator=g, dtype=dtype)
    return bottleneck, stages, last, rel


def entropy_reference(probs: torch.Tensor, dim: int) -> torch.Tensor:
    """The formula written plainly in float64 with ``0 log 0 = 0``."""
    p = probs.double()
    h = -torch.where(p > 0, p * torch.log(p), torch.zeros_like(p)).sum(dim=dim, keepdim=True)
    return 1.0 - h / math.log(probs.shape[dim])


def test_uniform_probabilities_give_zero_and_one_hot_gives_one():
    uniform = torch.full((3, 64, 4, 5), 1 / 64)
    one_hot = torch.zeros(3, 64, 4, 5)
    one_hot[:, 7] = 1.0
    torch.testing.assert_close(bin_confidence(uniform, dim=1), torch.zeros(3, 1, 4, 5), atol=1e-6, rtol=0)
    assert torch.equal(bin_confidence(one_hot, dim=1), torch.ones(3, 1, 4, 5))


def test_confidence_is_one_minus_the_normalised_entropy_and_stays_in_the_unit_interval():
    g = torch.Generator().manual_seed(0)
    probs = torch.softmax(torch.randn(5, 9, 16, generator=g, dtype=torch.float64) * 4, dim=-1)
    probs[0, 0] = 0.0
    probs[0, 0, 3] = 1.0  # exact zeros elsewhere in this pixel
    conf = bin_confidence(probs)
    assert conf.shape == (5, 9, 1) and conf.dtype == torch.float64
    torch.testing.assert_close(conf, entropy_reference(probs, -1), rtol=0, atol=1e-12)
    assert conf.min() >= 0 and conf.max() <= 1
    # between the extremes: a flatter distribution is less confident
    two = torch.tensor([[0.5, 0.5, 0.0, 0.0], [0.9, 0.1, 0.0, 0.0]])
    c = bin_confidence(two)
    assert 0 < c[0, 0] < c[1, 0] < 1
    torch.testing.assert_close(c[0, 0], torch.tensor(0.5))  # log 2 / log 4


@pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16])
def test_half_precision_probabilities_are_computed_in_float32(dtype):
    probs = torch.softmax(torch.randn(4, 64, 6, 7, generator=torch.Generator().manual_seed(0)), dim=1)
    probs[0, :, 0, 0] = 0.0
    probs[0, 5, 0, 0] = 1.0
    conf = bin_confidence(probs.to(dtype), dim=1)
    assert conf.dtype == torch.float32 and torch.isfinite(conf).all()
    torch.testing.assert_close(conf, entropy_reference(probs.to(dtype), 1).float(), rtol=0, atol=1e-5)


def test_out_and_scratch_give_the_same_values_and_are_refused_under_autograd():
    probs = torch.softmax(torch.randn(50, 16, generator=torch.Generator().manual_seed(0)), dim=-1)
    out, scratch = torch.empty(50, 1), torch.empty(50, 16)
    result = bin_confidence(probs, out=out, scratch=scratch)
    assert result.data_ptr() == out.data_ptr()
    torch.testing.assert_close(out, bin_confidence(probs))
    leaf = probs.clone().requires_grad_()
    with pytest.raises(ValueError, match='autograd'):
        bin_confidence(leaf, out=out, scratch=scratch)
    bin_confidence(leaf).sum().backward()  # the plain call is differentiable
    assert torch.isfinite(leaf.grad).all()


def test_a_single_bin_is_fully_confident():
    assert torch.equal(bin_confidence(torch.ones(2, 1, 3, 3), dim=1), torch.ones(2, 1, 3, 3))


def _banded_and_whole(head, inputs, **kwargs):
    with torch.no_grad():
        head.banded_inference = True
        band = head(*inputs, **kwargs)
        head.banded_inference = False
        whole = head(*inputs, **kwargs)
        head.banded_inference = True
    return band, whole


@pytest.mark.parametrize('depth_only', [False, True])
@pytest.mark.parametrize('band_pixels', [None, 200])
@pytest.mark.parametrize('centers_type', ['softplus', 'normed'])
def test_banded_confidence_equals_the_whole_tensor_confidence_over_several_bands(monkeypatch, depth_only,
                                                                                   band_pixels, centers_type):
    # 96 x 128 = 12288 pixels: two bands of the real BAND_PIXELS = 8192; 200 pixels per band: 96 bands of one row
    if band_pixels is not None:
        monkeypatch.setattr(banded, 'BAND_PIXELS', band_pixels)
    size = (96, 128)
    assert len(banded.bands(*size)) >= 2
    head = make_head(bin_centers_type=centers_type).double()
    inputs = make_inputs(head, size=size, dtype=torch.float64)
    band, whole = _banded_and_whole(head, inputs, depth_only=depth_only, confidence=True)
    assert band.confidence.shape == (2, 1, 96, 128) and band.confidence.dtype == torch.float64
    torch.testing.assert_close(band.confidence, whole.confidence, rtol=0, atol=1e-6)
    torch.testing.assert_close(band.depth, whole.depth, rtol=1e-6, atol=1e-6)
    assert 0 <= band.confidence.min() and band.confidence.max() <= 1
    assert band.confidence.std() > 0  # a real per-pixel map, not a constant
    if depth_only:
        assert band.probs is None and band.centers is None


@pytest.mark.parametrize('grad', [False, True])
def test_confidence_equals_bin_confidence_of_the_full_probabilities(grad):
    head = make_head()
    inputs = make_inputs(head)
    with torch.set_grad_enabled(grad):
        out = head(*inputs, confidence=True)
    torch.testing.assert_close(out.confidence, bin_confidence(out.probs, dim=1), rtol=0, atol=1e-6)
    with torch.no_grad():
        only = head(*inputs, depth_only=True, confidence=True)
        plain = head(*inputs)
    torch.testing.assert_close(only.confidence, out.confidence.detach(), rtol=0, atol=1e-5)
    assert plain.confidence is None


def test_confidence_with_out_size_comes_from_the_resized_probabilities():
    head = make_head()
    with torch.no_grad():
        out = head(*make_inputs(head), out_size=(20, 30), confidence=True)
    assert out.confidence.shape == (2, 1, 20, 30)
    torch.testing.assert_close(out.confidence, bin_confidence(out.probs, dim=1))


class AllocationCounter(TorchDispatchMode):
    """Counts the bytes of every fresh storage an operation returns, and the peak of those still alive.

    Deterministic (no timing, no allocator statistics): after each operation, storages that died are dropped from
    the live set through weak references; outputs written into an existing storage (``out=``, in place, views) are
    not new allocations.
    """

    def __init__(self):
        super().__init__()
        self.live: dict[int, tuple[StorageWeakRef, int]] = {}
        self.peak = 0
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        self.live = {ptr: (ref, n) for ptr, (ref, n) in self.live.items() if not ref.expired()}
        for t in tree_leaves(out):
            if torch.is_tensor(t):
                storage = t.untyped_storage()
                ptr = storage.data_ptr()
                if ptr not in self.live and storage.nbytes() > 0:
                    self.live[ptr] = (StorageWeakRef(storage), storage.nbytes())
                    self.largest = max(self.largest, storage.nbytes())
        self.peak = max(self.peak, sum(n for _, n in self.live.values()))
        return out


def _head_inputs(model, images) -> tuple:
    """The arguments the student passes to its bins head."""
    captured = []
    handle = model.metric_bins.register_forward_pre_hook(lambda module, args: captured.append(args))
    with torch.no_grad():
        model(images)
    handle.remove()
    return captured[0]


def _allocations(head, inputs, **kwargs) -> tuple[AllocationCounter, object]:
    with torch.no_grad(), AllocationCounter() as counter:
        out = head(*inputs, **kwargs)
    return counter, out


def test_depth_only_confidence_never_allocates_the_full_resolution_probabilities():
    model = create_model('tiny_student_mb', bins={'n_bins': 64}).eval()
    images = torch.rand(2, 3, 96, 128, generator=torch.Generator().manual_seed(0))
    inputs = _head_inputs(model, images)
    probs_bytes = 2 * 64 * 96 * 128 * 4
    one_channel = 2 * 96 * 128 * 4
    full, full_out = _allocations(model.metric_bins, inputs)
    depth, _ = _allocations(model.metric_bins, inputs, depth_only=True)
    only, only_out = _allocations(model.metric_bins, inputs, depth_only=True, confidence=True)
    assert full_out.probs is not None and full.largest >= probs_bytes  # the counter sees P when it is made
    assert only_out.probs is None and only_out.centers is None and only_out.confidence.shape == (2, 1, 96, 128)
    # nothing larger than one band's P is allocated (less than one image's P); the confidence costs its own
    # channel over depth alone and nothing more; the peak stays below the full output's by more than all of P
    assert only.largest <= banded.BAND_PIXELS * 64 * 4 < probs_bytes / 2, (only.largest, probs_bytes)
    assert only.peak <= depth.peak + one_channel, (only.peak, depth.peak)
    assert full.peak - only.peak >= probs_bytes, (only.peak, full.peak)
    torch.testing.assert_close(only_out.confidence, bin_confidence(full_out.probs, dim=1), rtol=0, atol=1e-5)


def test_students_without_bins_return_no_confidence_and_the_teacher_returns_one():
    images = torch.rand(1, 3, 64, 96, generator=torch.Generator().manual_seed(0))
    plain = create_model('tiny_student').eval()
    teacher = create_model('depth_anything_tiny_metric', n_bins=16).eval()
    with torch.no_grad():
        assert plain(images, confidence=True).confidence is None
        out = teacher(images, confidence=True)
        only = teacher(images, depth_only=True, confidence=True)
    assert out.confidence.shape == (1, 1, 64, 96)
    torch.testing.assert_close(out.confidence, bin_confidence(out.probs, dim=1))
    torch.testing.assert_close(only.confidence, out.confidence)
    assert only.probs is None
