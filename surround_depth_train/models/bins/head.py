"""MetricBins: ZoeDepth's metric bins module, shared by the teacher and the students.

Data flow (``E`` = bin embedding dim, ``K`` = bins):

    x0 = conv2(bottleneck)                              1x1 conv at the coarsest resolution
    c  = seed_bin_regressor(x0),  e = seed_projector(x0)
    for each decoder stage i (coarse -> fine):
        e_i = projectors[i](stage_i)
        b, c = attractors[i](e_i, resize(b), resize(e))  ;  e = e_i
    P = conditional_log_binomial([last; resize(rel_depth)], resize(e))   at the last feature's resolution
    C = resize(c),  D = sum_k P_k C_k

All resizes are bilinear with ``align_corners=True``. How it is made cheap while computing the same function:

- everything runs channels-last, 1x1 convolutions as GEMMs (see ``pixelwise``);
- the centers stay at the finest stage's resolution until one final upsampling, and the embedding is resized
  after the first linear layer of the log-binomial MLP (see ``ConditionalLogBinomial``), so no full-resolution
  ``E``-channel tensor exists;
- the log-binomial is a rank-2 product and a softmax; attractors loop over points (no ``[.., n_a, K]`` tensor);
- on CPU without autograd (inference, frozen teacher) the head is computed image by image, every stage and the
  full-resolution output in bands of rows that stay in cache (see ``banded``); only ``P``, ``C`` and ``D`` reach
  main memory at full resolution, and with ``depth_only`` only ``D`` (and the confidence, one channel, when asked:
  see ``confidence``);
- with autograd the full-resolution MLP is recomputed in the backward pass instead of stored
  (``memory_efficient``).

For deployment the head can also compute a cheaper function: ``downsample`` (1, 2 or 4; :func:`set_bins_downsample`)
average-pools the last feature and the relative depth by that factor, computes depth (and confidence) there and
upsamples them bilinearly to the full resolution. On a Monodepth2 + MB set of six 640 x 384 images (two CPU cores,
``bench models --profile``) the full-resolution output (log-binomial MLP, softmax, centers' upsampling, expected
depth) took 0.25 s of 2.2 s; a factor of 2 computes it on a quarter of the pixels. It is a cheaper function, not the
same one: ``bench precision`` measures what it costs in accuracy.

``centers`` and ``probs`` are returned as ``[B, K, H, W]`` tensors with channels-last strides.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from surround_depth_train.models.bins.attractor import AttractorLayer
from surround_depth_train.models.bins.banded import banded_bins
from surround_depth_train.models.bins.confidence import bin_confidence
from surround_depth_train.models.bins.log_binomial import ConditionalLogBinomial
from surround_depth_train.models.bins.pixelwise import resize_channels, resize_pixels, to_channels, to_pixels
from surround_depth_train.models.bins.seed import Projector, SeedBinRegressor

__all__ = ['BinsOutput', 'MetricBins', 'resize_bins', 'expected_depth', 'BIN_CENTERS_TYPES', 'BINS_DOWNSAMPLES',
           'set_bins_downsample']

BIN_CENTERS_TYPES = ('softplus', 'normed')
BINS_DOWNSAMPLES = (1, 2, 4)


@dataclass
class BinsOutput:
    """Per-pixel bins: ``depth = sum(probs * centers, dim=1)`` (``centers`` and ``probs`` are None when the head
    was asked for depth only; ``confidence`` is None unless asked for, see :func:`bin_confidence`)."""

    centers: Tensor | None  # [B, K, H, W] metres
    probs: Tensor | None    # [B, K, H, W], sums to one over K
    depth: Tensor           # [B, 1, H, W] metres
    confidence: Tensor | None = None  # [B, 1, H, W] in [0, 1]: 1 - H(probs) / log K


def expected_depth(probs: Tensor, centers: Tensor) -> Tensor:
    """``D = sum_k P_k C_k`` as ``[B, 1, H, W]``."""
    return (probs * centers).sum(dim=1, keepdim=True)


def resize_bins(out: BinsOutput, size: tuple[int, int]) -> BinsOutput:
    """Resize bins to ``size``: bilinear ``C`` and ``P`` (``align_corners=True``), ``P`` renormalised, ``D`` recomputed.

    So ``D = sum(P * C)`` holds exactly at the new resolution (a resized ``D`` would not); a confidence, when
    ``out`` has one, is recomputed from the resized ``P``.
    """
    size = (int(size[0]), int(size[1]))
    if out.probs is None or out.centers is None:
        raise ValueError('resize_bins needs centers and probs; this output was computed with depth_only=True')
    if tuple(out.probs.shape[-2:]) == size and tuple(out.centers.shape[-2:]) == size:
        return out
    centers = resize_channels(out.centers, size)
    probs = resize_channels(out.probs, size)
    probs = probs / probs.sum(dim=1, keepdim=True).clamp_min(torch.finfo(probs.dtype).tiny)
    confidence = None if out.confidence is None else bin_confidence(probs, dim=1)
    return BinsOutput(centers=centers, probs=probs, depth=expected_depth(probs, centers), confidence=confidence)


class MetricBins(nn.Module):
    """ZoeDepth metric bins head; submodule and parameter names match ZoeDepth's so its checkpoints load by prefix.

    Args:
        bottleneck_channels: channels of the coarsest feature (``conv2``, seed regressor, seed projector).
        stage_channels: channels of each refinement stage's feature, coarse to fine (one attractor each).
        last_channels: channels of the finest feature; the relative depth adds one more.
        n_bins: ``K``.
        bin_embedding_dim: ``E``.
        min_depth, max_depth: metres; bound the centers for ``bin_centers_type='normed'``.
        bin_centers_type: ``'softplus'`` (unbounded) or ``'normed'`` (ordered, inside ``[min, max]``).
        n_attractors: attractors per stage (at least ``len(stage_channels)`` entries).
        attractor_alpha, attractor_gamma, attractor_kind, attractor_type: see ``attractor.py``. ``alpha`` defaults
            to 300: ZoeDepth's configs say 1000 but its attractor layers never pass it on, so the official models
            compute with the attraction function's own default of 300.
        min_temp, max_temp: bounds of the log-binomial temperature.
        memory_efficient: recompute the full-resolution MLP in the backward pass instead of storing it.

    Attribute ``banded_inference`` (default True): on CPU without autograd, compute with the banded path (see
    ``banded``); set it to False for the whole-tensor operations everywhere, e.g. to trace the model for export.

    Attribute ``downsample`` (default 1; set it with :func:`set_bins_downsample`): compute depth at ``1 / downsample``
    of the last feature's resolution and upsample it (module docstring); ``depth_only`` calls only.
    """

    banded_inference = True
    downsample = 1
    projection_dtype: torch.dtype | None = None

    def __init__(self, *, bottleneck_channels: int, stage_channels: Sequence[int], last_channels: int,
                 n_bins: int = 64, bin_embedding_dim: int = 128, min_depth: float = 1e-3, max_depth: float = 80.0,
                 bin_centers_type: str = 'softplus', n_attractors: Sequence[int] = (16, 8, 4, 1),
                 attractor_alpha: float = 300.0, attractor_gamma: float = 2.0, attractor_kind: str = 'mean',
                 attractor_type: str = 'inv', min_temp: float = 0.0212, max_temp: float = 50.0,
                 memory_efficient: bool = True):
        super().__init__()
        if bin_centers_type not in BIN_CENTERS_TYPES:
            raise ValueError(f'bin_centers_type must be one of {BIN_CENTERS_TYPES}, got {bin_centers_type!r}')
        stage_channels = [int(c) for c in stage_channels]
        n_attractors = [int(n) for n in n_attractors]
        if len(n_attractors) < len(stage_channels):
            raise ValueError(f'n_attractors has {len(n_attractors)} entries but there are {len(stage_channels)} '
                             f'stages: give one attractor count per stage')
        if not 0 <= min_depth < max_depth:
            raise ValueError(f'need 0 <= min_depth < max_depth, got min_depth={min_depth}, max_depth={max_depth}')
        normed = bin_centers_type == 'normed'
        gamma = int(attractor_gamma) if float(attractor_gamma).is_integer() else float(attractor_gamma)
        self.n_bins = n_bins
        self.min_depth = float(min_depth)
        self.max_depth = float(max_depth)
        self.bin_centers_type = bin_centers_type

        self.conv2 = nn.Conv2d(bottleneck_channels, bottleneck_channels, 1)
        self.seed_bin_regressor = SeedBinRegressor(bottleneck_channels, n_bins, min_depth=min_depth,
                                                   max_depth=max_depth, normed=normed)
        self.seed_projector = Projector(bottleneck_channels, bin_embedding_dim)
        self.projectors = nn.ModuleList([Projector(c, bin_embedding_dim) for c in stage_channels])
        self.attractors = nn.ModuleList([
            AttractorLayer(bin_embedding_dim, n_bins, n_attractors[i], min_depth=min_depth, max_depth=max_depth,
                           alpha=attractor_alpha, gamma=gamma, kind=attractor_kind, attractor_type=attractor_type,
                           normed=normed)
            for i in range(len(stage_channels))
        ])
        self.conditional_log_binomial = ConditionalLogBinomial(last_channels + 1, bin_embedding_dim,
                                                               n_classes=n_bins, min_temp=min_temp,
                                                               max_temp=max_temp, memory_efficient=memory_efficient)

    def _seed(self, bottleneck: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``(state, centers, embedding)`` at the bottleneck's resolution, channels-last."""
        x = F.linear(to_pixels(bottleneck), self.conv2.weight.flatten(1), self.conv2.bias)
        centers = self.seed_bin_regressor(x)
        state = (centers - self.min_depth) / (self.max_depth - self.min_depth) if \
            self.bin_centers_type == 'normed' else centers
        return state, centers, self.seed_projector(x)

    def _check_stages(self, stage_features: Sequence[Tensor]) -> None:
        if len(stage_features) != len(self.projectors):
            raise ValueError(f'MetricBins was built for {len(self.projectors)} stage features, got '
                             f'{len(stage_features)}')

    def coarse_bins(self, bottleneck: Tensor, stage_features: Sequence[Tensor]) -> tuple[Tensor, Tensor]:
        """Centers at the finest stage's resolution (metres) and that stage's bin embedding, channels-last."""
        self._check_stages(stage_features)
        state, centers, embedding = self._seed(bottleneck)
        for projector, attractor, feature in zip(self.projectors, self.attractors, stage_features):
            stage_embedding = projector(to_pixels(feature))
            state, centers = attractor(stage_embedding, state, embedding)
            embedding = stage_embedding
        return centers, embedding

    def forward(self, bottleneck: Tensor, stage_features: Sequence[Tensor], last_feature: Tensor,
                rel_depth: Tensor, out_size: tuple[int, int] | None = None, depth_only: bool = False,
                confidence: bool = False) -> BinsOutput:
        """Bins at ``last_feature``'s resolution, or resized to ``out_size`` with :func:`resize_bins`.

        Args:
            bottleneck: ``[B, bottleneck_channels, h0, w0]``.
            stage_features: ``[B, stage_channels[i], h_i, w_i]``, coarse to fine.
            last_feature: ``[B, last_channels, H, W]``.
            rel_depth: relative depth ``[B, 1, h, w]`` or ``[B, h, w]`` (resized to ``H x W``).
            out_size: optional output ``(height, width)``.
            depth_only: return ``D`` alone (``centers`` and ``probs`` None), e.g. for deployment. On CPU without
                autograd, ``P`` and ``C`` are then computed band by band into a small scratch buffer and never written
                out at full resolution (``2 K`` channels per pixel). Not with ``out_size``: resizing needs them.
            confidence: also return ``1 - H(P) / log K`` per pixel (:func:`bin_confidence`). On the banded path it is
                computed per band from the band's ``P`` before ``P`` goes into ``D``, so with ``depth_only`` it adds
                one channel per pixel and no full-resolution ``P``; the whole-tensor path computes it from its
                full ``P``. With ``out_size`` it is computed from the resized ``P``.
        """
        if depth_only and out_size is not None:
            raise ValueError('depth_only=True cannot be combined with out_size: the exact resize needs centers and '
                             'probs; resize the full output with resize_bins instead')
        if rel_depth.ndim == 3:
            rel_depth = rel_depth.unsqueeze(1)
        size = last_feature.shape[-2:]
        rel = resize_channels(rel_depth, size).to(last_feature.dtype)
        factor = int(self.downsample)
        if factor != 1:
            if not depth_only:
                raise ValueError(f'MetricBins.downsample = {factor} computes depth (and confidence) only; call with '
                                 f'depth_only=True, or set_bins_downsample(model, 1) for centers and probs')
            last_feature, rel = (F.avg_pool2d(t, factor, ceil_mode=True, count_include_pad=False)
                                 for t in (last_feature, rel))
        full, size = size, last_feature.shape[-2:]
        # The banded path trades many small operations for cache residency: right for CPUs, while on an
        # accelerator each of those operations is a kernel launch, so there the whole-tensor path runs.
        if torch.is_grad_enabled() or last_feature.device.type != 'cpu' or not self.banded_inference:
            centers, embedding = self.coarse_bins(bottleneck, stage_features)
            probs = self.conditional_log_binomial(to_pixels(torch.cat([last_feature, rel], dim=1)), embedding)
            centers = resize_pixels(centers, size)
            depth = (probs * centers).sum(dim=-1, keepdim=True)
            conf = bin_confidence(probs, dim=-1) if confidence and out_size is None else None
            if depth_only:
                probs = centers = None
        else:
            self._check_stages(stage_features)
            with torch.autocast(device_type=last_feature.device.type, enabled=False):
                probs, centers, depth, conf = banded_bins(self, bottleneck, stage_features, last_feature, rel,
                                                          depth_only, confidence and out_size is None)
        out = BinsOutput(centers=None if centers is None else to_channels(centers),
                         probs=None if probs is None else to_channels(probs), depth=to_channels(depth),
                         confidence=None if conf is None else to_channels(conf))
        if factor != 1:
            out.depth = _upsample(out.depth, factor, full)
            out.confidence = None if out.confidence is None else _upsample(out.confidence, factor, full)
        if out_size is not None:
            out = resize_bins(out, out_size)
            if confidence:
                out.confidence = bin_confidence(out.probs, dim=1)
        return out


def _upsample(x: Tensor, factor: int, size: Sequence[int]) -> Tensor:
    """The inverse grid of ``avg_pool2d(factor, ceil_mode=True)``: bilinear by ``factor`` (half-pixel centers, so
    each pooled value sits at the center of the pixels it averaged), cropped to ``size``."""
    up = F.interpolate(x, scale_factor=float(factor), mode='bilinear', align_corners=False)
    return up[..., :int(size[0]), :int(size[1])]


def set_bins_downsample(model: nn.Module, factor: int) -> nn.Module:
    """Make every MetricBins head in ``model`` compute depth at ``1 / factor`` of its resolution and upsample it (see
    :class:`MetricBins`); ``factor`` 1 restores the full-resolution head. Returns ``model``.

    Raises:
        ValueError: ``factor`` not in :data:`BINS_DOWNSAMPLES`, or (factor > 1) a model without a MetricBins head.
    """
    if isinstance(factor, bool) or not isinstance(factor, int) or factor not in BINS_DOWNSAMPLES:
        raise ValueError(f'bins_downsample must be one of {list(BINS_DOWNSAMPLES)} (1 = the full-resolution head), '
                         f'got {factor!r}')
    heads = [m for m in model.modules() if isinstance(m, MetricBins)]
    if not heads and factor != 1:
        raise ValueError(f'bins_downsample {factor}: the model has no MetricBins head (a plain student, or an '
                         f'AdaBins / LocalBins head); leave bins_downsample at 1')
    for head in heads:
        head.downsample = factor
    return model
