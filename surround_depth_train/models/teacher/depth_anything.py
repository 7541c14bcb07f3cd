"""Depth Anything v1 metric teacher: DINOv2 ViT + DPT decoder + the shared MetricBins head (ZoeDepth style).

    x  = normalise(resize_14(images))                 ImageNet mean/std, sides multiples of 14
    t  = vit.get_intermediate_layers(x, 4)            last four blocks
    d  = dpt(t)                                       rel_depth, out_conv, bottleneck (layer4_rn), refinenet4..1
    B  = bins(d.bottleneck, [r4, r3, r2, r1], d.out_conv, d.rel_depth)    at the network resolution
    out = resize_bins(B, input size)                  so depth == sum(probs * centers) at the input resolution

The relative depth enters the head raw (ZoeDepth's ``inverse_midas=False``): no inversion, no normalisation.
Official metric checkpoints are ViT-L (``features=256``); the ViT-S/B variants use the relative models' DPT widths
and a head that starts fresh. ``tiny`` is a test stand-in (4 blocks of width 64), not a Depth Anything model.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from surround_depth_train.models.bins import BinsOutput, MetricBins, bin_confidence, resize_bins
from surround_depth_train.models.output import DepthOutput
from surround_depth_train.models.teacher.dinov2 import DinoVisionTransformer
from surround_depth_train.models.teacher.dpt import OUT_CONV_CHANNELS, DPTHead, DPTOutput

__all__ = ['EncoderSpec', 'ENCODERS', 'DepthAnythingMetric', 'network_size', 'IMAGENET_MEAN', 'IMAGENET_STD',
           'PATCH_SIZE', 'OFFICIAL_ATTRACTOR_ALPHA']

PATCH_SIZE = 14
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
N_TAPS = 4  # the DPT reads the last four transformer blocks
# ZoeDepth's attractor layers call ``inv_attractor(dx)`` without passing their configured alpha (1000 in the
# Depth Anything configs), so the function default alpha = 300 (and gamma = 2) is what the official checkpoints
# were trained and run with. Using 1000 here changes the bin centers of an official checkpoint.
OFFICIAL_ATTRACTOR_ALPHA = 300.0


@dataclass(frozen=True)
class EncoderSpec:
    """Widths of one ViT + DPT variant (``num_heads`` is not stored in checkpoints; the rest is)."""

    embed_dim: int
    depth: int
    num_heads: int
    features: int
    out_channels: tuple[int, int, int, int]

    def describe(self) -> str:
        return (f'embed_dim {self.embed_dim}, {self.depth} blocks, DPT features {self.features}, '
                f'out_channels {list(self.out_channels)}')


ENCODERS: dict[str, EncoderSpec] = {
    'vits': EncoderSpec(384, 12, 6, 64, (48, 96, 192, 384)),
    'vitb': EncoderSpec(768, 12, 12, 128, (96, 192, 384, 768)),
    'vitl': EncoderSpec(1024, 24, 16, 256, (256, 512, 1024, 1024)),
    'tiny': EncoderSpec(64, 4, 2, 32, (16, 32, 64, 64)),  # test stand-in only
}


def _round_to_patch(x: float) -> int:
    # np.round semantics (half to even), as the official Resize transform's constrain_to_multiple_of.
    return max(PATCH_SIZE, int(round(x / PATCH_SIZE)) * PATCH_SIZE)


def network_size(height: int, width: int, input_size: int | Sequence[int] | None) -> tuple[int, int]:
    """The resolution the network runs at, both sides multiples of 14.

    Args:
        height, width: input image size.
        input_size: ``int`` = short side (aspect kept, e.g. 518); ``(h, w)`` = that size (each rounded to a
            multiple of 14, like the official ``keep_aspect_ratio=False`` resize); ``None`` = the input size
            rounded to multiples of 14.
    """
    if input_size is None:
        return _round_to_patch(height), _round_to_patch(width)
    if isinstance(input_size, int):
        scale = input_size / min(height, width)
        return _round_to_patch(height * scale), _round_to_patch(width * scale)
    h, w = (int(s) for s in input_size)
    return _round_to_patch(h), _round_to_patch(w)


def _check_input_size(input_size: int | Sequence[int] | None) -> int | tuple[int, int] | None:
    if input_size is None:
        return None
    if isinstance(input_size, int):
        if input_size < PATCH_SIZE:
            raise ValueError(f'input_size (short side) must be at least {PATCH_SIZE}, got {input_size}')
        return input_size
    sizes = tuple(int(s) for s in input_size)
    if len(sizes) != 2 or min(sizes) < PATCH_SIZE:
        raise ValueError(f'input_size must be an int short side, a (height, width) pair of at least {PATCH_SIZE} '
                         f'or None, got {input_size!r}')
    return sizes


class DepthAnythingMetric(nn.Module):
    """Depth Anything v1 metric depth model, taking ``[B, 3, H, W]`` RGB in ``[0, 1]``.

    State-dict names: ``pretrained.*`` (ViT), ``depth_head.*`` (DPT), ``bins.*`` (MetricBins); the official metric
    checkpoint's ``core.core.*`` and head keys map onto them by prefix (see ``checkpoints.py``).

    Args:
        encoder: ``'vits'``, ``'vitb'``, ``'vitl'``, ``'tiny'`` or an :class:`EncoderSpec`.
        min_depth, max_depth: metres (outdoor 1e-3 / 80, indoor 1e-3 / 10).
        input_size: network resolution, see :func:`network_size` (518 short side by default).
        pretrain_size: square image side of the stored position embedding (518).
        n_bins, bin_embedding_dim, bin_centers_type, n_attractors, attractor_alpha, attractor_gamma,
            attractor_kind, attractor_type, min_temp, max_temp: MetricBins options; the defaults are the values
            the official code computes with (``attractor_alpha`` 300, see ``OFFICIAL_ATTRACTOR_ALPHA``).
    """

    has_bins = True

    def __init__(self, *, encoder: str | EncoderSpec = 'vitl', min_depth: float = 1e-3, max_depth: float = 80.0,
                 input_size: int | Sequence[int] | None = 518, pretrain_size: int = 518, n_bins: int = 64,
                 bin_embedding_dim: int = 128, bin_centers_type: str = 'softplus',
                 n_attractors: Sequence[int] = (16, 8, 4, 1), attractor_alpha: float = OFFICIAL_ATTRACTOR_ALPHA,
                 attractor_gamma: float = 2.0, attractor_kind: str = 'mean', attractor_type: str = 'inv',
                 min_temp: float = 0.0212, max_temp: float = 50.0):
        super().__init__()
        if isinstance(encoder, str):
            if encoder not in ENCODERS:
                raise ValueError(f'unknown encoder {encoder!r}; choose one of {sorted(ENCODERS)} or pass an '
                                 'EncoderSpec')
            self.encoder_name, spec = encoder, ENCODERS[encoder]
        else:
            self.encoder_name, spec = 'custom', encoder
        if spec.depth < N_TAPS:
            raise ValueError(f'the DPT reads the last {N_TAPS} blocks; the encoder has only {spec.depth}')
        self.spec = spec
        self.input_size = _check_input_size(input_size)
        self.min_depth = float(min_depth)
        self.max_depth = float(max_depth)
        self.pretrained = DinoVisionTransformer(embed_dim=spec.embed_dim, depth=spec.depth,
                                                num_heads=spec.num_heads, patch_size=PATCH_SIZE,
                                                pretrain_size=pretrain_size)
        self.depth_head = DPTHead(spec.embed_dim, spec.features, spec.out_channels, patch_size=PATCH_SIZE)
        self.bins = MetricBins(bottleneck_channels=spec.features, stage_channels=[spec.features] * 4,
                               last_channels=OUT_CONV_CHANNELS, n_bins=n_bins, bin_embedding_dim=bin_embedding_dim,
                               min_depth=min_depth, max_depth=max_depth, bin_centers_type=bin_centers_type,
                               n_attractors=n_attractors, attractor_alpha=attractor_alpha,
                               attractor_gamma=attractor_gamma, attractor_kind=attractor_kind,
                               attractor_type=attractor_type, min_temp=min_temp, max_temp=max_temp)
        # Not persistent: official checkpoints do not carry them.
        self.register_buffer('mean', torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer('std', torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def prepare(self, images: Tensor) -> Tensor:
        """Resize to the network size (bilinear, ``align_corners=True``, as the official transform) and normalise."""
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f'expected RGB images [B, 3, H, W], got shape {tuple(images.shape)}')
        if not images.is_floating_point():
            raise TypeError(f'expected float RGB in [0, 1], got dtype {images.dtype}; convert with '
                            '`images.float() / 255`')
        size = network_size(images.shape[-2], images.shape[-1], self.input_size)
        if tuple(images.shape[-2:]) != size:
            images = F.interpolate(images, size=size, mode='bilinear', align_corners=True)
        return (images - self.mean.to(images.dtype)) / self.std.to(images.dtype)

    def forward_network(self, x: Tensor) -> tuple[BinsOutput, DPTOutput]:
        """Bins at the network resolution for a prepared (normalised, multiple-of-14) batch, plus the DPT taps."""
        n_h, n_w = x.shape[-2] // PATCH_SIZE, x.shape[-1] // PATCH_SIZE
        tokens = self.pretrained.get_intermediate_layers(x, N_TAPS)
        dpt = self.depth_head(tokens, n_h, n_w)
        bins = self.bins(dpt.bottleneck, dpt.paths, dpt.out_conv, dpt.rel_depth)
        return bins, dpt

    def forward(self, images: Tensor, depth_only: bool = False, confidence: bool = False) -> DepthOutput:
        """Metric depth, bin centers and probabilities at the input resolution; ``features`` = refinenet4..1.

        ``depth_only=True`` leaves ``centers`` and ``probs`` out of the result (the same interface as the students';
        they are still computed here, since the exact resize to the input resolution needs them).
        ``confidence=True`` adds ``1 - H(probs) / log K`` of the probabilities at the input resolution.
        """
        bins, dpt = self.forward_network(self.prepare(images))
        bins = resize_bins(bins, images.shape[-2:])
        conf = bin_confidence(bins.probs, dim=1) if confidence else None
        if depth_only:
            return DepthOutput(depth=bins.depth, features=list(dpt.paths), confidence=conf)
        return DepthOutput(depth=bins.depth, centers=bins.centers, probs=bins.probs, features=list(dpt.paths),
                           confidence=conf)
