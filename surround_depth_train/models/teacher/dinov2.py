"""DINOv2 vision transformer, as vendored by Depth Anything v1 (the teacher's encoder).

The details that decide whether an official checkpoint reproduces the official outputs:

- patch size 14, one class token, no register tokens, LayerScale on both residual branches, LayerNorm eps 1e-6,
  qkv/proj/MLP biases, GELU MLP of ratio 4;
- the stored position embedding covers a square grid of ``N = (518 / 14)^2 = 37^2`` patches. For an input of
  ``n_h x n_w`` patches it is resampled by :func:`interpolate_pos_embed` with
  ``scale_factor = ((n_h + 0.1) / sqrt(N), (n_w + 0.1) / sqrt(N))``, bicubic, no antialias. The scale factor
  (not the output size) fixes the sampling positions, so this differs from timm's size-based resampling;
- the decoder reads the last four blocks (:meth:`DinoVisionTransformer.get_intermediate_layers`), each passed
  through the final LayerNorm, class token dropped.

Parameter names follow the official ones (``patch_embed.proj``, ``blocks.i.attn.qkv``, ``blocks.i.ls1.gamma``,
``mask_token`` ...), so checkpoints map onto this module by a prefix alone.
"""
from __future__ import annotations

import math

import torch
from timm.layers import Mlp  # fc1 -> GELU -> fc2, DINOv2's key names
from torch import Tensor, nn
from torch.nn import functional as F

__all__ = ['interpolate_pos_embed', 'LayerScale', 'Attention', 'Block', 'PatchEmbed',
           'DinoVisionTransformer', 'POS_EMBED_OFFSET']

POS_EMBED_OFFSET = 0.1  # DINO's guard against floor() rounding the interpolated grid one patch short


def interpolate_pos_embed(patch_pos_embed: Tensor, n_h: int, n_w: int, offset: float = POS_EMBED_OFFSET) -> Tensor:
    """Resample a square grid of patch position embeddings to ``n_h x n_w`` patches, the DINOv2 way.

    With ``N`` stored patches on a ``sqrt(N) x sqrt(N)`` grid, the grid is resized by bicubic interpolation
    (``align_corners=False``, no antialias) with ``scale_factor = ((n_h + offset) / sqrt(N), (n_w + offset) /
    sqrt(N))``. Output index ``i`` then samples the source at ``(i + 0.5) / s - 0.5``, where ``s`` is that scale
    factor (not ``n / sqrt(N)``). When the grid already has ``n_h = n_w = sqrt(N)`` it is returned unchanged.

    Args:
        patch_pos_embed: ``[1, N, C]`` position embeddings of the patch tokens (class token excluded).
        n_h: patches along the height.
        n_w: patches along the width.
        offset: the 0.1 added to the patch counts (DINOv2 with registers uses 0.0).

    Returns:
        ``[1, n_h * n_w, C]`` in the input's dtype (computed in float32).
    """
    n_stored = patch_pos_embed.shape[1]
    side = int(round(math.sqrt(n_stored)))
    if side * side != n_stored:
        raise ValueError(f'position embedding holds {n_stored} patches, not a square grid; '
                         'it must come from a square pretraining size')
    if n_h == side and n_w == side:
        return patch_pos_embed
    dim = patch_pos_embed.shape[-1]
    grid = patch_pos_embed.float().reshape(1, side, side, dim).permute(0, 3, 1, 2)
    sqrt_n = math.sqrt(n_stored)
    grid = F.interpolate(grid, scale_factor=((n_h + offset) / sqrt_n, (n_w + offset) / sqrt_n),
                         mode='bicubic', align_corners=False, antialias=False)
    if grid.shape[-2:] != (n_h, n_w):  # floor((n + offset) * side / sqrt_n) must give n back
        raise RuntimeError(f'interpolated grid {tuple(grid.shape[-2:])} != ({n_h}, {n_w})')
    return grid.permute(0, 2, 3, 1).reshape(1, n_h * n_w, dim).to(patch_pos_embed.dtype)


class LayerScale(nn.Module):
    """Per-channel scale of a residual branch: ``y = gamma * x``."""

    def __init__(self, dim: int, init_value: float = 1.0):
        super().__init__()
        self.gamma = nn.Parameter(torch.full((dim,), float(init_value)))

    def forward(self, x: Tensor) -> Tensor:
        return x * self.gamma


class Attention(nn.Module):
    """Multi-head self-attention: ``softmax(q k^T / sqrt(d_head)) v`` with a fused ``qkv`` projection."""

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f'embed dim {dim} is not divisible by {num_heads} heads')
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
        x = F.scaled_dot_product_attention(q, k, v)
        return self.proj(x.transpose(1, 2).reshape(b, n, c))


class Block(nn.Module):
    """Pre-norm transformer block: ``x += ls1(attn(norm1(x)))``; ``x += ls2(mlp(norm2(x)))``."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, layerscale_init: float = 1.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, num_heads)
        self.ls1 = LayerScale(dim, layerscale_init)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), act_layer=nn.GELU)
        self.ls2 = LayerScale(dim, layerscale_init)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.ls1(self.attn(self.norm1(x)))
        return x + self.ls2(self.mlp(self.norm2(x)))


class PatchEmbed(nn.Module):
    """Non-overlapping ``p x p`` patches to tokens: ``[B, 3, H, W] -> [B, (H/p)(W/p), C]``."""

    def __init__(self, dim: int, patch_size: int = 14, in_channels: int = 3):
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(in_channels, dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class DinoVisionTransformer(nn.Module):
    """DINOv2 ViT encoder (no registers) that exposes the token maps of its last blocks.

    Args:
        embed_dim: token width (384 ViT-S, 768 ViT-B, 1024 ViT-L).
        depth: number of blocks (12, 12, 24).
        num_heads: attention heads (6, 12, 16).
        patch_size: patch side in pixels (14).
        pretrain_size: square image side the position embedding was trained for (518 -> 37 x 37 patches).
        mlp_ratio: MLP hidden width over ``embed_dim``.
        layerscale_init: initial LayerScale value (1.0 in the official hub builder).
    """

    def __init__(self, *, embed_dim: int, depth: int, num_heads: int, patch_size: int = 14,
                 pretrain_size: int = 518, mlp_ratio: float = 4.0, layerscale_init: float = 1.0):
        super().__init__()
        if pretrain_size % patch_size:
            raise ValueError(f'pretrain_size {pretrain_size} is not a multiple of patch_size {patch_size}')
        self.embed_dim = embed_dim
        self.patch_size = patch_size
        n_patches = (pretrain_size // patch_size) ** 2
        self.patch_embed = PatchEmbed(embed_dim, patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, n_patches + 1, embed_dim))
        # Unused at inference but part of every official checkpoint (DINOv2's iBOT masking).
        self.mask_token = nn.Parameter(torch.zeros(1, embed_dim))
        self.blocks = nn.ModuleList(Block(embed_dim, num_heads, mlp_ratio, layerscale_init) for _ in range(depth))
        self.norm = nn.LayerNorm(embed_dim, eps=1e-6)
        self._init_weights()

    def _init_weights(self) -> None:
        # DINOv2's scheme: truncated-normal position embedding and linear weights, tiny class token.
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.normal_(self.cls_token, std=1e-6)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)

    def prepare_tokens(self, x: Tensor) -> Tensor:
        """Patch tokens with the class token prepended and position embeddings added: ``[B, 1 + n_h n_w, C]``."""
        h, w = x.shape[-2:]
        p = self.patch_size
        if h % p or w % p:
            raise ValueError(f'input {h}x{w} is not a multiple of the patch size {p}; '
                             'resize it first (the teacher does so in prepare())')
        tokens = self.patch_embed(x)
        tokens = torch.cat((self.cls_token.expand(tokens.shape[0], -1, -1), tokens), dim=1)
        patch_pos = interpolate_pos_embed(self.pos_embed[:, 1:], h // p, w // p)
        pos = torch.cat((self.pos_embed[:, :1], patch_pos), dim=1)
        return tokens + pos.to(tokens.dtype)

    def get_intermediate_layers(self, x: Tensor, n: int = 4) -> list[Tensor]:
        """Normalised patch tokens ``[B, n_h n_w, C]`` after each of the last ``n`` blocks, shallow to deep."""
        if not 1 <= n <= len(self.blocks):
            raise ValueError(f'cannot take the last {n} of {len(self.blocks)} blocks')
        x = self.prepare_tokens(x)
        first = len(self.blocks) - n
        outputs = []
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i >= first:
                outputs.append(self.norm(x)[:, 1:])
        return outputs
