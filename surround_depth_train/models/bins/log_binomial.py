"""Conditional log-binomial output: a unimodal distribution over ordered depth bins (ZoeDepth style).

For ``K`` bins, a per-pixel success probability ``p`` and temperature ``t``:

    y_k = log C(K-1, k) + k log p + (K-1-k) log(1-p),        P_k = softmax_k(y_k / t)

with ``log C(n, k) ~ n log n - k log k - (n-k) log(n-k)`` (Stirling, with small epsilons), ``p`` and ``1-p``
clamped to ``[1e-4, 1]``. Because a softmax ignores per-pixel constants, ``(K-1) log(1-p) / t`` is dropped and

    P_k = softmax_k(lb_k / t + k (log p - log(1-p)) / t)

is computed instead: the same function, with the ``K`` logits of a pixel produced by one rank-2 product.
Tensors are channels-last, ``[B, H, W, C]`` (see ``pixelwise``).
"""
from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F
from torch.utils.checkpoint import checkpoint

from surround_depth_train.models.bins.pixelwise import full_precision, resize_pixels

__all__ = ['log_binomial_coefficient', 'softplus_inference', 'LogBinomial', 'ConditionalLogBinomial']


def log_binomial_coefficient(n: Tensor, k: Tensor, eps: float = 1e-7) -> Tensor:
    """Stirling approximation of ``log C(n, k)``: ``n log n - k log k - (n-k) log(n-k+eps)`` (n, k shifted by eps)."""
    n = n + eps
    k = k + eps
    return n * torch.log(n) - k * torch.log(k) - (n - k) * torch.log(n - k + eps)


def softplus_inference(x: Tensor) -> Tensor:
    """``nn.Softplus()`` (beta 1, threshold 20) from fast vectorised operations (on CPU ``log1p``, and so
    ``F.softplus``, is scalar code, and ``torch.where`` is slow).

    ``softplus(x) = max(x, 0) + log1p(e)``, ``e = exp(-|x|)``, with ``log1p(e) = log(u) + (e - (u - 1)) / u`` for
    ``u = 1 + e``: the second term restores what rounding ``u`` lost (all of ``e`` where ``u`` rounds to one).
    Above the threshold this is ``x + log1p(e)``, at most ``2.1e-9`` above ``x``: ``x`` in float32.
    """
    e = torch.exp(-x.abs())
    u = e + 1.0
    correction = (e - (u - 1.0)).div_(u)
    return torch.log(u).add_(correction).add_(x.clamp_min(0.0))


class LogBinomial(nn.Module):
    """``P = softmax_k(log Binomial(k; K-1, p) / t)`` over ``K`` classes.

    The buffers ``k_idx`` (``0..K-1``, int64, ``[1, K, 1, 1]``) and ``K_minus_1`` (``[1, 1, 1, 1]``) are persistent
    because they are part of ZoeDepth-format checkpoints.
    """

    def __init__(self, n_classes: int = 64):
        super().__init__()
        self.K = n_classes
        self.register_buffer('k_idx', torch.arange(0, n_classes).view(1, -1, 1, 1))
        self.register_buffer('K_minus_1', torch.tensor([float(n_classes - 1)]).view(1, -1, 1, 1))

    def log_coefficients(self) -> Tensor:
        """``lb_k = log C(K-1, k)`` as ``[K]`` float64 (K values: precision is free here)."""
        k = self.k_idx.reshape(-1).double()
        return log_binomial_coefficient(self.K_minus_1.reshape(-1).double(), k)

    def logit_basis(self, dtype: torch.dtype) -> Tensor:
        """``[2, K]``: rows ``lb_k`` and ``k``, so that ``logits = [1/t, log_odds/t] @ basis``."""
        return torch.stack([self.log_coefficients(), self.k_idx.reshape(-1).double()], dim=0).to(dtype)

    @staticmethod
    def logit_factors(p: Tensor, t: Tensor | float, eps: float = 1e-4) -> Tensor:
        """``[..., 2]`` = ``[1/t, (log p - log(1-p)) / t]`` (p clamped as in ZoeDepth), at least float32."""
        p = full_precision(p)
        t = torch.as_tensor(t, device=p.device).to(p.dtype)
        log_odds = torch.log(torch.clamp(p, eps, 1.0)) - torch.log(torch.clamp(1.0 - p, eps, 1.0))
        inv_t = torch.reciprocal(t).expand_as(log_odds)
        return torch.cat([inv_t, log_odds * inv_t], dim=-1)

    def forward(self, p: Tensor, t: Tensor | float = 1.0, eps: float = 1e-4) -> Tensor:
        """Probabilities ``[..., K]`` (at least float32) from ``p`` and ``t`` of shape ``[..., 1]``."""
        with torch.autocast(device_type=p.device.type, enabled=False):
            factors = self.logit_factors(p, t, eps)
            return torch.softmax(factors @ self.logit_basis(factors.dtype), dim=-1)

    def probs_into(self, factors: Tensor, out: Tensor, basis: Tensor | None = None) -> Tensor:
        """:meth:`forward` from :meth:`logit_factors` ``[N, 2]``, written into ``out`` ``[N, K]`` (no autograd):
        one GEMM for the logits, then the fused softmax kernel in place (it reads and writes each logit once)."""
        torch.matmul(factors, self.logit_basis(out.dtype) if basis is None else basis, out=out)
        return torch.ops.aten._softmax.out(out, -1, False, out=out)


class ConditionalLogBinomial(nn.Module):
    """Per-pixel ``p`` and ``t`` from a feature and a condition, then :class:`LogBinomial`.

    ``s = softplus(W2 gelu(W1 [x; cond] + b1) + b2)`` (4 channels), ``p = (s0+e) / (s0+s1+2e)``,
    ``t = min_t + (max_t - min_t) (s2+e) / (s2+s3+2e)``, ``e = 1e-4``.

    ``cond`` may be coarser than ``x``: it is resized bilinearly (``align_corners=True``) to ``x``'s size, as in
    ZoeDepth. Resizing commutes with the linear ``W1`` (bilinear weights sum to one), so ``W1`` is applied to
    ``cond`` before resizing: ``hidden`` instead of ``condition_dim`` channels are resized and the product runs at
    the coarse resolution. Parameter names follow ZoeDepth (``mlp.0``, ``mlp.2``).
    """

    def __init__(self, in_features: int, condition_dim: int, n_classes: int = 64, bottleneck_factor: int = 2,
                 p_eps: float = 1e-4, max_temp: float = 50.0, min_temp: float = 1e-7, memory_efficient: bool = True):
        super().__init__()
        self.in_features = in_features
        self.memory_efficient = memory_efficient
        self.p_eps = p_eps
        self.max_temp = float(max_temp)
        self.min_temp = float(min_temp)
        self.log_binomial_transform = LogBinomial(n_classes)
        bottleneck = (in_features + condition_dim) // bottleneck_factor
        self.mlp = nn.Sequential(
            nn.Conv2d(in_features + condition_dim, bottleneck, 1),
            nn.GELU(),
            nn.Conv2d(bottleneck, 4, 1),
            nn.Softplus(),
        )

    @property
    def x_weight(self) -> Tensor:
        """``W1`` columns acting on ``x``: ``[hidden, in_features]``."""
        return self.mlp[0].weight.flatten(1)[:, :self.in_features]

    def condition_term(self, cond: Tensor, size: tuple[int, int] | torch.Size) -> Tensor:
        """``resize(W1_cond cond + b1)`` ``[B, H, W, hidden]``: the bias is added before resizing (it commutes)."""
        first = self.mlp[0]
        return resize_pixels(F.linear(cond, first.weight.flatten(1)[:, self.in_features:], first.bias), size)

    def parameters_from_activation(self, a: Tensor) -> tuple[Tensor, Tensor]:
        """``(p, t)`` from ``a = gelu(hidden)``."""
        last = self.mlp[2]
        return self.parameters_from_logits(F.linear(a, last.weight.flatten(1), last.bias))

    def parameters_from_logits(self, s: Tensor) -> tuple[Tensor, Tensor]:
        """``(p, t)`` from the last layer's output before its softplus, ``s = W2 a + b2`` (``[..., 4]``)."""
        s = self.mlp[3](s) if torch.is_grad_enabled() else softplus_inference(s)
        s = full_precision(s) + self.p_eps
        p = s[..., 0:1] / (s[..., 0:1] + s[..., 1:2])
        t = s[..., 2:3] / (s[..., 2:3] + s[..., 3:4])
        return p, (self.max_temp - self.min_temp) * t + self.min_temp

    def _success_and_temperature(self, x: Tensor, cond: Tensor) -> tuple[Tensor, Tensor]:
        hidden = self.condition_term(cond, x.shape[1:3]) + F.linear(x, self.x_weight)
        return self.parameters_from_activation(self.mlp[1](hidden))

    def success_and_temperature(self, x: Tensor, cond: Tensor) -> tuple[Tensor, Tensor]:
        """``(p, t)``, each ``[B, H, W, 1]``, from ``x`` ``[B, H, W, in]`` and ``cond`` ``[B, h, w, cond_dim]``.

        With ``memory_efficient`` and autograd on, the full-resolution hidden layer is recomputed in the backward
        pass instead of being stored (``2 x hidden`` channels per pixel), see ``torch.utils.checkpoint``.
        """
        if self.memory_efficient and torch.is_grad_enabled():
            return checkpoint(self._success_and_temperature, x, cond, use_reentrant=False)
        return self._success_and_temperature(x, cond)

    def forward(self, x: Tensor, cond: Tensor) -> Tensor:
        """Probabilities ``[B, H, W, K]`` at ``x``'s resolution."""
        p, t = self.success_and_temperature(x, cond)
        return self.log_binomial_transform(p, t)
