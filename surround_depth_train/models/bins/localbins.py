"""LocalBins: bins per pixel, seeded at the bottleneck and split at every decoder stage (Bhat et al., ECCV 2022).

Where AdaBins predicts one set of bins per image, LocalBins predicts a depth distribution for each pixel's
neighbourhood and refines it coarse to fine. With ``E`` the bin embedding dimension, ``K_0`` seed bins and ``L``
decoder stages (``K = K_0 2^L`` bins in the end):

    x0  = conv2(bottleneck)
    w   = relu(seed_regressor(x0)) + eps               K_0 widths per pixel at the bottleneck's resolution
    e   = seed_projector(x0)                           bin embedding
    for each decoder stage i (coarse -> fine):
        e   = projector_i(stage_i) + resize(e)         this stage's embedding, carrying the coarser one
        s   = relu(splitter_i(e)) + eps                two split fractions per bin, normalised within the pair
        w   = (resize(w / sum w) * s) -> 2x the bins    every bin splits into two sub-bins, widths per pixel
    c   = min + (max - min) (cumsum(w) - w / 2)         per-pixel centers (widths normalised), resized to H x W
    P   = softmax_K(MLP([last; rel_depth; resize(e)])),  D = sum_k P_k c_k

All resizes are bilinear with ``align_corners=True``. The output MLP's first layer is applied to ``e`` before it is
resized (a linear map commutes with bilinear resampling), so no full-resolution ``E``-channel tensor is formed.

Settings: LocalBins starts from 16 seed bins and ends with 256. Here ``n_bins`` (the final ``K``) defaults to 64, so
``K_0 = 64 / 2^4 = 4`` on the students' four stages: the student then pairs its bins one to one with the MetricBins
teacher's 64 for CKD and VRKD (``n_bins=256`` gives the paper's 16 -> 256). MLP widths follow ZoeDepth's port of
the LocalBins layers (seed regressor hidden 256, projectors and splitters hidden 128).

Parameters on Monodepth2 (512-channel bottleneck, stages 256/128/64/32, last feature 16): 713,660, so
``monodepth2_lb`` has 15,042,896 (15.04 M), against Table IV's 18.20 M. The paper does not describe its LocalBins
configuration; its +3.87 M over Monodepth2 is far more than LocalBins' bin layers need (``n_bins=256``, the
paper's 16 seed bins, adds only 74 k: 15,117,188 in all; the head is per-pixel MLPs of width 128-256), so the
paper's count most likely includes decoder layers of the official LocalBins network (an EfficientNet-B5 U-Net
decoder with 2048 -> 1024 -> ... channels) carried over with the head. We keep Monodepth2's decoder, so that Table
IV compares heads on the same network.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from surround_depth_train.models.bins.adabins import adaptive_bin_centers
from surround_depth_train.models.bins.confidence import bin_confidence
from surround_depth_train.models.bins.head import BinsOutput, expected_depth
from surround_depth_train.models.bins.pixelwise import resize_channels

__all__ = ['LocalBins', 'BinSplitter']

WIDTH_EPS = 1e-3


def _mlp(in_channels: int, hidden: int, out_channels: int, act: type[nn.Module] = nn.ReLU) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_channels, hidden, 1), act(), nn.Conv2d(hidden, out_channels, 1))


class BinSplitter(nn.Module):
    """Splits each of ``n_prev`` bins into ``split`` sub-bins with fractions predicted from the bin embedding.

    ``s = relu(mlp(e)) + eps`` as ``[B, n_prev, split, h, w]``, normalised over ``split``; the new widths are
    ``resize(w_prev / sum w_prev)[:, k] * s[:, k, j]``, bins ordered ``(k, j)``, so the sub-bins of a bin stay
    adjacent and the widths still sum to one.
    """

    def __init__(self, embedding_dim: int, n_prev: int, split: int = 2, hidden: int = 128):
        super().__init__()
        self.n_prev, self.split = int(n_prev), int(split)
        self._net = _mlp(embedding_dim, hidden, self.n_prev * self.split, nn.GELU)

    def forward(self, embedding: Tensor, prev_widths: Tensor) -> Tensor:
        b, _, h, w = embedding.shape
        s = F.relu(self._net(embedding).float()) + WIDTH_EPS
        s = s.view(b, self.n_prev, self.split, h, w)
        s = s / s.sum(dim=2, keepdim=True)
        prev = resize_channels(prev_widths / prev_widths.sum(dim=1, keepdim=True), (h, w))
        return (prev.unsqueeze(2) * s).flatten(1, 2)


class LocalBins(nn.Module):
    """The LocalBins head with the call signature of :class:`MetricBins` (module docstring).

    Args:
        bottleneck_channels: channels of the coarsest feature.
        stage_channels: channels of each decoder stage, coarse to fine (one split each).
        last_channels: channels of the finest feature (the relative depth adds one).
        n_bins: final ``K``; must be ``n_seed * 2^len(stage_channels)``.
        min_depth, max_depth: metres; every pixel's bins span this range.
        bin_embedding_dim: ``E``.
        seed_hidden, hidden: MLP widths (seed regressor; projectors, splitters and the output MLP).
    """

    head_type = 'localbins'
    bin_centers_type = 'normed'

    def __init__(self, *, bottleneck_channels: int, stage_channels: Sequence[int], last_channels: int,
                 n_bins: int = 64, min_depth: float = 1e-3, max_depth: float = 80.0, bin_embedding_dim: int = 128,
                 seed_hidden: int = 256, hidden: int = 128):
        super().__init__()
        stage_channels = [int(c) for c in stage_channels]
        splits = 2 ** len(stage_channels)
        if n_bins % splits:
            raise ValueError(f'LocalBins doubles the bins at each of {len(stage_channels)} stages: n_bins must be a '
                             f'multiple of {splits}, got {n_bins}')
        if not 0 <= min_depth < max_depth:
            raise ValueError(f'need 0 <= min_depth < max_depth, got min_depth={min_depth}, max_depth={max_depth}')
        self.n_bins = int(n_bins)
        self.n_seed = self.n_bins // splits
        self.min_depth, self.max_depth = float(min_depth), float(max_depth)
        self.conv2 = nn.Conv2d(bottleneck_channels, bottleneck_channels, 1)
        self.seed_regressor = _mlp(bottleneck_channels, seed_hidden, self.n_seed)
        self.seed_projector = _mlp(bottleneck_channels, hidden, bin_embedding_dim)
        self.projectors = nn.ModuleList([_mlp(c, hidden, bin_embedding_dim) for c in stage_channels])
        self.splitters = nn.ModuleList([BinSplitter(bin_embedding_dim, self.n_seed * 2 ** i, hidden=hidden)
                                        for i in range(len(stage_channels))])
        self.out_feature = nn.Conv2d(last_channels + 1, hidden, 1)
        self.out_embedding = nn.Conv2d(bin_embedding_dim, hidden, 1, bias=False)
        self.out_logits = nn.Conv2d(hidden, self.n_bins, 1)

    def coarse_bins(self, bottleneck: Tensor, stage_features: Sequence[Tensor]) -> tuple[Tensor, Tensor]:
        """Per-pixel bin widths (normalised, ``[B, K, h, w]``) and the embedding at the finest stage."""
        if len(stage_features) != len(self.projectors):
            raise ValueError(f'LocalBins was built for {len(self.projectors)} stage features, got '
                             f'{len(stage_features)}')
        x0 = self.conv2(bottleneck)
        widths = F.relu(self.seed_regressor(x0).float()) + WIDTH_EPS
        embedding = self.seed_projector(x0)
        for projector, splitter, feature in zip(self.projectors, self.splitters, stage_features):
            embedding = projector(feature) + resize_channels(embedding, feature.shape[-2:])
            widths = splitter(embedding, widths)
        return widths / widths.sum(dim=1, keepdim=True), embedding

    def forward(self, bottleneck: Tensor, stage_features: Sequence[Tensor], last_feature: Tensor,
                rel_depth: Tensor, depth_only: bool = False, confidence: bool = False) -> BinsOutput:
        """Bins at ``last_feature``'s resolution."""
        if rel_depth.ndim == 3:
            rel_depth = rel_depth.unsqueeze(1)
        size = last_feature.shape[-2:]
        widths, embedding = self.coarse_bins(bottleneck, stage_features)
        centers = resize_channels(adaptive_bin_centers(widths, self.min_depth, self.max_depth), size)
        rel = resize_channels(rel_depth, size).to(last_feature.dtype)
        hidden = self.out_feature(torch.cat([last_feature, rel], dim=1)) + \
            resize_channels(self.out_embedding(embedding), size)
        probs = torch.softmax(self.out_logits(F.gelu(hidden)).float(), dim=1)
        depth = expected_depth(probs, centers)
        conf = bin_confidence(probs, dim=1) if confidence else None
        if depth_only:
            return BinsOutput(centers=None, probs=None, depth=depth, confidence=conf)
        return BinsOutput(centers=centers, probs=probs, depth=depth, confidence=conf)
