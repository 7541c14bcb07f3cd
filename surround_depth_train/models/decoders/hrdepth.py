"""HR-Depth's nested decoder with feature fusion squeeze-excitation (fSE) (Lyu et al., AAAI 2021), and MonoViT's
version of it (Zhao et al., 3DV 2022), which first maps the MPViT features through channel-attention modules.

Nodes ``X_ij`` (row ``i`` = encoder level, column ``j``): ``X_i0`` are the encoder features. Node ``X_ij``
(``j >= 1``) combines ``up(conv0(X_{i+1, j-1}))`` with all ``X_ik, k < j`` of its row:

- on the diagonal ``i + j = 4`` (``X_31, X_22, X_13, X_04``) by fSE: concatenate, scale channels by
  ``sigmoid(W2 relu(W1 avgpool))`` (reduction 16), then ``relu(conv1x1)``;
- elsewhere by ``elu(conv3x3)`` (for ``j > 1`` after a bias-free 1x1 reduction to twice the row width).

The output is ``elu(conv3x3(up(elu(conv3x3(X_04)))))`` at the input size; disparities are ``sigmoid(conv3x3)``
of it (scale 0), ``X_04`` (1), ``X_13`` (2) and ``X_22`` (3). Stage features (coarse -> fine) are
``X_31, X_22, X_13, X_04`` and the output (256, 128, 64, 32, 16 channels for ResNet-18).

Module names follow the public code (``convs.X_10_Conv_0``, ``convs.X_31_attention``, ``convs.X_02_downsample``,
``convs.dispConvScale0`` / MonoViT's ``convs.dispconv0`` and ``convs.f1..f4``). As there, the reference builds
``X_0j_Conv_0`` for ``j = 0..3`` although no node uses them: ``keep_unused=True`` (default) keeps them so the
public checkpoints load strictly and parameter counts match the published ones.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn

from surround_depth_train.models.decoders.conv import Conv1x1, Conv3x3, ConvBlock, upsample_to
from surround_depth_train.models.decoders.monodepth2 import DecoderOutput

__all__ = ['HRDepthDecoder', 'FeatureFusionSE', 'ChannelAttentionConv', 'NODE_ORDER']

NODE_ORDER = ('01', '11', '21', '31', '02', '12', '22', '03', '13', '04')
DECODER_CHANNELS = (16, 32, 64, 128, 256)


class FeatureFusionSE(nn.Module):
    """fSE: ``relu(conv1x1(f * sigmoid(W2 relu(W1 mean_hw(f)))))``, ``f = [up(high); lows]``."""

    def __init__(self, high_channels: int, low_channels: int, out_channels: int | None = None,
                 reduction: int = 16):
        super().__init__()
        channels = int(high_channels + low_channels)
        self.fc = nn.Sequential(
            nn.Linear(channels, channels // reduction, bias=False),
            nn.ReLU(inplace=True),
            nn.Linear(channels // reduction, channels, bias=False),
        )
        self.conv_se = nn.Conv2d(channels, int(out_channels or high_channels), 1)

    def forward(self, high: Tensor, lows: list[Tensor]) -> Tensor:
        f = torch.cat([upsample_to(high, lows[0].shape[-2:])] + lows, dim=1)
        weights = torch.sigmoid(self.fc(f.mean(dim=(2, 3))))
        return torch.relu(self.conv_se(f * weights[:, :, None, None]))


class ChannelAttention(nn.Module):
    """``x * sigmoid(W2 relu(W1 mean_hw(x)))``."""

    def __init__(self, channels: int, reduction: int = 16):
        super().__init__()
        self.fc = nn.Sequential(
            nn.Linear(channels, channels // reduction, bias=False),
            nn.ReLU(inplace=True),
            nn.Linear(channels // reduction, channels, bias=False),
        )

    def forward(self, x: Tensor) -> Tensor:
        return x * torch.sigmoid(self.fc(x.mean(dim=(2, 3))))[:, :, None, None]


class ChannelAttentionConv(nn.Module):
    """MonoViT's input mapping: ``relu(conv3x3(channel_attention(x)))`` (zero padding)."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.ca = ChannelAttention(in_channels)
        self.conv_se = nn.Conv2d(in_channels, out_channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return torch.relu(self.conv_se(self.ca(x)))


class HRDepthDecoder(nn.Module):
    """HR-Depth decoder over five encoder levels (finest first).

    Args:
        encoder_channels: channels the nested decoder sees (``[64, 64, 128, 256, 512]`` for ResNet-18 and MonoViT).
        input_channels: raw encoder channels when they differ (MonoViT: ``[64, 128, 216, 288, 288]``): levels 1..4
            are then mapped by ``ChannelAttentionConv`` modules ``f1..f4`` (MonoViT).
        disp_name: format of the disparity head names (``'dispConvScale{}'`` HR-Depth, ``'dispconv{}'`` MonoViT).
        keep_unused: build the four convolutions the reference builds but never uses.
    """

    def __init__(self, encoder_channels: Sequence[int] = (64, 64, 128, 256, 512),
                 input_channels: Sequence[int] | None = None, disp_name: str = 'dispConvScale{}',
                 keep_unused: bool = True):
        super().__init__()
        enc = [int(c) for c in encoder_channels]
        if len(enc) != 5:
            raise ValueError(f'the HR-Depth decoder needs five encoder levels, got channels {enc}')
        dec = DECODER_CHANNELS
        self.encoder_channels = enc
        self.decoder_channels = list(dec)
        self.disp_name = disp_name
        self.convs = nn.ModuleDict()
        if input_channels is not None:
            raw = [int(c) for c in input_channels]
            if len(raw) != 5 or raw[0] != enc[0]:
                raise ValueError(f'input_channels {raw} must have five levels, the first equal to {enc[0]}')
            for k in range(4, 0, -1):
                self.convs[f'f{k}'] = ChannelAttentionConv(raw[k], enc[k])
        self.input_channels = input_channels
        for j in range(5):
            for i in range(5 - j):
                if i == 0 and j < 4 and not keep_unused:
                    continue
                c_in = enc[i] // 2 if (i == 0 and j != 0) else enc[i]
                self.convs[f'X_{i}{j}_Conv_0'] = ConvBlock(c_in, c_in // 2)
        self.convs['X_04_Conv_1'] = ConvBlock(enc[0] // 4, dec[0])
        for node in NODE_ORDER:
            row, col = int(node[0]), int(node[1])
            high = enc[row + 1] // 2
            lows = enc[row] + dec[row + 1] * (col - 1)
            if row + col == 4:
                self.convs[f'X_{node}_attention'] = FeatureFusionSE(high, lows)
            elif col == 1:
                self.convs[f'X_{row + 1}{col - 1}_Conv_1'] = ConvBlock(high + lows, dec[row + 1])
            else:
                self.convs[f'X_{node}_downsample'] = Conv1x1(high + lows, dec[row + 1] * 2)
                self.convs[f'X_{row + 1}{col - 1}_Conv_1'] = ConvBlock(dec[row + 1] * 2, dec[row + 1])
        for s in range(4):
            self.convs[disp_name.format(s)] = Conv3x3(dec[s], 1)

    @property
    def feature_channels(self) -> list[int]:
        """Channels of ``DecoderOutput.features``, coarse -> fine."""
        return [self.decoder_channels[4], self.decoder_channels[3], self.decoder_channels[2],
                self.decoder_channels[1], self.decoder_channels[0]]

    def forward(self, features: Sequence[Tensor], out_size: tuple[int, int], scales: Sequence[int] = (0,)
                ) -> DecoderOutput:
        feats = list(features)
        if self.input_channels is not None:
            feats = [feats[0]] + [self.convs[f'f{k}'](feats[k]) for k in range(1, 5)]
        nodes = {(i, 0): f for i, f in enumerate(feats)}
        for node in NODE_ORDER:
            row, col = int(node[0]), int(node[1])
            high = self.convs[f'X_{row + 1}{col - 1}_Conv_0'](nodes[(row + 1, col - 1)])
            lows = [nodes[(row, k)] for k in range(col)]
            if row + col == 4:
                nodes[(row, col)] = self.convs[f'X_{node}_attention'](high, lows)
                continue
            x = torch.cat([upsample_to(high, lows[0].shape[-2:])] + lows, dim=1)
            if col > 1:
                x = self.convs[f'X_{node}_downsample'](x)
            nodes[(row, col)] = self.convs[f'X_{row + 1}{col - 1}_Conv_1'](x)
        x = self.convs['X_04_Conv_0'](nodes[(0, 4)])
        x = self.convs['X_04_Conv_1'](upsample_to(x, out_size))
        taps = {0: x, 1: nodes[(0, 4)], 2: nodes[(1, 3)], 3: nodes[(2, 2)]}
        disps = {s: torch.sigmoid(self.convs[self.disp_name.format(s)](taps[s])) for s in scales}
        return DecoderOutput(features=[nodes[(3, 1)], nodes[(2, 2)], nodes[(1, 3)], nodes[(0, 4)], x],
                             disparities=disps)
