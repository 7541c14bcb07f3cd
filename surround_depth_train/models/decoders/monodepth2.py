"""Monodepth2's depth decoder (Godard et al., ICCV 2019).

For levels ``i = L-1 .. 0`` (coarse to fine): ``x = elu(conv3x3(x))``, nearest x2 upsampling (to the skip's size),
concatenation with encoder feature ``i-1`` (for ``i > 0``), ``x = elu(conv3x3(x))``. Decoder widths are
``[16, 32, 64, 128, 256]`` for the five ResNet levels; the last level is upsampled to the input size. A 3x3
convolution + sigmoid gives the disparity at scales 0..3; all four exist (and count as parameters, as in the
public checkpoints) but only the scales asked for are computed.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import Tensor, nn

from surround_depth_train.models.decoders.conv import Conv3x3, ConvBlock, upsample_to

__all__ = ['Monodepth2Decoder', 'DecoderOutput', 'default_decoder_channels']


@dataclass
class DecoderOutput:
    """Decoder stage outputs coarse -> fine (the last one at the input size) and sigmoid disparities per scale."""

    features: list[Tensor]
    disparities: dict[int, Tensor]


def default_decoder_channels(levels: int) -> tuple[int, ...]:
    """``16 * 2^i`` per level: Monodepth2's ``[16, 32, 64, 128, 256]`` for five levels."""
    return tuple(16 * 2 ** i for i in range(levels))


class Monodepth2Decoder(nn.Module):
    """Monodepth2 decoder over any feature pyramid (finest first).

    Args:
        encoder_channels: channels of the encoder features, finest first.
        decoder_channels: width of each decoder level (default ``16 * 2^i``).
        num_scales: disparity heads (``dispconv_0`` at full resolution ... ``dispconv_{n-1}``).
    """

    def __init__(self, encoder_channels: Sequence[int], decoder_channels: Sequence[int] | None = None,
                 num_scales: int = 4):
        super().__init__()
        enc = [int(c) for c in encoder_channels]
        levels = len(enc)
        dec = [int(c) for c in (decoder_channels or default_decoder_channels(levels))]
        if len(dec) != levels:
            raise ValueError(f'decoder_channels needs one width per encoder level ({levels}), got {dec}')
        self.encoder_channels = enc
        self.decoder_channels = dec
        self.convs = nn.ModuleDict()
        for i in range(levels - 1, -1, -1):
            self.convs[f'upconv_{i}_0'] = ConvBlock(enc[-1] if i == levels - 1 else dec[i + 1], dec[i])
            self.convs[f'upconv_{i}_1'] = ConvBlock(dec[i] + (enc[i - 1] if i > 0 else 0), dec[i])
        for s in range(min(num_scales, levels)):
            self.convs[f'dispconv_{s}'] = Conv3x3(dec[s], 1)

    @property
    def feature_channels(self) -> list[int]:
        """Channels of ``DecoderOutput.features``, coarse -> fine."""
        return self.decoder_channels[::-1]

    def forward(self, features: Sequence[Tensor], out_size: tuple[int, int], scales: Sequence[int] = (0,)
                ) -> DecoderOutput:
        levels = len(self.encoder_channels)
        x = features[-1]
        outs = []
        disps = {}
        for i in range(levels - 1, -1, -1):
            x = self.convs[f'upconv_{i}_0'](x)
            if i > 0:
                skip = features[i - 1]
                x = torch.cat([upsample_to(x, skip.shape[-2:]), skip], dim=1)
            else:
                x = upsample_to(x, out_size)
            x = self.convs[f'upconv_{i}_1'](x)
            outs.append(x)
            if i in scales:
                disps[i] = torch.sigmoid(self.convs[f'dispconv_{i}'](x))
        return DecoderOutput(features=outs, disparities=disps)
