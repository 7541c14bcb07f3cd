"""DPT decoder of Depth Anything v1: four ViT token maps -> a relative depth map and the taps the bin head reads.

For token maps ``t_1..t_4`` (last four blocks, ``[B, n_h n_w, C]``) on an ``n_h x n_w`` patch grid:

1. reassemble: ``l_i = resize_i(project_i(t_i))`` with 1x1 ``project_i: C -> out_channels[i]`` and ``resize_i`` =
   4x transposed conv, 2x transposed conv, identity, stride-2 3x3 conv (grids 4n, 2n, n, n/2);
2. ``r_i = layer{i}_rn(l_i)``: 3x3 conv to ``features`` channels, no bias;
3. fusion, coarse to fine: ``p_4 = refinenet4(r_4)``, ``p_3 = refinenet3(p_4, r_3)``, ``p_2 = refinenet2(p_3, r_2)``,
   ``p_1 = refinenet1(p_2, r_1)``; each block is ``out_conv(up(rcu2(a + rcu1(b))))`` with
   ``rcu(x) = x + conv2(relu(conv1(relu(x))))`` and ``up`` bilinear (``align_corners=True``) to the next tap's
   size (2x for refinenet1);
4. head: ``output_conv1`` (3x3, ``features -> features / 2``), bilinear to ``(14 n_h, 14 n_w)``, then
   ``output_conv2`` = 3x3 conv to 32, ReLU, 1x1 conv to 1, ReLU.

ZoeDepth's core (metric_depth/zoedepth/models/base_models/depth_anything.py) hooks: ``out_conv`` = the 32-channel
activation after ``output_conv2``'s first conv + ReLU; the bottleneck = ``layer4_rn``'s output ``r_4`` (not a
refinenet); the stage features = ``p_4, p_3, p_2, p_1`` in that order. Module names match the official ones
(``projects``, ``resize_layers``, ``scratch.layer1_rn``, ``scratch.refinenet1.resConfUnit1`` ...) so checkpoint keys
map unchanged.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

from torch import Tensor, nn
from torch.nn import functional as F

__all__ = ['ResidualConvUnit', 'FeatureFusionBlock', 'DPTHead', 'DPTOutput', 'OUT_CONV_CHANNELS']

OUT_CONV_CHANNELS = 32  # width of the last decoder activation (ZoeDepth's N_MIDAS_OUT)


def _upsample(x: Tensor, size: Sequence[int]) -> Tensor:
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=tuple(size), mode='bilinear', align_corners=True)


class ResidualConvUnit(nn.Module):
    """``x + conv2(relu(conv1(relu(x))))`` with 3x3 convolutions (no batch norm, as in Depth Anything)."""

    def __init__(self, features: int):
        super().__init__()
        self.conv1 = nn.Conv2d(features, features, 3, padding=1)
        self.conv2 = nn.Conv2d(features, features, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.conv2(F.relu(self.conv1(F.relu(x))))


class FeatureFusionBlock(nn.Module):
    """``out_conv(up(rcu2(path + rcu1(skip))))``; the coarsest block has no skip input (its rcu1 is unused)."""

    def __init__(self, features: int):
        super().__init__()
        self.out_conv = nn.Conv2d(features, features, 1)
        self.resConfUnit1 = ResidualConvUnit(features)  # noqa: N815 (official checkpoint name)
        self.resConfUnit2 = ResidualConvUnit(features)  # noqa: N815

    def forward(self, path: Tensor, skip: Tensor | None = None, size: Sequence[int] | None = None) -> Tensor:
        if skip is not None:
            path = path + self.resConfUnit1(skip)
        path = self.resConfUnit2(path)
        size = size if size is not None else (2 * path.shape[-2], 2 * path.shape[-1])
        return self.out_conv(_upsample(path, size))


@dataclass
class DPTOutput:
    """What the DPT decoder hands on.

    Attributes:
        rel_depth: ``[B, 1, 14 n_h, 14 n_w]`` relative (disparity-like) depth, non-negative.
        out_conv: ``[B, 32, 14 n_h, 14 n_w]`` last activation before the relative-depth conv.
        bottleneck: ``[B, features, n_h/2, n_w/2]`` output of ``scratch.layer4_rn``.
        paths: refinenet4..1 outputs, coarse to fine (``[B, features, ...]`` on grids n, 2n, 4n, 8n).
    """

    rel_depth: Tensor
    out_conv: Tensor
    bottleneck: Tensor
    paths: list[Tensor] = field(default_factory=list)


class DPTHead(nn.Module):
    """The Depth Anything v1 DPT decoder (``use_clstoken=False``, no batch norm).

    Args:
        in_channels: ViT token width.
        features: fusion width (64 ViT-S, 128 ViT-B, 256 ViT-L).
        out_channels: reassemble widths of the four taps ([48, 96, 192, 384], [96, 192, 384, 768],
            [256, 512, 1024, 1024]).
        patch_size: ViT patch size; the head upsamples to ``patch_size`` times the patch grid.
    """

    def __init__(self, in_channels: int, features: int, out_channels: Sequence[int], patch_size: int = 14):
        super().__init__()
        if len(out_channels) != 4:
            raise ValueError(f'DPT needs four out_channels, got {list(out_channels)}')
        if features % 2:
            raise ValueError(f'features must be even (output_conv1 halves it), got {features}')
        self.patch_size = patch_size
        c1, c2, c3, c4 = out_channels
        self.projects = nn.ModuleList(nn.Conv2d(in_channels, c, 1) for c in out_channels)
        self.resize_layers = nn.ModuleList([
            nn.ConvTranspose2d(c1, c1, kernel_size=4, stride=4),
            nn.ConvTranspose2d(c2, c2, kernel_size=2, stride=2),
            nn.Identity(),
            nn.Conv2d(c4, c4, kernel_size=3, stride=2, padding=1),
        ])
        self.scratch = nn.Module()
        for i, c in enumerate(out_channels, start=1):
            setattr(self.scratch, f'layer{i}_rn', nn.Conv2d(c, features, 3, padding=1, bias=False))
        for i in range(1, 5):
            setattr(self.scratch, f'refinenet{i}', FeatureFusionBlock(features))
        self.scratch.output_conv1 = nn.Conv2d(features, features // 2, 3, padding=1)
        self.scratch.output_conv2 = nn.Sequential(
            nn.Conv2d(features // 2, OUT_CONV_CHANNELS, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(OUT_CONV_CHANNELS, 1, 1),
            nn.ReLU(),
        )

    def forward(self, tokens: Sequence[Tensor], n_h: int, n_w: int) -> DPTOutput:
        """Decode four ``[B, n_h n_w, C]`` token maps (shallow to deep)."""
        if len(tokens) != 4:
            raise ValueError(f'DPT needs four token maps, got {len(tokens)}')
        layers = []
        for t, project, resize in zip(tokens, self.projects, self.resize_layers):
            x = t.transpose(1, 2).reshape(t.shape[0], t.shape[-1], n_h, n_w)
            layers.append(resize(project(x)))
        s = self.scratch
        r1, r2, r3, r4 = (s.layer1_rn(layers[0]), s.layer2_rn(layers[1]), s.layer3_rn(layers[2]),
                          s.layer4_rn(layers[3]))
        p4 = s.refinenet4(r4, size=r3.shape[-2:])
        p3 = s.refinenet3(p4, r3, size=r2.shape[-2:])
        p2 = s.refinenet2(p3, r2, size=r1.shape[-2:])
        p1 = s.refinenet1(p2, r1)
        x = _upsample(s.output_conv1(p1), (n_h * self.patch_size, n_w * self.patch_size))
        conv, relu1, out, relu2 = s.output_conv2
        out_conv = relu1(conv(x))
        rel_depth = relu2(out(out_conv))
        return DPTOutput(rel_depth=rel_depth, out_conv=out_conv, bottleneck=r4, paths=[p4, p3, p2, p1])
