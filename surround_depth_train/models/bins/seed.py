"""Seed bins and embeddings: the first bin centers, regressed from the decoder bottleneck (ZoeDepth style).

Both layers are per-pixel MLPs at the bottleneck's (lowest) resolution; tensors are channels-last
``[B, H, W, C]`` (see ``pixelwise``).
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from surround_depth_train.models.bins.pixelwise import full_precision, pixel_mlp

__all__ = ['Projector', 'SeedBinRegressor']

WIDTH_EPS = 1e-3  # added to the ReLU widths before normalising, so no bin has zero width


class Projector(nn.Module):
    """Bin embedding of a feature map: ``e = W2 relu(W1 x + b1) + b2`` per pixel.

    Args:
        in_channels: channels of the feature map.
        out_channels: embedding dimension.
        hidden: hidden width of the MLP (128 in ZoeDepth).
    """

    def __init__(self, in_channels: int, out_channels: int, hidden: int = 128):
        super().__init__()
        self._net = nn.Sequential(
            nn.Conv2d(in_channels, hidden, 1),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, out_channels, 1),
        )

    def forward(self, x: Tensor) -> Tensor:
        """``[B, H, W, in]`` -> ``[B, H, W, out]``."""
        return pixel_mlp(x, self._net)


class SeedBinRegressor(nn.Module):
    """Per-pixel seed bin centers from the bottleneck feature.

    ``normed`` (bounded centers): ``w = relu(mlp(x)) + 1e-3``, widths ``w_k (max - min) / sum_j w_j``, edges
    ``e_0 = min``, ``e_{k+1} = e_k + width_k`` and centers ``c_k = (e_k + e_{k+1}) / 2``, so the centers are
    increasing and inside ``[min, max]``.

    ``softplus`` (unbounded centers): ``c = softplus(mlp(x))``; ``min``/``max`` are unused.

    The MLP is ``conv1x1(in, hidden) -> ReLU -> conv1x1(hidden, n_bins)`` followed by the activation, with
    ZoeDepth's parameter names (``_net.0``, ``_net.2``).
    """

    def __init__(self, in_channels: int, n_bins: int, *, hidden: int = 256, min_depth: float = 1e-3,
                 max_depth: float = 80.0, normed: bool = False):
        super().__init__()
        self.normed = normed
        self.min_depth = float(min_depth)
        self.max_depth = float(max_depth)
        self._net = nn.Sequential(
            nn.Conv2d(in_channels, hidden, 1),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, n_bins, 1),
            nn.ReLU(inplace=True) if normed else nn.Softplus(),
        )
        if not normed:
            self._init_spanning_centers()

    def _init_spanning_centers(self) -> None:
        """Start the ``softplus`` centers spread over the depth range instead of all near ``softplus(0) = 0.69 m``.

        The output bias is set so that the untrained centers are geometrically spaced from ``max(min, max / 100)`` to
        ``max`` (0.8-80 m for the default range; the middle bin at one tenth of ``max``). Trained from scratch, the
        head otherwise spends its first few hundred steps growing every center from 0.7 m to street scale at the
        optimiser's step size (measured on SurroundSim, Monodepth2 + MB, 192 steps: validation AbsRel 0.62 after 48
        steps vs 0.34 for the plain decoder); pretrained checkpoints overwrite it.
        """
        n_bins = self._net[2].out_channels
        low = max(self.min_depth, self.max_depth / 100.0)
        centers = torch.logspace(math.log10(low), math.log10(self.max_depth), n_bins, dtype=torch.float64)
        inverse_softplus = centers + torch.log(-torch.expm1(-centers))
        with torch.no_grad():
            self._net[2].bias.copy_(inverse_softplus.to(self._net[2].bias.dtype))

    def forward(self, x: Tensor) -> Tensor:
        """``[B, H, W, in]`` -> bin centers ``[B, H, W, n_bins]`` in metres (at least float32)."""
        out = full_precision(pixel_mlp(x, self._net))
        if not self.normed:
            return out
        widths = out + WIDTH_EPS
        widths = widths / widths.sum(dim=-1, keepdim=True) * (self.max_depth - self.min_depth)
        # c_k = min + sum_{j<=k} width_j - width_k / 2: the midpoint of edges e_k, e_{k+1}.
        return self.min_depth + torch.cumsum(widths, dim=-1) - 0.5 * widths
