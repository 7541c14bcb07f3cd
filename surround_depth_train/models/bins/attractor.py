"""Attractor layers: refine bin centers by pulling them toward per-pixel attractor points (ZoeDepth style).

For attractor points ``a_i`` (``i = 1..n_a``) and a bin center ``c``, with ``dx = a_i - c``:

- inverse attractor ("inv", ZoeDepth's default): ``f(dx) = dx / (1 + alpha * dx^gamma)``;
- exponential attractor ("exp"): ``f(dx) = exp(-alpha * |dx|^gamma) * dx``;

and the new center is ``c' = c + agg_i f(a_i - c)`` with ``agg`` the mean ("mean") or the sum ("sum").
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor, nn

from surround_depth_train.models.bins.log_binomial import softplus_inference
from surround_depth_train.models.bins.pixelwise import full_precision, pixel_mlp, resize_pixels

__all__ = ['inverse_attraction', 'exponential_attraction', 'AttractorLayer']

ATTRACTOR_EPS = 1e-3  # ZoeDepth adds this to the ReLU attractor points of the normed variant


def inverse_attraction(dx: Tensor, alpha: float, gamma: int) -> Tensor:
    """``dx / (1 + alpha * dx^gamma)``."""
    return dx / (1.0 + alpha * dx.pow(gamma))


def exponential_attraction(dx: Tensor, alpha: float, gamma: int) -> Tensor:
    """``exp(-alpha * |dx|^gamma) * dx``."""
    return torch.exp(-alpha * dx.abs().pow(gamma)) * dx


ATTRACTIONS: dict[str, Callable[[Tensor, float, int], Tensor]] = {
    'inv': inverse_attraction,
    'exp': exponential_attraction,
}


class AttractorLayer(nn.Module):
    """One refinement stage: embedding -> attractor points -> shifted bin centers.

    The input embedding is ``x + resize(prev_embedding)``; an MLP (``conv1x1(in, hidden) -> ReLU ->
    conv1x1(hidden, n_out)`` + activation, ZoeDepth's names ``_net.0``/``_net.2``) gives the attractor points.

    - ``normed=False`` (ZoeDepth's ``AttractorLayerUnnormed``): ``n_out = n_attractors``, Softplus; the centers are
      unbounded metres and ``c' = c + agg f(a - c)`` is both the state passed on and the output.
    - ``normed=True`` (``AttractorLayer``): ``n_out = 2 n_attractors``, ReLU, ``a_i = out_{2i} + 1e-3`` (as in
      ZoeDepth, only the first of each pair is used); the state ``b`` lives in ``[0, 1]`` units, and the output
      centers are ``clip(sort((max - min) b' + min), min, max)``.

    The aggregation loops over attractors so that the ``[B, n_a, K, h, w]`` tensor is never materialised.
    """

    def __init__(self, in_channels: int, n_bins: int, n_attractors: int, *, hidden: int = 128,
                 min_depth: float = 1e-3, max_depth: float = 80.0, alpha: float = 300.0, gamma: int = 2,
                 kind: str = 'mean', attractor_type: str = 'inv', normed: bool = False):
        super().__init__()
        if kind not in ('mean', 'sum'):
            raise ValueError(f"attractor_kind must be 'mean' or 'sum', got {kind!r}")
        if attractor_type not in ATTRACTIONS:
            raise ValueError(f"attractor_type must be one of {sorted(ATTRACTIONS)}, got {attractor_type!r}")
        self.n_bins = n_bins
        self.n_attractors = n_attractors
        self.min_depth = float(min_depth)
        self.max_depth = float(max_depth)
        self.alpha = float(alpha)
        self.gamma = gamma
        self.kind = kind
        self.attractor_type = attractor_type
        self.normed = normed
        n_out = 2 * n_attractors if normed else n_attractors
        self._net = nn.Sequential(
            nn.Conv2d(in_channels, hidden, 1),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, n_out, 1),
            nn.ReLU(inplace=True) if normed else nn.Softplus(),
        )

    def attractor_points(self, x: Tensor, prev_embedding: Tensor | None = None) -> Tensor:
        """Attractor points ``[B, h, w, n_attractors]`` from the embedding ``x`` (+ the previous one resized)."""
        if prev_embedding is not None:
            x = x + resize_pixels(prev_embedding, x.shape[1:3])
        return self.points_from_input(x)

    def points_from_input(self, x: Tensor) -> Tensor:
        """Attractor points ``[..., n_attractors]`` from the summed embedding ``[..., E]``."""
        return self.points_from_hidden(pixel_mlp(x, self._net[:1]))

    def points_from_hidden(self, pre: Tensor) -> Tensor:
        """Attractor points from the first layer's output ``W1 x + b1`` (``[..., hidden]``)."""
        if torch.is_grad_enabled() or self.normed:
            out = full_precision(pixel_mlp(pre, self._net[1:]))
        else:
            out = full_precision(softplus_inference(pixel_mlp(pre, self._net[1:3])))
        if self.normed:
            out = out.unflatten(-1, (self.n_attractors, 2))[..., 0] + ATTRACTOR_EPS
        return out

    def refine(self, points: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
        """``(b_new, centers)`` from points ``[..., n_attractors]`` and the state ``b`` ``[..., K]`` (same pixels)."""
        attraction = ATTRACTIONS[self.attractor_type]
        delta = None
        for i in range(self.n_attractors):
            term = attraction(points[..., i:i + 1] - b, self.alpha, self.gamma)
            delta = term if delta is None else delta + term
        if self.kind == 'mean':
            delta = delta / self.n_attractors
        b_new = b + delta
        if not self.normed:
            return b_new, b_new
        centers = (self.max_depth - self.min_depth) * b_new + self.min_depth
        centers = torch.sort(centers, dim=-1).values.clamp(self.min_depth, self.max_depth)
        return b_new, centers

    def refine_into(self, points: Tensor, b: Tensor, state_out: Tensor, centers_out: Tensor | None = None) -> None:
        """:meth:`refine` written into ``state_out`` (and ``centers_out`` when normed), without autograd.

        The same function in fewer passes: ``b' = b + sum_i f(a_i - b) / n_a`` is accumulated in ``state_out``, the
        inverse attraction as ``(dx / alpha) / (dx^gamma + 1 / alpha)``.
        """
        weight = 1.0 / self.n_attractors if self.kind == 'mean' else 1.0
        dx, scratch = torch.empty_like(b), torch.empty_like(b)
        accumulated = b
        for i in range(self.n_attractors):
            torch.sub(points[..., i:i + 1], b, out=dx)
            if self.attractor_type == 'inv':
                # dx / (1 + alpha dx^g) = (dx / alpha) / (dx^g + 1 / alpha)
                if self.gamma == 2:
                    torch.mul(dx, dx, out=scratch)
                else:
                    torch.pow(dx, self.gamma, out=scratch)
                torch.addcdiv(accumulated, dx, scratch.add_(1.0 / self.alpha), value=weight / self.alpha,
                              out=state_out)
            else:
                torch.abs(dx, out=scratch).pow_(self.gamma).mul_(-self.alpha).exp_()
                torch.addcmul(accumulated, scratch, dx, value=weight, out=state_out)
            accumulated = state_out
        if self.normed:
            assert centers_out is not None, 'normed attractors need centers_out'
            centers = torch.sort(state_out * (self.max_depth - self.min_depth) + self.min_depth, dim=-1).values
            torch.clamp(centers, self.min_depth, self.max_depth, out=centers_out)

    def forward(self, x: Tensor, b_prev: Tensor, prev_embedding: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Refine the previous state.

        All tensors are channels-last (``[B, H, W, C]``).

        Args:
            x: bin embedding of this stage ``[B, h, w, E]``.
            b_prev: previous state ``[B, h', w', K]`` (metres, or ``[0, 1]`` units when normed).
            prev_embedding: previous stage's embedding ``[B, h', w', E]``, resized and added to ``x``.

        Returns:
            ``(b_new, centers)``, both ``[B, h, w, K]``; ``centers`` in metres.
        """
        points = self.attractor_points(x, prev_embedding)
        return self.refine(points, resize_pixels(full_precision(b_prev), points.shape[1:3]))
