"""LocalBins' decoder block: upsample, join the encoder's skip feature, two 3x3 conv + BatchNorm + LeakyReLU.

LocalBins (Bhat et al., ECCV 2022) runs its bins on a U-Net decoder of its own. Each of its four blocks takes the
coarser decoder feature ``x`` and the encoder feature ``s`` of the next finer stride:

    u = resize(x, size(s))                                     bilinear, align_corners=True
    y = lrelu(bn(conv3x3(lrelu(bn(conv3x3([u; s]))))))         [u; s]: channel concatenation

With a bottleneck of ``F`` channels the blocks output ``F/2, F/4, F/8, F/16`` channels at strides 16, 8, 4, 2
(LocalBins' widths). Parameters of one block: ``9 c_in c_out + c_out`` and ``9 c_out^2 + c_out`` for the
convolutions, ``2 c_out`` for each BatchNorm (its running statistics are buffers, not parameters).
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from surround_depth_train.models.bins.pixelwise import resize_channels

__all__ = ['UpsampleBlock']


class UpsampleBlock(nn.Module):
    """One LocalBins decoder block (module docstring).

    Args:
        in_channels: channels of the coarser decoder feature ``x``.
        skip_channels: channels of the encoder feature ``s`` it is joined with.
        out_channels: channels of the output.
    """

    def __init__(self, in_channels: int, skip_channels: int, out_channels: int):
        super().__init__()
        self._net = nn.Sequential(
            nn.Conv2d(in_channels + skip_channels, out_channels, 3, padding=1),
            nn.BatchNorm2d(out_channels),
            nn.LeakyReLU(),
            nn.Conv2d(out_channels, out_channels, 3, padding=1),
            nn.BatchNorm2d(out_channels),
            nn.LeakyReLU(),
        )

    def forward(self, x: Tensor, skip: Tensor) -> Tensor:
        """``x`` ``[B, in, h, w]`` and ``skip`` ``[B, skip, H, W]`` -> ``[B, out, H, W]``."""
        return self._net(torch.cat([resize_channels(x, skip.shape[-2:]).to(skip.dtype), skip], dim=1))
