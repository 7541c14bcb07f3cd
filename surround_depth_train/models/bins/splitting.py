"""LocalBins' bins per pixel: seed widths at the bottleneck, every bin split in two at each decoder stage.

Bins are kept as normalised widths ``w`` (``[B, K, h, w]``, positive, summing to one over ``K`` at every pixel);
centers follow from them only at the end (:func:`~surround_depth_train.models.bins.adabins.adaptive_bin_centers`:
edges ``min + (max - min) cumsum(w)``, centers the midpoints, so they are sorted and inside ``[min, max]``).

Seed (at the bottleneck ``x``, ``K_0`` bins):

    w = relu(W2 gelu(W1 x + b1) + b2) + eps,   w = w / sum_k w_k

Split (at a decoder stage with bin embedding ``e``, the previous stage's embedding ``e'`` and widths ``w'``):

    s = relu(mlp(e + resize(e'))) + eps              [B, K', 2, h, w]: two fractions for each of the K' bins
    s = s / (s_0 + s_1)                              per bin: the fractions of its two halves
    w = (resize(w') / sum resize(w'))[:, k] * s[:, k, j]    ->  2 K' bins, ordered (k, j)

so the two halves of a bin stay adjacent, each bin keeps its total width, and the widths still sum to one. The
``mlp`` is 1x1 conv -> GELU -> 1x1 conv; resizes are bilinear with ``align_corners=True``; ``eps = 1e-3``.
LocalBins' widths: seed MLP hidden 256, splitter MLP hidden 128, embedding 128.
"""
from __future__ import annotations

from torch import Tensor, nn
from torch.nn import functional as F

from surround_depth_train.models.bins.pixelwise import resize_channels

__all__ = ['SeedWidths', 'BinSplitter', 'gelu_mlp', 'WIDTH_EPS']

WIDTH_EPS = 1e-3  # added to the ReLU outputs before normalising, so no bin and no half of a bin has zero width


def gelu_mlp(in_channels: int, hidden: int, out_channels: int) -> nn.Sequential:
    """The per-pixel MLP LocalBins uses everywhere: 1x1 conv -> GELU -> 1x1 conv."""
    return nn.Sequential(nn.Conv2d(in_channels, hidden, 1), nn.GELU(), nn.Conv2d(hidden, out_channels, 1))


def _normalised(w: Tensor, dim: int = 1) -> Tensor:
    return w / w.sum(dim=dim, keepdim=True)


class SeedWidths(nn.Module):
    """The seed bins: ``K_0`` normalised widths per pixel of the bottleneck (module docstring).

    Args:
        in_channels: channels of the (``conv2``-projected) bottleneck.
        n_bins: ``K_0``.
        hidden: hidden width of the MLP (256 in LocalBins).
    """

    def __init__(self, in_channels: int, n_bins: int, hidden: int = 256):
        super().__init__()
        self._net = gelu_mlp(in_channels, hidden, n_bins)

    def forward(self, x: Tensor) -> Tensor:
        """``[B, C, h, w]`` -> widths ``[B, K_0, h, w]`` in fp32, summing to one over ``K_0``."""
        return _normalised(F.relu(self._net(x).float()) + WIDTH_EPS)


class BinSplitter(nn.Module):
    """Splits each of ``n_prev`` bins in two, with fractions predicted from the bin embedding (module docstring).

    Args:
        embedding_dim: ``E``.
        n_prev: bins before the split (``2 n_prev`` after it).
        hidden: hidden width of the MLP (128 in LocalBins).
    """

    split = 2

    def __init__(self, embedding_dim: int, n_prev: int, hidden: int = 128):
        super().__init__()
        self.n_prev = int(n_prev)
        self._net = gelu_mlp(embedding_dim, hidden, self.n_prev * self.split)

    def forward(self, embedding: Tensor, prev_embedding: Tensor, prev_widths: Tensor) -> Tensor:
        """``embedding`` ``[B, E, h, w]``, the previous stage's ``prev_embedding`` ``[B, E, h', w']`` and
        ``prev_widths`` ``[B, n_prev, h', w']`` -> widths ``[B, 2 n_prev, h, w]`` (fp32, summing to one)."""
        b, _, h, w = embedding.shape
        x = embedding + resize_channels(prev_embedding, (h, w)).to(embedding.dtype)
        s = (F.relu(self._net(x).float()) + WIDTH_EPS).view(b, self.n_prev, self.split, h, w)
        prev = _normalised(resize_channels(prev_widths, (h, w)))
        return (prev.unsqueeze(2) * _normalised(s, dim=2)).flatten(1, 2)
