"""The bins head's inference path: the function of ``MetricBins``' autograd path, computed image by image, in bands.

Without autograd (inference, a frozen teacher) nothing has to be kept for a backward pass, so the head is computed
one image at a time, each stage and the full-resolution output in bands of rows (``BAND_PIXELS``) whose working
set stays in cache:

- the weights are multiplied out first (:func:`fuse_stages`). Each embedding is only ever used through the next
  linear layer that reads it (the next attractor's first layer, or the log-binomial MLP's for the last stage), so
  that product, the "carry", is what passes between stages; constants commute with the bilinear resizes (their
  weights sum to one) and are folded into the carry;
- per band, 1x1 convolutions (``pointwise``) give the projector's hidden layer, the attractor's input (to which the
  resized carry is added) and the next carry, and the attractor refines the resized state in place;
- the full-resolution output runs the MLP per band down to its 4 pre-softplus channels, takes temperature and
  log-odds for the whole image from those, then computes ``P`` (logit GEMM + fused softmax), the resized ``C`` and
  ``D`` per band. With ``depth_only`` ``P`` and ``C`` go to one band-sized scratch buffer each and never reach
  memory at full resolution. The confidence (``bin_confidence``), when asked for, is taken per band from the
  band's ``P`` before ``P`` is multiplied into ``D``, with the band's ``C`` buffer (not yet written) as its
  scratch, so it costs one output channel per pixel and nothing else at full resolution;
- per-stage buffers are sized for one image and reused for the next, so a batch touches fresh memory only for
  its outputs.

Tensors are channels-last; see ``head`` for the data flow and ``test_bins`` for the equality with the autograd path.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import torch
from torch import Tensor
from torch.nn import functional as F

from surround_depth_train.models.bins.attractor import AttractorLayer
from surround_depth_train.models.bins.confidence import bin_confidence
from surround_depth_train.models.bins.pixelwise import BandResampler, pointwise

if TYPE_CHECKING:
    from surround_depth_train.models.bins.head import MetricBins

__all__ = ['BAND_PIXELS', 'bands', 'FusedStage', 'fuse_stages', 'banded_bins']

BAND_PIXELS = 8192  # pixels per band: ~6 MB of float32 working set, stays in L2/L3


def bands(height: int, width: int) -> list[tuple[int, int]]:
    """Row ranges ``[y0, y1)`` of about ``BAND_PIXELS`` pixels each, covering ``height`` rows."""
    rows = max(1, BAND_PIXELS // max(width, 1))
    return [(y, min(y + rows, height)) for y in range(0, height, rows)]


@dataclass
class FusedStage:
    """One refinement stage with its weights multiplied out, as 1x1 convolution kernels (see ``pointwise``).

    With ``h = relu(P1 f + p1)``, ``e = P2 h + p2`` and the attractor's first layer ``A1``:
    ``A1 (e + resize(e_prev)) + a1 = (A1 P2) h + resize(carry)``, where the incoming carry holds
    ``A1 e_prev + A1 p2 + a1``; the outgoing carry is ``(N P2) h + N p2 + c_next`` for the next consumer ``N``
    with its constant ``c_next``.
    """

    attractor: AttractorLayer
    p1: Tensor              # [hidden, in, 1, 1]
    p1_bias: Tensor         # [hidden]
    attract_weight: Tensor  # A1 P2: [attractor hidden, hidden, 1, 1]
    carry_weight: Tensor    # N P2: [next consumer's rows, hidden, 1, 1]
    carry_bias: Tensor      # N p2 + c_next


def fuse_stages(head: MetricBins, dtype: torch.dtype, projection_dtype: torch.dtype | None = None
                ) -> tuple[Tensor, Tensor, list[FusedStage]]:
    """``(seed carry weight, seed carry bias, stages)``: the seed embedding's carry is ``W e + b``.

    The stages' 1x1 kernels (``p1``, ``attract_weight``, ``carry_weight``) and their biases are products in
    ``dtype`` then stored in ``projection_dtype`` (default ``dtype``); the seed's carry stays in ``dtype``."""
    low = projection_dtype or dtype
    clb = head.conditional_log_binomial
    first = clb.mlp[0]
    # Consumers of each embedding: the next attractor's first layer with its constant A1 p2 + a1, and last the
    # log-binomial MLP's condition columns with its bias.
    consumers = []
    for projector, attractor in zip(head.projectors, head.attractors):
        a1 = attractor._net[0].weight.flatten(1)
        consumers.append((a1, a1 @ projector._net[2].bias + attractor._net[0].bias))
    consumers.append((first.weight.flatten(1)[:, clb.in_features:], first.bias))
    stages = []
    for i, (projector, attractor) in enumerate(zip(head.projectors, head.attractors)):
        p2, p2_bias = projector._net[2].weight.flatten(1), projector._net[2].bias
        a1 = consumers[i][0]
        n_weight, n_const = consumers[i + 1]
        stages.append(FusedStage(
            attractor=attractor, p1=_kernel(projector._net[0].weight.flatten(1), low),
            p1_bias=projector._net[0].bias.to(low), attract_weight=_kernel(a1.to(dtype) @ p2.to(dtype), low),
            carry_weight=_kernel(n_weight.to(dtype) @ p2.to(dtype), low),
            carry_bias=(n_weight.to(dtype) @ p2_bias.to(dtype) + n_const.to(dtype)).to(low)))
    return consumers[0][0].to(dtype), consumers[0][1].to(dtype), stages


def _kernel(matrix: Tensor, dtype: torch.dtype) -> Tensor:
    """``[out, in]`` -> a ``[out, in, 1, 1]`` channels-last convolution kernel."""
    return matrix.to(dtype)[:, :, None, None].contiguous(memory_format=torch.channels_last)


def banded_bins(head: MetricBins, bottleneck: Tensor, stage_features: Sequence[Tensor], last_feature: Tensor,
                rel: Tensor, depth_only: bool = False, confidence: bool = False
                ) -> tuple[Tensor | None, Tensor | None, Tensor, Tensor | None]:
    """``(P, C, D, confidence)`` channels-last (``[B, H, W, K]``, ``[B, H, W, K]``, ``[B, H, W, 1]``,
    ``[B, H, W, 1]``), P and C None with ``depth_only``, confidence None unless asked for; ``rel`` is already at
    ``last_feature``'s size. Float64 inputs compute in float64, others in float32; with
    ``head.projection_dtype = torch.bfloat16`` (set by ``reduced_precision.Bf16Model``) a float32 head runs the
    stages' 1x1 projections (feature -> hidden -> attractor input and carry) in bfloat16 with float32 accumulation,
    everything else (seed, resizes, attractors, the output pass) in float32."""
    dtype = torch.float64 if last_feature.dtype == torch.float64 else torch.float32
    low = getattr(head, 'projection_dtype', None) if dtype == torch.float32 else None
    kw = {'dtype': dtype, 'device': last_feature.device}
    b, _, height, width = last_feature.shape
    seed_state, seed_centers, seed_embedding = head._seed(bottleneck.to(dtype))
    seed_weight, seed_bias, stages = fuse_stages(head, dtype, low)
    seed_carry = F.linear(seed_embedding, seed_weight, seed_bias)
    k = head.n_bins
    # One image's buffers per stage: (state, centers or None, carry), reused for every image.
    buffers = []
    for stage, feature in zip(stages, stage_features):
        h, w = feature.shape[-2:]
        buffers.append((torch.empty(h, w, k, **kw), torch.empty(h, w, k, **kw) if stage.attractor.normed else None,
                        torch.empty(h, w, stage.carry_weight.shape[0], **kw)))
    output = _OutputPass(head, height, width, last_feature.shape[1], b, depth_only, confidence, kw)
    for image in range(b):
        state, centers, carry = seed_state[image], seed_centers[image], seed_carry[image]
        for stage, feature, (new_state, new_centers, new_carry) in zip(stages, stage_features, buffers):
            _refine_stage(stage, feature[image].to(stage.p1.dtype), state, carry, new_state, new_centers, new_carry)
            state, centers, carry = new_state, (new_state if new_centers is None else new_centers), new_carry
        output.run(image, last_feature[image].to(dtype), rel[image, 0].to(dtype), carry, centers)
    return output.probs, output.centers, output.depth, output.confidence


def _refine_stage(stage: FusedStage, feature: Tensor, state: Tensor, carry: Tensor, new_state: Tensor,
                  new_centers: Tensor | None, new_carry: Tensor) -> None:
    """One image through one stage: ``feature`` ``[C, h, w]`` in the kernels' dtype; ``state`` and ``carry`` at the
    previous stage's size, in the head's dtype."""
    _, h, w = feature.shape
    carry_rs = BandResampler(carry, (h, w))
    state_rs = BandResampler(state, (h, w))
    row_bands = bands(h, w)
    rows = row_bands[0][1]
    resized_carry = carry.new_empty(rows, w, carry.shape[-1])
    resized_state = state.new_empty(rows, w, state.shape[-1])
    attractor = stage.attractor
    for y0, y1 in row_bands:
        n = (y1 - y0) * w
        hidden = torch.relu_(pointwise(feature[:, y0:y1].permute(1, 2, 0).contiguous(), stage.p1, stage.p1_bias))
        new_carry[y0:y1].copy_(pointwise(hidden, stage.carry_weight, stage.carry_bias))
        pre = pointwise(hidden, stage.attract_weight).to(carry.dtype).add_(
            carry_rs.band(y0, y1, out=resized_carry[:y1 - y0]))
        attractor.refine_into(attractor.points_from_hidden(pre.view(n, -1)),
                              state_rs.band(y0, y1, out=resized_state[:y1 - y0]).view(n, -1),
                              new_state[y0:y1].view(n, -1),
                              None if new_centers is None else new_centers[y0:y1].view(n, -1))


class _OutputPass:
    """The full-resolution output of one image at a time into the batch's ``D`` (and ``P``, ``C``, confidence)."""

    def __init__(self, head: MetricBins, height: int, width: int, channels: int, batch: int, depth_only: bool,
                 confidence: bool, kw: dict):
        clb = head.conditional_log_binomial
        self.clb = clb
        self.lb = clb.log_binomial_transform
        self.size = (height, width)
        self.bands = bands(height, width)
        self.depth_only = depth_only
        k = head.n_bins
        rows = self.bands[0][1]
        self.depth = torch.empty(batch, height, width, 1, **kw)
        self.confidence = torch.empty(batch, height, width, 1, **kw) if confidence else None
        if depth_only:
            self.probs = self.centers = None
            self.probs_scratch = torch.empty(rows, width, k, **kw)
            self.centers_scratch = torch.empty(rows, width, k, **kw)
        else:
            self.probs = torch.empty(batch, height, width, k, **kw)
            self.centers = torch.empty(batch, height, width, k, **kw)
            # Fault the fresh output pages in with one parallel pass: measured 40-50 ms cheaper per 6 x 384 x 640
            # camera set than taking the page faults one at a time inside the band loop.
            self.probs.zero_()
            self.centers.zero_()
        # K = 17 and N = 4 are too thin for the convolution backend to pay: these two stay GEMMs.
        self.x_weight = clb.x_weight.to(kw['dtype']).t()
        self.last_weight = clb.mlp[2].weight.flatten(1).to(kw['dtype']).t()
        self.last_bias = clb.mlp[2].bias.to(kw['dtype'])
        self.basis = self.lb.logit_basis(kw['dtype'])
        self.logits = torch.empty(height * width, self.last_bias.shape[0], **kw)
        self.pixels = torch.empty(height, width, channels + 1, **kw)
        self.resized_condition = torch.empty(rows, width, clb.x_weight.shape[0], **kw)

    def run(self, image: int, last_feature: Tensor, rel: Tensor, condition: Tensor, centers: Tensor) -> None:
        """``last_feature`` ``[C, H, W]``, ``rel`` ``[H, W]``; ``condition`` (``W1_cond e + b1``) and ``centers``
        channels-last at the last stage's size."""
        h, w = self.size
        channels = last_feature.shape[0]
        hidden_rs = BandResampler(condition, (h, w))
        centers_rs = BandResampler(centers, (h, w))
        self.pixels[..., :channels].copy_(last_feature.permute(1, 2, 0))
        self.pixels[..., channels].copy_(rel)
        for y0, y1 in self.bands:
            n = (y1 - y0) * w
            hidden = hidden_rs.band(y0, y1, out=self.resized_condition[:y1 - y0]).view(n, -1)
            activation = torch.ops.aten.gelu_(hidden.addmm_(self.pixels[y0:y1].view(n, -1), self.x_weight))
            torch.addmm(self.last_bias, activation, self.last_weight, out=self.logits[y0 * w:y1 * w])
        factors = self.lb.logit_factors(*self.clb.parameters_from_logits(self.logits))
        for y0, y1 in self.bands:
            rows = y1 - y0
            n = rows * w
            if self.depth_only:
                band_probs, band_centers = self.probs_scratch[:rows], self.centers_scratch[:rows]
            else:
                band_probs, band_centers = self.probs[image, y0:y1], self.centers[image, y0:y1]
            band_probs = self.lb.probs_into(factors[y0 * w:y1 * w], band_probs.view(n, -1), self.basis)
            if self.confidence is not None:
                # Before P is multiplied into D (in place with depth_only); the band's C buffer is written just
                # below, so until then it is free scratch for P log P.
                bin_confidence(band_probs, dim=-1, out=self.confidence[image, y0:y1].view(n, 1),
                               scratch=band_centers.view(n, -1))
            band_centers = centers_rs.band(y0, y1, out=band_centers).view(n, -1)
            products = band_probs.mul_(band_centers) if self.depth_only else band_probs * band_centers
            torch.sum(products, dim=-1, keepdim=True, out=self.depth[image, y0:y1].view(n, 1))
