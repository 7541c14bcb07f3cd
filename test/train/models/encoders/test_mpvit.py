"""MPViT-small: published size and MonoViT's feature pyramid."""
from __future__ import annotations

import torch

from surround_depth_train.models.encoders.mpvit import MPVIT_SMALL_HEAD_PARAMS, mpvit_small, mpvit_tiny


def _count(m) -> int:
    return sum(p.numel() for p in m.parameters())


def test_mpvit_small_has_the_published_parameter_count():
    assert _count(mpvit_small()) + MPVIT_SMALL_HEAD_PARAMS == 22_892_400


def test_mpvit_tiny_has_the_published_parameter_count():
    assert _count(mpvit_tiny()) + 216 * 1000 + 1000 == 5_843_736


def test_monovit_variant_gives_five_features_at_strides_two_to_thirty_two():
    model = mpvit_small().eval()
    with torch.no_grad():
        feats = model(torch.rand(1, 3, 64, 96))
    assert [f.shape[1] for f in feats] == model.channels == [64, 128, 216, 288, 288]
    assert [64 // f.shape[2] for f in feats] == model.reductions == [2, 4, 8, 16, 32]


def test_original_variant_starts_at_stride_four():
    model = mpvit_tiny(monovit=False).eval()
    with torch.no_grad():
        feats = model(torch.rand(1, 3, 64, 64))
    assert [64 // f.shape[2] for f in feats] == model.reductions == [4, 8, 16, 32]
