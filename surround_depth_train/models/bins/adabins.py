"""AdaBins: one set of adaptive bins per image, from a mini vision transformer (Bhat et al., CVPR 2021).

The head reads the decoder's finest feature ``x`` (``[B, C, H, W]``) and computes, with ``E`` the embedding
dimension and ``K`` the bins:

    tokens = conv_pxp(x) + pos                   p x p patches (stride p) -> S tokens of dim E, learned positions
    T      = TransformerEncoder(tokens)          4 layers, 4 heads, feed-forward 1024 (post-norm, ReLU)
    w      = relu(MLP(T_0)) + eps,  w /= sum w   the first output token regresses K normalised bin widths
    e      = min + (max - min) cumsum([0, w])    bin edges;  c_k = (e_k + e_{k+1}) / 2   (one set per image)
    R      = <conv3x3(x), T_{1..Q}>              range-attention maps: each pixel's dot product with Q query tokens
    P      = softmax_K(conv1x1(R)),   D = sum_k P_k c_k
                                                 (computed as one folded 3 x 3 convolution, see ``bin_logits``)

So the bin centers are global (the same for every pixel of an image: the "adaptive" part is per image) while the
probabilities are per pixel. ``centers`` are returned as ``[B, K, H, W]`` (an expanded view of ``[B, K, 1, 1]``,
no copy), so every loss that reads per-pixel centers (supervision, CKD, VRKD) takes this head as it takes
MetricBins.

AdaBins' settings are kept (``E = Q = 128``, ``p = 16``, widths ``relu + 0.1``, regressor ``E -> 256 -> 256 -> K``,
500 learned positional embeddings) except ``K``: 64 here by default (AdaBins: 256), so a student with this head pairs
its bins one to one with the MetricBins teacher's 64 for CKD and VRKD. AdaBins' feature map is the decoder output
at half resolution; the students here hand the head their finest (full-resolution) decoder feature, the one
MetricBins reads, so a 640 x 384 image makes 960 tokens: where there are more tokens than stored positions, the
position table is resampled linearly along the token index (AdaBins itself only takes the first ``S`` rows). The
bins token and the ``Q`` queries are patch tokens, so a map needs ``Q + 1`` patches: a smaller one (tiny test
images) is enlarged bilinearly before the patch embedding.

Parameters on Monodepth2 (16-channel last feature): 2,049,920, so ``monodepth2_ab`` has 16,379,156 (16.38 M)
against Table IV's 16.36 M. The 0.02 M gap is within what the paper leaves open (it gives no AdaBins configuration
for the students, e.g. the regressor's widths or the number of stored positions); the patch embedding
(``16 * 16 * 16 * 128`` weights) and the four transformer layers (1.32 M) are most of the head either way.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from surround_depth_train.models.bins.confidence import bin_confidence
from surround_depth_train.models.bins.head import BinsOutput, expected_depth

__all__ = ['AdaBins', 'PatchTransformer', 'adaptive_bin_centers']

WIDTH_EPS = 0.1  # AdaBins adds 0.1 to the ReLU widths before normalising them ("linear" norm)


def adaptive_bin_centers(widths: Tensor, min_depth: float, max_depth: float) -> Tensor:
    """Centers of bins whose (unnormalised, positive) widths are ``widths`` along dim 1, spanning ``[min, max]``.

    ``w_k / sum_j w_j`` scaled to ``max - min``; edges ``e_0 = min``, ``e_{k+1} = e_k + w_k``;
    ``c_k = (e_k + e_{k+1}) / 2``. Works for ``[B, K]`` (AdaBins) and ``[B, K, H, W]`` (LocalBins).
    """
    widths = widths / widths.sum(dim=1, keepdim=True)
    widths = widths * (max_depth - min_depth)
    return min_depth + torch.cumsum(widths, dim=1) - 0.5 * widths


class PatchTransformer(nn.Module):
    """Patch embedding, learned positions and a transformer encoder: ``[B, C, H, W] -> [B, S, E]``."""

    def __init__(self, in_channels: int, *, embedding_dim: int = 128, patch_size: int = 16, num_heads: int = 4,
                 num_layers: int = 4, ff_dim: int = 1024, max_positions: int = 500, dropout: float = 0.1):
        super().__init__()
        self.patch_size = int(patch_size)
        self.embedding = nn.Conv2d(in_channels, embedding_dim, kernel_size=patch_size, stride=patch_size)
        self.positions = nn.Parameter(torch.rand(max_positions, embedding_dim))
        layer = nn.TransformerEncoderLayer(embedding_dim, num_heads, dim_feedforward=ff_dim, dropout=dropout,
                                           batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, num_layers=num_layers, enable_nested_tensor=False)

    def forward(self, x: Tensor, min_tokens: int = 1) -> Tensor:
        """Tokens ``[B, S, E]``, ``S >= min_tokens``: a feature map too small for that many patches is enlarged
        bilinearly first (small test images only; at driving resolutions the map has hundreds of patches)."""
        h, w = x.shape[-2:]
        p = self.patch_size
        if (h // p) * (w // p) < min_tokens:
            scale = (min_tokens / max((h / p) * (w / p), 1e-9)) ** 0.5
            size = (max(p, math.ceil(h * scale / p) * p), max(p, math.ceil(w * scale / p) * p))
            while (size[0] // p) * (size[1] // p) < min_tokens:
                size = (size[0] + p, size[1] + p)
            x = F.interpolate(x, size=size, mode='bilinear', align_corners=False)
        tokens = self.embedding(x).flatten(2).transpose(1, 2)  # [B, S, E]
        n = tokens.shape[1]
        positions = self.positions
        if n > positions.shape[0]:
            positions = F.interpolate(positions.t()[None], size=n, mode='linear', align_corners=True)[0].t()
        return self.encoder(tokens + positions[:n].to(tokens.dtype))


class AdaBins(nn.Module):
    """The AdaBins head with the call signature of :class:`MetricBins` (module docstring).

    Args:
        bottleneck_channels, stage_channels: accepted for a common constructor; AdaBins reads only the last feature.
        last_channels: channels of the finest decoder feature.
        n_bins: ``K``.
        min_depth, max_depth: metres; the bins span this range.
        embedding_dim: ``E`` (and the number of query tokens ``Q``).
        patch_size, num_heads, num_layers, ff_dim, max_positions: the mini-ViT.
        regressor_hidden: width of the bin-width MLP.
    """

    head_type = 'adabins'
    bin_centers_type = 'normed'  # bounded, ordered centers, as MetricBins' 'normed'

    def __init__(self, *, bottleneck_channels: int, stage_channels: Sequence[int], last_channels: int,
                 n_bins: int = 64, min_depth: float = 1e-3, max_depth: float = 80.0, embedding_dim: int = 128,
                 patch_size: int = 16, num_heads: int = 4, num_layers: int = 4, ff_dim: int = 1024,
                 max_positions: int = 500, regressor_hidden: int = 256):
        super().__init__()
        if not 0 <= min_depth < max_depth:
            raise ValueError(f'need 0 <= min_depth < max_depth, got min_depth={min_depth}, max_depth={max_depth}')
        self.n_bins = int(n_bins)
        self.min_depth, self.max_depth = float(min_depth), float(max_depth)
        self.n_queries = int(embedding_dim)
        self.transformer = PatchTransformer(last_channels, embedding_dim=embedding_dim, patch_size=patch_size,
                                            num_heads=num_heads, num_layers=num_layers, ff_dim=ff_dim,
                                            max_positions=max_positions)
        self.conv3x3 = nn.Conv2d(last_channels, embedding_dim, 3, padding=1)
        self.regressor = nn.Sequential(nn.Linear(embedding_dim, regressor_hidden), nn.LeakyReLU(),
                                       nn.Linear(regressor_hidden, regressor_hidden), nn.LeakyReLU(),
                                       nn.Linear(regressor_hidden, n_bins))
        self.conv_out = nn.Conv2d(self.n_queries, n_bins, 1)

    def bin_logits(self, x: Tensor, queries: Tensor) -> Tensor:
        """``conv_out(<conv3x3(x), queries>)`` computed as one 3 x 3 convolution of ``x`` per image.

        Both steps are linear in ``conv3x3(x)``, so their weights fold into ``K x C x 3 x 3`` per image:
        ``W'_b = W_out Q_b W_3x3``, ``b'_b = W_out Q_b b_3x3 + b_out``. The same function as AdaBins' two steps,
        without the ``E``- and ``Q``-channel maps at full resolution (``C = 16`` input channels, ``K`` output).
        """
        b, c, h, w = x.shape
        if torch.jit.is_tracing():
            # ONNX cannot express a convolution whose kernel is computed from the input: export AdaBins' own two
            # steps (the same function, with the E-channel map written out).
            embedding = self.conv3x3(x)
            return self.conv_out(torch.einsum('bqe,behw->bqhw', queries.to(embedding.dtype), embedding))
        mix = torch.einsum('kq,bqe->bke', self.conv_out.weight.flatten(1).to(queries.dtype), queries)  # [B, K, E]
        weight = torch.einsum('bke,echw->bkchw', mix, self.conv3x3.weight.to(mix.dtype))
        bias = torch.einsum('bke,e->bk', mix, self.conv3x3.bias.to(mix.dtype)) + self.conv_out.bias.to(mix.dtype)
        out = F.conv2d(x.reshape(1, b * c, h, w), weight.reshape(b * self.n_bins, c, 3, 3).to(x.dtype), padding=1,
                       groups=b)
        return out.view(b, self.n_bins, h, w) + bias[:, :, None, None].to(out.dtype)

    def forward(self, bottleneck: Tensor, stage_features: Sequence[Tensor], last_feature: Tensor,
                rel_depth: Tensor | None = None, depth_only: bool = False, confidence: bool = False) -> BinsOutput:
        """Bins at ``last_feature``'s resolution (``bottleneck``, ``stage_features`` and ``rel_depth`` unused)."""
        tokens = self.transformer(last_feature, min_tokens=self.n_queries + 1)
        widths = F.relu(self.regressor(tokens[:, 0]).float()) + WIDTH_EPS
        centers = adaptive_bin_centers(widths, self.min_depth, self.max_depth)  # [B, K]
        queries = tokens[:, 1:self.n_queries + 1]                                # [B, Q, E]
        probs = torch.softmax(self.bin_logits(last_feature, queries).float(), dim=1)
        centers = centers[:, :, None, None].expand_as(probs)
        depth = expected_depth(probs, centers)
        conf = bin_confidence(probs, dim=1) if confidence else None
        if depth_only:
            return BinsOutput(centers=None, probs=None, depth=depth, confidence=conf)
        return BinsOutput(centers=centers, probs=probs, depth=depth, confidence=conf)
