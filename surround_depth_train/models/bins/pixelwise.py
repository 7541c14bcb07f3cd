"""Per-pixel tensors in channels-last ("pixel-major") layout, ``[B, H, W, C]``.

The bins head is a stack of per-pixel MLPs (ZoeDepth writes them as 1x1 convolutions) and per-pixel operations over
the ``K`` bins (attractors, softmax, expectation). With channels last, each 1x1 convolution is one GEMM over
``B*H*W`` rows, and the operations over bins run along the contiguous axis; on CPU this is several times faster
than NCHW 1x1 convolutions with few input channels and than reductions over a strided channel axis. The
``nn.Conv2d`` modules (and so ZoeDepth's parameter names) are kept; only their weights are used as matrices.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F

__all__ = ['to_pixels', 'to_channels', 'resize_pixels', 'resize_channels', 'pixel_mlp', 'pointwise', 'full_precision',
           'BandResampler']


def to_pixels(x: Tensor) -> Tensor:
    """``[B, C, H, W]`` -> contiguous ``[B, H, W, C]`` (a view when ``x`` is already channels-last)."""
    return x.permute(0, 2, 3, 1).contiguous()


def to_channels(x: Tensor) -> Tensor:
    """``[B, H, W, C]`` -> ``[B, C, H, W]`` view with channels-last strides (no copy)."""
    return x.permute(0, 3, 1, 2)


def resize_channels(x: Tensor, size: tuple[int, int] | torch.Size) -> Tensor:
    """Bilinear resize of ``[B, C, H, W]`` with ``align_corners=True`` (ZoeDepth's choice); identity at equal size."""
    size = (int(size[0]), int(size[1]))
    if tuple(x.shape[-2:]) == size:
        return x
    return F.interpolate(x, size=size, mode='bilinear', align_corners=True)


def resize_pixels(x: Tensor, size: tuple[int, int] | torch.Size) -> Tensor:
    """:func:`resize_channels` for ``[B, H, W, C]`` tensors (stays channels-last)."""
    size = (int(size[0]), int(size[1]))
    if tuple(x.shape[1:3]) == size:
        return x
    return resize_channels(to_channels(x), size).permute(0, 2, 3, 1)


def pixel_mlp(x: Tensor, net: nn.Sequential) -> Tensor:
    """Apply a ``Sequential`` of 1x1 ``Conv2d`` and elementwise layers to ``[B, H, W, C]``."""
    for layer in net:
        if isinstance(layer, nn.Conv2d):
            x = F.linear(x, layer.weight.flatten(1), layer.bias)
        else:
            x = layer(x)
    return x


def pointwise(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """A 1x1 convolution of one contiguous channels-last image or band ``[h, w, C_in]`` -> ``[h, w, C_out]``
    (``weight`` ``[C_out, C_in, 1, 1]``).

    The products of ``F.linear`` over the pixels, run by the convolution backend instead of BLAS: oneDNN's
    channels-last 1x1 convolution measured 2-2.5x the throughput of ``F.linear``'s GEMM on this project's CPUs
    (MKL, which ``F.linear`` uses, takes its AVX2 path on AMD processors; ``bench.models`` shows it).
    """
    return F.conv2d(to_channels(x[None]), weight, bias).permute(0, 2, 3, 1)[0].contiguous()


def full_precision(x: Tensor) -> Tensor:
    """``x`` in float32 unless it is float64 already: bins are kept out of reduced precision (autocast)."""
    return x if x.dtype in (torch.float32, torch.float64) else x.float()


class BandResampler:
    """:func:`resize_pixels` of one image ``[h, w, C]``, evaluated one band of output rows at a time (for
    cache-resident, fused passes).

    Bilinear with ``align_corners=True``: output row ``y`` reads input rows ``floor(s y)`` and the next one with
    weight ``s y - floor(s y)``, ``s = (h - 1) / (H - 1)`` (likewise for columns), the same source positions and
    weights as ``F.interpolate``. Rows are interpolated first, at the source width: the band's two source rows per
    output row are gathered into two reused buffers and blended by one ``lerp``. Then columns, by the native
    channels-last bilinear kernel writing straight into the output; that kernel keeps the row count, which makes it
    an exact identity along rows.
    """

    def __init__(self, src: Tensor, size: tuple[int, int]):
        if src.ndim != 3:
            raise ValueError(f'BandResampler takes one channels-last image [h, w, C], got shape {tuple(src.shape)}')
        self.src = src
        self.size = (int(size[0]), int(size[1]))
        self.identity = tuple(src.shape[:2]) == self.size
        self.same_width = src.shape[1] == self.size[1]
        taps_dtype = torch.float64 if src.dtype == torch.float64 else torch.float32
        self.first, self.second, weight = self._taps(src.shape[0], self.size[0], taps_dtype)
        self.weight = weight.to(src.dtype)[:, None, None]
        self._rows: tuple[Tensor, Tensor] | None = None  # gathered source rows, reused from band to band

    @staticmethod
    def _taps(n_in: int, n_out: int, dtype: torch.dtype) -> tuple[Tensor, Tensor, Tensor]:
        # Positions in the source's precision, as F.interpolate computes them.
        scale = (n_in - 1) / (n_out - 1) if n_out > 1 else 0.0
        real = torch.tensor(scale, dtype=dtype) * torch.arange(n_out, dtype=dtype)
        first = real.long()
        second = first + (first < n_in - 1).long()
        return first, second, (real - first).clamp(0.0, 1.0)

    def band(self, y0: int, y1: int, out: Tensor | None = None) -> Tensor:
        """Output rows ``[y0, y1)``: ``[y1 - y0, W, C]`` (written to ``out`` if given)."""
        src = self.src
        if self.identity:
            return src[y0:y1] if out is None else out.copy_(src[y0:y1])
        rows, channels = y1 - y0, src.shape[-1]
        target = out if out is not None and out.is_contiguous() else src.new_empty(rows, self.size[1], channels)
        if self._rows is None or self._rows[0].shape[0] < rows:
            self._rows = (src.new_empty(rows, src.shape[1], channels), src.new_empty(rows, src.shape[1], channels))
        upper, lower = self._rows[0][:rows], self._rows[1][:rows]
        torch.index_select(src, 0, self.first[y0:y1], out=upper)
        torch.index_select(src, 0, self.second[y0:y1], out=lower)
        if self.same_width:
            torch.lerp(upper, lower, self.weight[y0:y1], out=target)
        else:
            torch.lerp(upper, lower, self.weight[y0:y1], out=upper)
            torch.ops.aten.upsample_bilinear2d.out(to_channels(upper[None]), [rows, self.size[1]], True,
                                                   out=to_channels(target[None]))
        if out is not None and target is not out:
            out.copy_(target)
        return target if out is None else out
