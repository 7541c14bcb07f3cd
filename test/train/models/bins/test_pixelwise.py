"""Channels-last helpers of the bins head: band-wise resizing and 1x1 convolutions as GEMMs."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from surround_depth_train.models.bins.pixelwise import (BandResampler, pixel_mlp, pointwise, resize_pixels,
                                                        to_channels, to_pixels)


@pytest.mark.parametrize('src_size, size', [((5, 7), (10, 14)), ((12, 20), (24, 40)), ((7, 9), (20, 31)),
                                            ((37, 51), (24, 33)), ((6, 6), (6, 6)), ((1, 5), (4, 9))])
@pytest.mark.parametrize('rows_per_band', [1, 3, 64])
def test_band_resampler_reproduces_bilinear_align_corners_resizing(src_size, size, rows_per_band):
    src = torch.randn(2, *src_size, 5, generator=torch.Generator().manual_seed(0))
    reference = resize_pixels(src, size)
    images = []
    for image in src:
        resampler = BandResampler(image, size)
        images.append(torch.cat([resampler.band(y, min(y + rows_per_band, size[0]))
                                 for y in range(0, size[0], rows_per_band)]))
    torch.testing.assert_close(torch.stack(images), reference, rtol=1e-6, atol=1e-6)


def test_band_resampler_writes_into_a_given_buffer():
    src = torch.randn(1, 4, 5, 3)
    out = torch.empty(2, 10, 3)
    result = BandResampler(src[0], (8, 10)).band(2, 4, out=out)
    assert result.data_ptr() == out.data_ptr()
    torch.testing.assert_close(out, resize_pixels(src, (8, 10))[0, 2:4])


def test_band_resampler_writes_into_a_strided_buffer_too():
    src = torch.randn(1, 4, 5, 6)
    out = torch.empty(2, 10, 12)[..., ::2]
    BandResampler(src[0], (8, 10)).band(2, 4, out=out)
    torch.testing.assert_close(out, resize_pixels(src, (8, 10))[0, 2:4])


def test_band_resampler_takes_one_image():
    with pytest.raises(ValueError, match='one channels-last image'):
        BandResampler(torch.randn(2, 4, 5, 3), (8, 10))


def test_pixel_mlp_equals_the_convolutions_on_nchw():
    net = nn.Sequential(nn.Conv2d(6, 8, 1), nn.GELU(), nn.Conv2d(8, 3, 1), nn.Softplus())
    x = torch.randn(2, 6, 5, 7)
    torch.testing.assert_close(to_channels(pixel_mlp(to_pixels(x), net)), net(x), rtol=1e-5, atol=1e-6)


def test_pointwise_convolution_equals_the_linear_layer_over_pixels():
    x = torch.randn(5, 7, 12)
    weight, bias = torch.randn(9, 12), torch.randn(9)
    kernel = weight[:, :, None, None].contiguous(memory_format=torch.channels_last)
    out = pointwise(x, kernel, bias)
    assert out.shape == (5, 7, 9) and out.is_contiguous()
    torch.testing.assert_close(out, torch.nn.functional.linear(x, weight, bias), rtol=1e-5, atol=1e-5)
