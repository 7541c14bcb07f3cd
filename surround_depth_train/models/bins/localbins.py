"""LocalBins: bins per pixel on LocalBins' own decoder, split coarse to fine (Bhat et al., ECCV 2022).

Where AdaBins predicts one set of bins per image, LocalBins predicts a depth distribution for every pixel and
refines it at each decoder stage by splitting every bin in two. With ``E`` the bin embedding dimension, ``K_0``
seed bins and ``L = 4`` stages (``K = K_0 2^L`` bins in the end), on an encoder with bottleneck ``b`` and skips
``s_1..s_4`` (strides 16, 8, 4, 2):

    x    = conv2(b)                                              1x1 conv, F -> F channels
    w    = seed_widths(x),  e = seed_projector(x)                K_0 normalised widths per pixel (``splitting``)
    for i = 1..4 (coarse -> fine):
        x  = up_block_i(x, s_i)                                  LocalBins' decoder (``upsample_block``), F/2^i ch
        e' = projector_i(x)                                      bin embedding: 1x1 conv -> GELU -> 1x1 conv
        w  = splitter_i(e', e, w),  e = e'                       every bin split in two (``splitting``)
    C    = min + (max - min) (cumsum(w) - w / 2)                 per-pixel centers, sorted, inside [min, max]
    P    = softmax_K(conv_out([x; f; r]))                        3x3 conv; f, r: the student's feature and
                                                                 relative depth at x's resolution (stride 2)
    C, P -> the input resolution (bilinear, P renormalised: ``resize_bins``),  D = sum_k P_k C_k

The layers, their widths (seed MLP hidden 256; projector and splitter MLPs hidden 128; ``E = 128``), the block
structure and the 3x3 output convolution are LocalBins'; so is the output at the decoder's stride 2, resized to
the input. Departures, each because the head sits on a student here: (1) ``conv_out`` also reads the student
decoder's stride-2 feature ``f`` and its relative depth ``r`` (the sigmoid disparity), as MetricBins reads the
student's last feature and relative depth, so the student's decoder takes part in ``P`` (without it Monodepth2's
decoder would get no gradient at all); LocalBins reads only its own ``x``. (2) ``K`` defaults to 64, so the bins
pair one to one with the MetricBins teacher's for CKD and VRKD: ``K_0 = 4``. LocalBins' code builds 8 seed bins
(128 bins) unless told otherwise; ``n_bins=128`` gives that. (3) ``conv2`` has no padding (LocalBins' 1x1 conv
pads one pixel, which adds a border of bias values and no parameters). (4) LocalBins' ``height_head`` (74,497
parameters on Monodepth2, marked unused in its final version) and its multi-scale bins loss on box queries are
left out: Table IV trains every head with the same losses.

Parameters on Monodepth2 (ResNet-18 bottleneck 512, skips 256/128/64/64, student stride-2 feature 32, K = 64):
``conv2`` 262,656; up blocks 3,145,536 (2,360,832 + 590,592 + 147,840 + 46,272); seed widths 132,356; seed
projector 82,176; projectors 128,000; splitters 81,528; ``conv_out`` (65 -> 64, 3x3) 37,504: 3,869,756 in all,
so ``monodepth2_lb`` has 14,329,236 + 3,869,756 = 18,198,992 (Table IV: 18.20 M). For comparison: ``conv_out``
on LocalBins' own 32 channels only gives 18,179,984 (18.18 M), and adding the unused height head 18,254,481.

Files written before this layout (the 15.04 M ``monodepth2_lb``: bins layers on the student's decoder only, keys
``seed_regressor``, ``out_feature``, ``out_embedding``, ``out_logits``) are refused with that reason when loaded;
their weights do not map onto LocalBins' decoder.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn

from surround_depth_train.models.bins.adabins import adaptive_bin_centers
from surround_depth_train.models.bins.confidence import bin_confidence
from surround_depth_train.models.bins.head import BinsOutput, expected_depth, resize_bins
from surround_depth_train.models.bins.pixelwise import resize_channels
from surround_depth_train.models.bins.splitting import BinSplitter, SeedWidths, gelu_mlp
from surround_depth_train.models.bins.upsample_block import UpsampleBlock

__all__ = ['LocalBins', 'OLD_LAYOUT_KEYS']

#: Parameter-name prefixes of the earlier LocalBins head (15.04 M ``monodepth2_lb``), refused when loading.
OLD_LAYOUT_KEYS = ('seed_regressor.', 'out_feature.', 'out_embedding.', 'out_logits.')


class LocalBins(nn.Module):
    """The LocalBins head with the call signature of :class:`MetricBins` plus the encoder's skips (module
    docstring).

    Args:
        bottleneck_channels: channels of the encoder's deepest feature (``F``).
        stage_channels: channels of the student decoder's stages, coarse to fine; one LocalBins stage each, and
            the last one (stride 2) joins the output layer.
        last_channels: channels of the student's finest feature (unused: LocalBins' output is computed at
            stride 2 and resized to the finest feature's size).
        skip_channels: channels of the encoder's features below the bottleneck, finest first (the student's
            ``encoder.channels[:-1]``); the coarsest ``len(stage_channels)`` are LocalBins' skips.
        n_bins: final ``K``; must be ``K_0 * 2^len(stage_channels)``.
        min_depth, max_depth: metres; every pixel's bins span this range.
        bin_embedding_dim: ``E``.
        seed_hidden, hidden: MLP widths (seed widths; projectors and splitters).
        decoder_channels: output channels of LocalBins' decoder blocks (default ``F/2, F/4, ...``).
    """

    head_type = 'localbins'
    bin_centers_type = 'normed'
    takes_encoder_skips = True  # DepthStudent passes ``skips=encoder features[:-1]``

    def __init__(self, *, bottleneck_channels: int, stage_channels: Sequence[int], last_channels: int,
                 skip_channels: Sequence[int], n_bins: int = 64, min_depth: float = 1e-3, max_depth: float = 80.0,
                 bin_embedding_dim: int = 128, seed_hidden: int = 256, hidden: int = 128,
                 decoder_channels: Sequence[int] | None = None):
        super().__init__()
        stage_channels = [int(c) for c in stage_channels]
        n_stages = len(stage_channels)
        splits = 2 ** n_stages
        if n_bins % splits:
            raise ValueError(f'LocalBins doubles the bins at each of {n_stages} stages: n_bins must be a multiple of '
                             f'{splits}, got {n_bins}')
        if not 0 <= min_depth < max_depth:
            raise ValueError(f'need 0 <= min_depth < max_depth, got min_depth={min_depth}, max_depth={max_depth}')
        skips = [int(c) for c in skip_channels][::-1][:n_stages]  # coarse -> fine
        if len(skips) < n_stages:
            raise ValueError(f'LocalBins joins one encoder skip per stage: {n_stages} stages need {n_stages} skip '
                             f'features below the bottleneck, got skip_channels={list(skip_channels)}')
        width = int(bottleneck_channels)
        if decoder_channels is None:
            decoder_channels = [width // 2 ** (i + 1) for i in range(n_stages)]
        decoder_channels = [int(c) for c in decoder_channels]
        if len(decoder_channels) != n_stages or min(decoder_channels) < 1:
            raise ValueError(f'decoder_channels needs {n_stages} positive widths, got {decoder_channels}')
        self.n_bins = int(n_bins)
        self.n_seed = self.n_bins // splits
        self.min_depth, self.max_depth = float(min_depth), float(max_depth)
        self.conv2 = nn.Conv2d(width, width, 1)
        self.up_blocks = nn.ModuleList([UpsampleBlock(c_in, skip, c_out) for c_in, skip, c_out in
                                        zip([width] + decoder_channels[:-1], skips, decoder_channels)])
        self.seed_widths = SeedWidths(width, self.n_seed, hidden=seed_hidden)
        self.seed_projector = gelu_mlp(width, hidden, bin_embedding_dim)
        self.projectors = nn.ModuleList([gelu_mlp(c, hidden, bin_embedding_dim) for c in decoder_channels])
        self.splitters = nn.ModuleList([BinSplitter(bin_embedding_dim, self.n_seed * 2 ** i, hidden=hidden)
                                        for i in range(n_stages)])
        self.conv_out = nn.Conv2d(decoder_channels[-1] + stage_channels[-1] + 1, self.n_bins, 3, padding=1)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        old = sorted({k[len(prefix):].split('.')[0] for k in state_dict
                      if k.startswith(prefix) and k[len(prefix):].startswith(OLD_LAYOUT_KEYS)})
        if old:
            raise RuntimeError(
                f'these weights hold the earlier LocalBins head (keys {", ".join(old)}: bins layers on the student '
                f'decoder only, 15.04 M for monodepth2_lb); LocalBins now has its own decoder (conv2, up_blocks, '
                f'seed_widths, projectors, splitters, conv_out: 18.20 M for monodepth2_lb) and the old weights do '
                f'not map onto it: retrain the model, or load it with a checkout from before that change')
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def coarse_bins(self, bottleneck: Tensor, skips: Sequence[Tensor]) -> tuple[Tensor, Tensor]:
        """Normalised widths ``[B, K, h, w]`` (fp32) and LocalBins' last decoder feature, both at the finest
        skip's resolution. ``skips``: the encoder's features below the bottleneck, finest first."""
        skips = list(skips)[::-1][:len(self.up_blocks)]
        if len(skips) != len(self.up_blocks):
            raise ValueError(f'LocalBins was built for {len(self.up_blocks)} encoder skips, got {len(skips)}')
        x = self.conv2(bottleneck)
        widths, embedding = self.seed_widths(x), self.seed_projector(x)
        for block, projector, splitter, skip in zip(self.up_blocks, self.projectors, self.splitters, skips):
            x = block(x, skip)
            stage_embedding = projector(x)
            widths = splitter(stage_embedding, embedding, widths)
            embedding = stage_embedding
        return widths, x

    def forward(self, bottleneck: Tensor, stage_features: Sequence[Tensor], last_feature: Tensor,
                rel_depth: Tensor, depth_only: bool = False, confidence: bool = False,
                skips: Sequence[Tensor] | None = None) -> BinsOutput:
        """Bins at ``last_feature``'s resolution.

        Args:
            bottleneck: the encoder's deepest feature ``[B, F, h0, w0]``.
            stage_features: the student decoder's features, coarse to fine (the last, stride 2, is used).
            last_feature: the student's finest feature (its size is the output size).
            rel_depth: relative depth ``[B, 1, H, W]`` or ``[B, H, W]``.
            depth_only: return ``D`` alone (``centers`` and ``probs`` None).
            confidence: also return ``1 - H(P) / log K`` per pixel.
            skips: the encoder's features below the bottleneck, finest first (required).
        """
        if skips is None:
            raise ValueError('LocalBins needs the encoder features: call it with skips=features[:-1]')
        if rel_depth.ndim == 3:
            rel_depth = rel_depth.unsqueeze(1)
        widths, x = self.coarse_bins(bottleneck, skips)
        size = x.shape[-2:]
        student = resize_channels(stage_features[-1], size).to(x.dtype)
        rel = resize_channels(rel_depth, size).to(x.dtype)
        probs = torch.softmax(self.conv_out(torch.cat([x, student, rel], dim=1)).float(), dim=1)
        centers = adaptive_bin_centers(widths, self.min_depth, self.max_depth)
        out = resize_bins(BinsOutput(centers=centers, probs=probs, depth=expected_depth(probs, centers)),
                          last_feature.shape[-2:])
        conf = bin_confidence(out.probs, dim=1) if confidence else None
        if depth_only:
            return BinsOutput(centers=None, probs=None, depth=out.depth, confidence=conf)
        return BinsOutput(centers=out.centers, probs=out.probs, depth=out.depth, confidence=conf)
