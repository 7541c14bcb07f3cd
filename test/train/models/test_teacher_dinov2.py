"""The vendored-DINOv2 details of the teacher's ViT: position-embedding resampling and the intermediate layers."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from surround_depth_train.models.teacher.dinov2 import DinoVisionTransformer, interpolate_pos_embed


def _cubic(t: np.ndarray, a: float = -0.75) -> np.ndarray:
    """Keys' cubic convolution kernel with a = -0.75 (PyTorch's bicubic)."""
    t = np.abs(t)
    return np.where(t <= 1, (a + 2) * t ** 3 - (a + 3) * t ** 2 + 1,
                    np.where(t < 2, a * t ** 3 - 5 * a * t ** 2 + 8 * a * t - 4 * a, 0.0))


def _bicubic_axis_matrix(n_in: int, n_out: int, scale: float) -> np.ndarray:
    """Rows of weights: output i samples the input at ``(i + 0.5) / scale - 0.5``, edge indices clamped."""
    m = np.zeros((n_out, n_in))
    for i in range(n_out):
        src = (i + 0.5) / scale - 0.5
        base = math.floor(src)
        for k in range(base - 1, base + 3):
            m[i, min(max(k, 0), n_in - 1)] += _cubic(np.array(src - k))
    return m


def _formula_pos_embed(grid: np.ndarray, n_h: int, n_w: int) -> np.ndarray:
    """DINOv2's resampling from the formula: scale factor ``(n + 0.1) / sqrt(N)`` per side; grid is [s, s, C]."""
    side = grid.shape[0]
    rows = _bicubic_axis_matrix(side, n_h, (n_h + 0.1) / side)
    cols = _bicubic_axis_matrix(side, n_w, (n_w + 0.1) / side)
    return np.einsum('hi,wj,ijc->hwc', rows, cols, grid)


@pytest.mark.parametrize('n_h,n_w', [(3, 4), (7, 9), (5, 2)])
def test_pos_embed_interpolation_matches_the_scale_factor_bicubic_formula(n_h, n_w):
    side, dim = 5, 3
    grid = np.random.default_rng(0).normal(size=(side, side, dim))
    pos = torch.from_numpy(grid.reshape(1, side * side, dim)).float()
    ours = interpolate_pos_embed(pos, n_h, n_w).reshape(n_h, n_w, dim).double().numpy()
    np.testing.assert_allclose(ours, _formula_pos_embed(grid, n_h, n_w), atol=1e-5)


def test_pos_embed_interpolation_differs_from_size_based_resampling():
    side, dim, n_h, n_w = 37, 4, 24, 40  # the ViT-L grid resampled for a 336 x 560 input
    pos = torch.randn(1, side * side, dim, generator=torch.Generator().manual_seed(0))
    ours = interpolate_pos_embed(pos, n_h, n_w)
    by_size = F.interpolate(pos.reshape(1, side, side, dim).permute(0, 3, 1, 2), size=(n_h, n_w), mode='bicubic',
                            align_corners=False).permute(0, 2, 3, 1).reshape(1, n_h * n_w, dim)
    assert ours.shape == by_size.shape
    assert (ours - by_size).abs().max() > 1e-3


def test_pos_embed_is_returned_unchanged_at_the_pretraining_grid():
    pos = torch.randn(1, 16, 2)
    assert interpolate_pos_embed(pos, 4, 4) is pos


def test_pos_embed_interpolation_rejects_a_non_square_grid():
    with pytest.raises(ValueError, match='square'):
        interpolate_pos_embed(torch.randn(1, 12, 2), 3, 3)


def test_intermediate_layers_are_the_normed_patch_tokens_of_the_last_four_blocks():
    torch.manual_seed(0)
    vit = DinoVisionTransformer(embed_dim=32, depth=6, num_heads=2, pretrain_size=56).eval()
    x = torch.randn(2, 3, 28, 42)
    with torch.no_grad():
        taps = vit.get_intermediate_layers(x, 4)
        tokens = vit.prepare_tokens(x)
        expected = []
        for i, block in enumerate(vit.blocks):
            tokens = block(tokens)
            if i >= 2:
                expected.append(vit.norm(tokens)[:, 1:])
    assert len(taps) == 4
    for got, want in zip(taps, expected):
        assert got.shape == (2, 2 * 3, 32)
        torch.testing.assert_close(got, want)


def test_tokens_get_the_class_token_and_interpolated_position_embedding():
    torch.manual_seed(0)
    vit = DinoVisionTransformer(embed_dim=16, depth=4, num_heads=2, pretrain_size=70)
    x = torch.randn(1, 3, 42, 28)
    with torch.no_grad():
        tokens = vit.prepare_tokens(x)
        patches = vit.patch_embed(x)
        pos = interpolate_pos_embed(vit.pos_embed[:, 1:], 3, 2)
    torch.testing.assert_close(tokens[:, 0], (vit.cls_token + vit.pos_embed[:, :1])[:, 0])
    torch.testing.assert_close(tokens[:, 1:], patches + pos)


def test_vit_rejects_an_input_that_is_not_a_multiple_of_the_patch():
    vit = DinoVisionTransformer(embed_dim=16, depth=4, num_heads=2, pretrain_size=56)
    with pytest.raises(ValueError, match='multiple of the patch size 14'):
        vit.get_intermediate_layers(torch.randn(1, 3, 30, 28))
