"""MPViT (Multi-Path Vision Transformer, Lee et al., CVPR 2022) as the dense feature encoder of MonoViT.

timm has no MPViT; this is an implementation from the paper and the public architecture facts:

- stem: two 3x3 Conv-BN-Hardswish (3 -> C0/2 -> C0);
- each stage: a multi-scale patch embedding (``num_path`` chained depthwise-separable 3x3 Conv-BN-Hardswish,
  the first strided), then per path a transformer encoder of ``num_layers`` MHCA blocks (factorised attention
  ``q softmax_N(k)^T v * d^-1/2`` plus a convolutional relative position term ``q * dwconv(v)``, with a shared
  depthwise 3x3 convolutional position encoding), plus a local inverted-residual path (``InvRes``); the
  ``num_path + 1`` outputs are concatenated and aggregated by a 1x1 Conv-BN-Hardswish to the next stage's width.

MonoViT's variant (``monovit=True``) makes the stem's second convolution stride 1 and strides the first patch
embedding of every stage, so the encoder yields five features at strides 2, 4, 8, 16, 32 with channels
``[C0, C1, C2, C3, C3]``: ``[64, 128, 216, 288, 288]`` for MPViT-small (layers [1, 3, 6, 3], paths [2, 3, 3, 3],
dims [64, 128, 216, 288], MLP ratio 4, 8 heads). MPViT-small has 22.89 M parameters with its 1000-class head and
22.60 M without; the head is not built here.

Parameter names follow the public MPViT/MonoViT checkpoints (``stem.0.conv``, ``patch_embed_stages.i.patch_embeds.j
.patch_conv.dwconv``, ``mhca_stages.i.mhca_blks.j.MHCA_layers.k.factoratt_crpe.qkv``, ``...InvRes``,
``...aggregate``). Those checkpoints also list the shared position encodings again under every block (aliases of
one tensor); ``surround_depth_train.models.pretrained`` drops the aliases.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
from timm.layers import DropPath, Mlp, trunc_normal_  # Mlp: fc1 -> GELU -> fc2, MPViT's key names
from torch import Tensor, nn

__all__ = ['MPViT', 'mpvit_small', 'mpvit_tiny', 'MPVIT_SMALL_HEAD_PARAMS']

MPVIT_SMALL_HEAD_PARAMS = 288 * 1000 + 1000  # the classification head MPViT-small's 22.89 M includes


class ConvBN(nn.Module):
    """``act(bn(conv(x)))`` with a bias-free convolution."""

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int = 1, stride: int = 1, pad: int = 0,
                 groups: int = 1, act: bool = False):
        super().__init__()
        self.conv = nn.Conv2d(in_ch, out_ch, kernel_size, stride, pad, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(out_ch)
        self.act = nn.Hardswish() if act else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.bn(self.conv(x)))


class SeparableConvBN(nn.Module):
    """Depthwise ``k x k`` then pointwise conv, BN, Hardswish (a patch embedding of one path)."""

    def __init__(self, channels: int, kernel_size: int = 3, stride: int = 1):
        super().__init__()
        self.dwconv = nn.Conv2d(channels, channels, kernel_size, stride, (kernel_size - 1) // 2, groups=channels,
                                bias=False)
        self.pwconv = nn.Conv2d(channels, channels, 1, bias=False)
        self.bn = nn.BatchNorm2d(channels)
        self.act = nn.Hardswish()

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.bn(self.pwconv(self.dwconv(x))))


class PatchEmbed(nn.Module):
    def __init__(self, channels: int, stride: int):
        super().__init__()
        self.patch_conv = SeparableConvBN(channels, 3, stride)

    def forward(self, x: Tensor) -> Tensor:
        return self.patch_conv(x)


class MultiScalePatchEmbed(nn.Module):
    """``num_path`` chained embeddings; path ``j`` sees a ``(2j + 3)``-pixel receptive field (3x3, 5x5, 7x7...)."""

    def __init__(self, channels: int, num_path: int, downsample: bool):
        super().__init__()
        self.patch_embeds = nn.ModuleList([
            PatchEmbed(channels, stride=2 if downsample and j == 0 else 1) for j in range(num_path)])

    def forward(self, x: Tensor) -> list[Tensor]:
        outs = []
        for embed in self.patch_embeds:
            x = embed(x)
            outs.append(x)
        return outs


class ConvPositionEncoding(nn.Module):
    """``x + dwconv3x3(x)`` on the token grid."""

    def __init__(self, dim: int):
        super().__init__()
        self.proj = nn.Conv2d(dim, dim, 3, 1, 1, groups=dim)

    def forward(self, x: Tensor, size: tuple[int, int]) -> Tensor:
        b, n, c = x.shape
        grid = x.transpose(1, 2).reshape(b, c, *size)
        return (grid + self.proj(grid)).flatten(2).transpose(1, 2)


class ConvRelativePositionEncoding(nn.Module):
    """``q * dwconv(v)``, with window 3 on 2 heads, 5 on 3 heads and 7 on 3 heads (8 heads)."""

    def __init__(self, head_dim: int, num_heads: int, windows: dict[int, int] | None = None):
        super().__init__()
        windows = windows or {3: 2, 5: 3, 7: 3}
        if sum(windows.values()) != num_heads:
            raise ValueError(f'window head splits {windows} do not add up to {num_heads} heads')
        self.conv_list = nn.ModuleList([
            nn.Conv2d(heads * head_dim, heads * head_dim, k, padding=k // 2, groups=heads * head_dim)
            for k, heads in windows.items()])
        self.splits = [heads * head_dim for heads in windows.values()]

    def forward(self, q: Tensor, v: Tensor, size: tuple[int, int]) -> Tensor:
        b, h, n, d = v.shape
        v_img = v.transpose(2, 3).reshape(b, h * d, *size)
        conv_v = torch.cat([conv(part) for conv, part in zip(self.conv_list, v_img.split(self.splits, dim=1))],
                           dim=1)
        return q * conv_v.reshape(b, h, d, n).transpose(2, 3)


class FactorizedAttention(nn.Module):
    """``proj(d^-1/2 q (softmax_N(k)^T v) + crpe(q, v))``: attention linear in the number of tokens."""

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor, size: tuple[int, int], crpe: ConvRelativePositionEncoding) -> Tensor:
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
        context = k.softmax(dim=2).transpose(2, 3) @ v          # [B, h, d, d]
        out = self.scale * (q @ context) + crpe(q, v, size)     # [B, h, N, d]
        return self.proj(out.transpose(1, 2).reshape(b, n, c))


class MHCABlock(nn.Module):
    """Pre-norm transformer block: ``x = cpe(x); x += att(norm1(x)); x += mlp(norm2(x))``."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: int, drop_path: float):
        super().__init__()
        self.factoratt_crpe = FactorizedAttention(dim, num_heads)
        self.mlp = Mlp(dim, dim * mlp_ratio, act_layer=nn.GELU)
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: Tensor, size: tuple[int, int], cpe: ConvPositionEncoding,
                crpe: ConvRelativePositionEncoding) -> Tensor:
        x = cpe(x, size)
        x = x + self.drop_path(self.factoratt_crpe(self.norm1(x), size, crpe))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class MHCAEncoder(nn.Module):
    """One path's transformer: blocks sharing one position encoding and one relative position encoding."""

    def __init__(self, dim: int, num_layers: int, num_heads: int, mlp_ratio: int, drop_path: Sequence[float]):
        super().__init__()
        self.cpe = ConvPositionEncoding(dim)
        self.crpe = ConvRelativePositionEncoding(dim // num_heads, num_heads)
        self.MHCA_layers = nn.ModuleList([
            MHCABlock(dim, num_heads, mlp_ratio, drop_path[i]) for i in range(num_layers)])

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        tokens = x.flatten(2).transpose(1, 2)
        for layer in self.MHCA_layers:
            tokens = layer(tokens, (h, w), self.cpe, self.crpe)
        return tokens.transpose(1, 2).reshape(b, c, h, w)


class InvertedResidual(nn.Module):
    """Local path: ``x + conv2(act(bn(dwconv3x3(conv1(x)))))``."""

    def __init__(self, dim: int):
        super().__init__()
        self.conv1 = ConvBN(dim, dim, act=True)
        self.dwconv = nn.Conv2d(dim, dim, 3, 1, 1, groups=dim, bias=False)
        self.norm = nn.BatchNorm2d(dim)
        self.act = nn.Hardswish()
        self.conv2 = ConvBN(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.conv2(self.act(self.norm(self.dwconv(self.conv1(x)))))


class MHCAStage(nn.Module):
    def __init__(self, dim: int, out_dim: int, num_layers: int, num_heads: int, mlp_ratio: int, num_path: int,
                 drop_path: Sequence[float]):
        super().__init__()
        self.mhca_blks = nn.ModuleList([
            MHCAEncoder(dim, num_layers, num_heads, mlp_ratio, drop_path) for _ in range(num_path)])
        self.InvRes = InvertedResidual(dim)
        self.aggregate = ConvBN(dim * (num_path + 1), out_dim, act=True)

    def forward(self, paths: list[Tensor]) -> Tensor:
        outs = [self.InvRes(paths[0])] + [enc(x) for enc, x in zip(self.mhca_blks, paths)]
        return self.aggregate(torch.cat(outs, dim=1))


class MPViT(nn.Module):
    """MPViT feature encoder (no classification head).

    Args:
        num_path, num_layers, embed_dims, mlp_ratios, num_heads: per stage.
        drop_path_rate: stochastic depth, linearly increasing over all blocks.
        monovit: MonoViT's strides (features at 1/2 .. 1/32) instead of MPViT's (1/4 .. 1/32).
    """

    def __init__(self, *, num_path: Sequence[int] = (2, 3, 3, 3), num_layers: Sequence[int] = (1, 3, 6, 3),
                 embed_dims: Sequence[int] = (64, 128, 216, 288), mlp_ratios: Sequence[int] = (4, 4, 4, 4),
                 num_heads: Sequence[int] = (8, 8, 8, 8), drop_path_rate: float = 0.0, in_chans: int = 3,
                 monovit: bool = True):
        super().__init__()
        n = len(embed_dims)
        dpr = torch.linspace(0, drop_path_rate, sum(num_layers)).tolist()
        starts = [sum(num_layers[:i]) for i in range(n)]
        self.monovit = monovit
        self.stem = nn.Sequential(
            ConvBN(in_chans, embed_dims[0] // 2, 3, 2, 1, act=True),
            ConvBN(embed_dims[0] // 2, embed_dims[0], 3, 1 if monovit else 2, 1, act=True),
        )
        self.patch_embed_stages = nn.ModuleList([
            MultiScalePatchEmbed(embed_dims[i], num_path[i], downsample=monovit or i > 0) for i in range(n)])
        self.mhca_stages = nn.ModuleList([
            MHCAStage(embed_dims[i], embed_dims[min(i + 1, n - 1)], num_layers[i], num_heads[i], mlp_ratios[i],
                      num_path[i], dpr[starts[i]:starts[i] + num_layers[i]])
            for i in range(n)])
        out_dims = [embed_dims[min(i + 1, n - 1)] for i in range(n)]
        self.channels: list[int] = ([embed_dims[0]] if monovit else []) + out_dims
        self.reductions: list[int] = ([2] if monovit else []) + [2 ** (i + 2) for i in range(n)]
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Conv2d):
            fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels // m.groups
            nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / fan_out))
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.LayerNorm, nn.BatchNorm2d)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> list[Tensor]:
        """Features, finest first (five for MonoViT: the stem output then each stage's output)."""
        x = self.stem(x)
        feats = [x] if self.monovit else []
        for embed, stage in zip(self.patch_embed_stages, self.mhca_stages):
            x = stage(embed(x))
            feats.append(x)
        return feats


def mpvit_small(**kwargs) -> MPViT:
    """MPViT-small: paths [2, 3, 3, 3], layers [1, 3, 6, 3], dims [64, 128, 216, 288], MLP ratio 4."""
    return MPViT(num_path=(2, 3, 3, 3), num_layers=(1, 3, 6, 3), embed_dims=(64, 128, 216, 288),
                 mlp_ratios=(4, 4, 4, 4), num_heads=(8, 8, 8, 8), **kwargs)


def mpvit_tiny(**kwargs) -> MPViT:
    """MPViT-tiny: paths [2, 3, 3, 3], layers [1, 2, 4, 1], dims [64, 96, 176, 216], MLP ratio 2."""
    return MPViT(num_path=(2, 3, 3, 3), num_layers=(1, 2, 4, 1), embed_dims=(64, 96, 176, 216),
                 mlp_ratios=(2, 2, 2, 2), num_heads=(8, 8, 8, 8), **kwargs)
