"""Convolution blocks shared by the Monodepth2-family decoders.

Attribute names (``conv``, ``pad``, ``nonlin``) follow Monodepth2's layers so the public checkpoints map by name.

ELU at inference on the CPU: PyTorch's ELU kernel evaluates ``expm1`` element by element (about 5 ns per element on
two AVX-512 cores, fp32 and bf16 alike), and the decoder's full-resolution ELUs were a fifth of a Monodepth2 + MB
bf16 forward at 640 x 384. :func:`elu_inference_` computes the same function from vectorised ``exp`` and
clamps in place: 2.1x faster in fp32, 3.7x in bf16 (six 16-channel 640 x 384 maps), at most 1.2e-7 from
``F.elu`` in fp32 (``exp(x) - 1`` rounds near zero where ``expm1`` does not) and within bf16's own rounding in bf16.
Training (autograd), tracing for export (the graph keeps its ``Elu`` node) and accelerators use ``nn.ELU``.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F

__all__ = ['Conv3x3', 'ConvBlock', 'Conv1x1', 'upsample_to', 'disparity_to_depth', 'elu_inference_']


class Conv3x3(nn.Module):
    """Reflection-padded 3x3 convolution (keeps the size)."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.pad = nn.ReflectionPad2d(1)
        self.conv = nn.Conv2d(int(in_channels), int(out_channels), 3)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(self.pad(x))


class ConvBlock(nn.Module):
    """``elu(conv3x3(x))``."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv = Conv3x3(in_channels, out_channels)
        self.nonlin = nn.ELU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv(x)
        if torch.is_grad_enabled() or x.device.type != 'cpu' or torch.jit.is_tracing():
            return self.nonlin(x)
        return elu_inference_(x)


def elu_inference_(x: Tensor) -> Tensor:
    """``elu(x)`` (alpha 1) written into ``x``: ``max(x, 0) + exp(min(x, 0)) - 1`` (module docstring). Not for
    autograd (it overwrites its input)."""
    negative = x.clamp(max=0.0)
    negative.exp_().sub_(1.0)
    return x.clamp_(min=0.0).add_(negative)


class Conv1x1(nn.Module):
    """Bias-free 1x1 convolution."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv = nn.Conv2d(int(in_channels), int(out_channels), 1, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x)


def upsample_to(x: Tensor, size: tuple[int, int] | list[int]) -> Tensor:
    """Nearest-neighbour upsampling to ``size`` (Monodepth2's x2 upsampling when the size doubles)."""
    size = (int(size[0]), int(size[1]))
    if tuple(x.shape[-2:]) == size:
        return x
    if size == (2 * x.shape[-2], 2 * x.shape[-1]):
        return F.interpolate(x, scale_factor=2.0, mode='nearest')
    return F.interpolate(x, size=size, mode='nearest')


def disparity_to_depth(disp: Tensor, min_depth: float, max_depth: float) -> Tensor:
    """Monodepth2's mapping of a sigmoid output to depth: ``1 / (1/max + (1/min - 1/max) * disp)``."""
    min_disp, max_disp = 1.0 / max_depth, 1.0 / min_depth
    return 1.0 / (min_disp + (max_disp - min_disp) * disp)
