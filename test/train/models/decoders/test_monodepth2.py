"""Monodepth2's decoder over any feature pyramid."""
from __future__ import annotations

import pytest
import torch

from surround_depth_train.models.decoders import Monodepth2Decoder


def test_resnet18_decoder_has_monodepth2_widths_and_size():
    decoder = Monodepth2Decoder([64, 64, 128, 256, 512])
    assert decoder.feature_channels == [256, 128, 64, 32, 16]
    assert sum(p.numel() for p in decoder.parameters()) + 11_176_512 == 14_329_236  # the paper's 14.33 M


def test_a_four_level_pyramid_at_strides_four_to_thirty_two_reaches_the_input_size():
    decoder = Monodepth2Decoder([8, 16, 24, 32])
    feats = [torch.rand(1, c, 64 // s, 96 // s) for c, s in zip([8, 16, 24, 32], [4, 8, 16, 32])]
    out = decoder(feats, (64, 96))
    assert out.features[-1].shape == (1, 16, 64, 96)
    assert out.disparities[0].shape == (1, 1, 64, 96)
    assert 0 <= out.disparities[0].min() and out.disparities[0].max() <= 1


def test_decoder_widths_must_match_the_levels():
    with pytest.raises(ValueError, match='one width per encoder level'):
        Monodepth2Decoder([8, 16, 24], decoder_channels=(4, 8))
