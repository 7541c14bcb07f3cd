"""Student depth networks: an encoder, a Monodepth2-family decoder and, for the "+ MB" variants, MetricBins.

Registered names (all take ``min_depth``, ``max_depth``, ``pretrained`` and ``bins``):

========================  ======================================================  =========================
name                      architecture                                            parameters (paper Table I)
========================  ======================================================  =========================
``monodepth2``            ResNet-18 (timm) + Monodepth2 decoder                   14,329,236 (14.33 M)
``monodepth2_mb``         + MetricBins                                            15,030,437 (15.03 M)
``hrdepth``               ResNet-18 + HR-Depth nested fSE decoder                 14,100,644 (14.10 M)
``hrdepth_mb``            + MetricBins                                            14,801,845 (14.80 M)
``monovit``               MPViT-small + MonoViT's HR decoder                      27,870,108 (27.87 M)
``monovit_mb``            + MetricBins                                            28,305,869 (28.31 M)
``timm_student[_mb]``     any timm ``features_only`` CNN (``backbone=``) + Monodepth2 decoder
``tiny_student[_mb]``     timm ``test_efficientnet`` + a narrow decoder (+ small bins): trains in seconds on CPU
``monodepth2_ab``         + AdaBins (Table IV)                                    16,379,156 (16.36 M)
``monodepth2_lb``         + LocalBins (Table IV)                                  18,198,992 (18.20 M)
``{hrdepth,monovit,tiny_student}_{ab,lb}``  the other students with the Table IV heads
========================  ======================================================  =========================

The ``_ab`` / ``_lb`` heads (``bins.adabins``, ``bins.localbins``) return the same ``DepthOutput`` (per-pixel
``centers`` and ``probs``, 64 bins by default so they pair with the teacher's for CKD and VRKD); their docstrings
explain the parameter counts against Table IV. LocalBins brings its own decoder (four up-sampling blocks on the
encoder's skips, ``bins.upsample_block``): it is the one head that also reads the encoder features below the
bottleneck (``takes_encoder_skips``).

Where MetricBins taps the networks (this is what makes the head's share +0.70 M for the ResNet students and
+0.44 M for MonoViT): the bottleneck is the deepest encoder feature (512 channels for ResNet-18, the raw 288-channel
MPViT output for MonoViT), the four refinement stages are the decoder outputs at 1/16, 1/8, 1/4, 1/2 (256, 128, 64,
32 channels) and the last feature is the full-resolution 16-channel decoder output, concatenated with the
student's own sigmoid disparity as the "relative depth".

Without the head, depth is Monodepth2's ``1 / (1/max + (1/min - 1/max) * sigmoid_disparity)``.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch
from torch import Tensor, nn

from surround_depth_train.models.bins import AdaBins, LocalBins, MetricBins
from surround_depth_train.models.decoders import HRDepthDecoder, Monodepth2Decoder, disparity_to_depth
from surround_depth_train.models.encoders import TimmEncoder, mpvit_small
from surround_depth_train.models.output import DepthOutput
from surround_depth_train.models.registry import register_model

__all__ = ['DepthStudent', 'MONODEPTH2_NORMALISATION', 'IDENTITY_NORMALISATION', 'TINY_BINS']

MONODEPTH2_NORMALISATION = ((0.45, 0.45, 0.45), (0.225, 0.225, 0.225))  # Monodepth2 / HR-Depth: (x - 0.45) / 0.225
IDENTITY_NORMALISATION = ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0))            # MonoViT feeds [0, 1] RGB as is
TINY_BINS = {'n_bins': 16, 'bin_embedding_dim': 16}
DEFAULT_MIN_DEPTH = 0.1
DEFAULT_MAX_DEPTH = 80.0
BINS_HEADS = {'metric_bins': MetricBins, 'adabins': AdaBins, 'localbins': LocalBins}


class DepthStudent(nn.Module):
    """Encoder + decoder (+ MetricBins); takes RGB in ``[0, 1]`` and returns a :class:`DepthOutput`.

    Args:
        encoder: returns features finest first (``channels`` attribute).
        decoder: ``(features, out_size) -> DecoderOutput`` with ``feature_channels`` coarse -> fine.
        min_depth, max_depth: metres; the disparity mapping's range and the bins' defaults.
        bins: ``None`` for a plain student, else the head's keyword overrides (``{}`` for the defaults).
        normalisation: ``(mean, std)`` per RGB channel applied inside the model.
        head: the bins head: ``'metric_bins'`` (MetricBins), ``'adabins'`` or ``'localbins'`` (Table IV); it sits
            in ``self.metric_bins`` whichever it is (one attribute, so every caller finds the head in one place).
    """

    def __init__(self, encoder: nn.Module, decoder: nn.Module, *, min_depth: float, max_depth: float,
                 bins: Mapping[str, Any] | None, normalisation: tuple[Sequence[float], Sequence[float]],
                 head: str = 'metric_bins'):
        super().__init__()
        if not 0 < min_depth < max_depth:
            raise ValueError(f'need 0 < min_depth < max_depth, got min_depth={min_depth}, max_depth={max_depth}')
        self.encoder = encoder
        self.decoder = decoder
        self.min_depth = float(min_depth)
        self.max_depth = float(max_depth)
        mean, std = normalisation
        self.normalisation = (tuple(float(m) for m in mean), tuple(float(s) for s in std))
        self.register_buffer('pixel_mean', torch.tensor(self.normalisation[0]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer('pixel_std', torch.tensor(self.normalisation[1]).view(1, 3, 1, 1), persistent=False)
        self.metric_bins: MetricBins | AdaBins | LocalBins | None = None
        if bins is not None:
            stage = list(decoder.feature_channels)
            if head not in BINS_HEADS:
                raise ValueError(f'unknown bins head {head!r}; use one of {sorted(BINS_HEADS)}')
            head_kwargs: dict[str, Any] = {'min_depth': self.min_depth, 'max_depth': self.max_depth}
            if head == 'metric_bins':
                head_kwargs['n_attractors'] = (16, 8, 4, 1)[:len(stage) - 1] if len(stage) <= 5 else None
            if getattr(BINS_HEADS[head], 'takes_encoder_skips', False):
                head_kwargs['skip_channels'] = list(encoder.channels[:-1])
            head_kwargs.update(dict(bins))
            if head_kwargs.get('n_attractors', ()) is None:
                raise ValueError(f'{len(stage) - 1} refinement stages: pass bins={{"n_attractors": [...]}}')
            self.metric_bins = BINS_HEADS[head](bottleneck_channels=encoder.channels[-1], stage_channels=stage[:-1],
                                                last_channels=stage[-1], **head_kwargs)
        # The deepest feature (stride r, ceil-rounded) must keep two pixels per side for the decoder's 3x3
        # reflection padding: sides of more than r pixels.
        self.min_input_side = int(getattr(encoder, 'reductions', [32])[-1]) + 1
        self.load_report = None  # set by models.pretrained when weights are loaded

    @property
    def has_bins(self) -> bool:
        return self.metric_bins is not None

    def forward(self, images: Tensor, depth_only: bool = False, confidence: bool = False) -> DepthOutput:
        """``images``: ``[B, 3, H, W]`` float RGB in ``[0, 1]``.

        ``depth_only=True`` (deployment, evaluation) leaves ``centers`` and ``probs`` out; without autograd the
        bins head then never writes them at full resolution (see :class:`MetricBins`). ``confidence=True`` adds
        the per-pixel confidence from the bins (computed band by band like depth); a plain student has no bins and
        returns ``confidence=None``.
        """
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f'expected images of shape [B, 3, H, W], got {tuple(images.shape)}; flatten batch and '
                             f'cameras into B and put RGB channels second')
        if not images.is_floating_point():
            raise ValueError(f'expected float images in [0, 1], got dtype {images.dtype}; divide uint8 by 255')
        size = (images.shape[-2], images.shape[-1])
        if min(size) < self.min_input_side:
            raise ValueError(f'images of {size[0]}x{size[1]} are too small for this student: both sides must be at '
                             f'least {self.min_input_side} pixels; resize the input')
        features = self.encoder((images - self.pixel_mean) / self.pixel_std)
        decoded = self.decoder(features, size)
        disparity = decoded.disparities[0]
        if self.metric_bins is None:
            return DepthOutput(depth=disparity_to_depth(disparity, self.min_depth, self.max_depth),
                               features=decoded.features)
        skips = {'skips': features[:-1]} if getattr(self.metric_bins, 'takes_encoder_skips', False) else {}
        bins = self.metric_bins(features[-1], decoded.features[:-1], decoded.features[-1], disparity,
                                depth_only=depth_only, confidence=confidence, **skips)
        return DepthOutput(depth=bins.depth, centers=bins.centers, probs=bins.probs, features=decoded.features,
                           confidence=bins.confidence)


def _bins_arg(bins: Mapping[str, Any] | None, with_head: bool, name: str) -> dict | None:
    if not with_head:
        if bins:
            raise ValueError(f'{name!r} has no bins head; use {name + "_mb"!r} to pass bins={dict(bins)}')
        return None
    return dict(bins or {})


def _finish(model: DepthStudent, pretrained: str | None, family: str) -> DepthStudent:
    if pretrained:
        from surround_depth_train.models.pretrained import load_pretrained
        load_pretrained(model, pretrained, family=family)
    return model


def _monodepth2(with_head: bool, name: str, min_depth: float, max_depth: float, pretrained: str | None,
                bins: Mapping[str, Any] | None, head: str = 'metric_bins') -> DepthStudent:
    encoder = TimmEncoder('resnet18')
    model = DepthStudent(encoder, Monodepth2Decoder(encoder.channels), min_depth=min_depth, max_depth=max_depth,
                         bins=_bins_arg(bins, with_head, name), normalisation=MONODEPTH2_NORMALISATION, head=head)
    return _finish(model, pretrained, 'monodepth2')


def _hrdepth(with_head: bool, name: str, min_depth: float, max_depth: float, pretrained: str | None,
             bins: Mapping[str, Any] | None, head: str = 'metric_bins') -> DepthStudent:
    encoder = TimmEncoder('resnet18')
    model = DepthStudent(encoder, HRDepthDecoder(encoder.channels), min_depth=min_depth, max_depth=max_depth,
                         bins=_bins_arg(bins, with_head, name), normalisation=MONODEPTH2_NORMALISATION, head=head)
    return _finish(model, pretrained, 'hrdepth')


def _monovit(with_head: bool, name: str, min_depth: float, max_depth: float, pretrained: str | None,
             bins: Mapping[str, Any] | None, drop_path_rate: float, head: str = 'metric_bins') -> DepthStudent:
    encoder = mpvit_small(drop_path_rate=drop_path_rate, monovit=True)
    decoder = HRDepthDecoder((64, 64, 128, 256, 512), input_channels=encoder.channels, disp_name='dispconv{}')
    model = DepthStudent(encoder, decoder, min_depth=min_depth, max_depth=max_depth,
                         bins=_bins_arg(bins, with_head, name), normalisation=IDENTITY_NORMALISATION, head=head)
    return _finish(model, pretrained, 'monovit')


def _timm(with_head: bool, name: str, backbone: str, decoder_channels: Sequence[int] | None, min_depth: float,
          max_depth: float, pretrained: str | None, bins: Mapping[str, Any] | None,
          head: str = 'metric_bins') -> DepthStudent:
    encoder = TimmEncoder(backbone)
    decoder = Monodepth2Decoder(encoder.channels, decoder_channels)
    model = DepthStudent(encoder, decoder, min_depth=min_depth, max_depth=max_depth,
                         bins=_bins_arg(bins, with_head, name),
                         normalisation=(encoder.imagenet_mean, encoder.imagenet_std), head=head)
    return _finish(model, pretrained, 'timm')


@register_model('monodepth2')
def monodepth2(min_depth: float = DEFAULT_MIN_DEPTH, max_depth: float = DEFAULT_MAX_DEPTH,
               pretrained: str | None = None, bins: Mapping[str, Any] | None = None) -> DepthStudent:
    """Monodepth2 with a ResNet-18 encoder."""
    return _monodepth2(False, 'monodepth2', min_depth, max_depth, pretrained, bins)


@register_model('monodepth2_mb')
def monodepth2_mb(min_depth: float = DEFAULT_MIN_DEPTH, max_depth: float = DEFAULT_MAX_DEPTH,
                  pretrained: str | None = None, bins: Mapping[str, Any] | None = None) -> DepthStudent:
    """Monodepth2 (ResNet-18) + MetricBins."""
    return _monodepth2(True, 'monodepth2', min_depth, max_depth, pretrained, bins)


@register_model('hrdepth')
def hrdepth(min_depth: float = DEFAULT_MIN_DEPTH, max_depth: float = DEFAULT_MAX_DEPTH,
            pretrained: str | None = None, bins: Mapping[str, Any] | None = None) -> DepthStudent:
    """HR-Depth with a ResNet-18 encoder."""
    return _hrdepth(False, 'hrdepth', min_depth, max_depth, pretrained, bins)


@register_model('hrdepth_mb')
def hrdepth_mb(min_depth: float = DEFAULT_MIN_DEPTH, max_depth: float = DEFAULT_MAX_DEPTH,
               pretrained: str | None = None, bins: Mapping[str, Any] | None = None) -> DepthStudent:
    """HR-Depth (ResNet-18) + MetricBins."""
    return _hrdepth(True, 'hrdepth', min_depth, max_depth, pretrained, bins)


@register_model('monovit')
def monovit(min_depth: float = DEFAULT_MIN_DEPTH, max_depth: float = DEFAULT_MAX_DEPTH,
            pretrained: str | None = None, bins: Mapping[str, Any] | None = None,
            drop_path_rate: float = 0.2) -> DepthStudent:
    """MonoViT: MPViT-small + HR decoder (stochastic depth 0.2 while training, MPViT's default in MonoViT)."""
    return _monovit(False, 'monovit', min_depth, max_depth, pretrained, bins, drop_path_rate)


@register_model('monovit_mb')
def monovit_mb(min_depth: float = DEFAULT_MIN_DEPTH, max_depth: float = DEFAULT_MAX_DEPTH,
               pretrained: str | None = None, bins: Mapping[str, Any] | None = None,
               drop_path_rate: float = 0.2) -> DepthStudent:
    """MonoViT + MetricBins."""
    return _monovit(True, 'monovit', min_depth, max_depth, pretrained, bins, drop_path_rate)


@register_model('timm_student')
def timm_student(backbone: str = 'resnet18', decoder_channels: Sequence[int] | None = None,
                 min_depth: float = DEFAULT_MIN_DEPTH, max_depth: float = DEFAULT_MAX_DEPTH,
                 pretrained: str | None = None, bins: Mapping[str, Any] | None = None) -> DepthStudent:
    """Any timm ``features_only`` backbone (strides increasing, e.g. ResNets, EfficientNets, ConvNeXts) +
    the Monodepth2 decoder; ImageNet normalisation of the backbone."""
    return _timm(False, 'timm_student', backbone, decoder_channels, min_depth, max_depth, pretrained, bins)


@register_model('timm_student_mb')
def timm_student_mb(backbone: str = 'resnet18', decoder_channels: Sequence[int] | None = None,
                    min_depth: float = DEFAULT_MIN_DEPTH, max_depth: float = DEFAULT_MAX_DEPTH,
                    pretrained: str | None = None, bins: Mapping[str, Any] | None = None) -> DepthStudent:
    """``timm_student`` + MetricBins."""
    return _timm(True, 'timm_student', backbone, decoder_channels, min_depth, max_depth, pretrained, bins)


@register_model('tiny_student')
def tiny_student(min_depth: float = DEFAULT_MIN_DEPTH, max_depth: float = DEFAULT_MAX_DEPTH,
                 pretrained: str | None = None, bins: Mapping[str, Any] | None = None) -> DepthStudent:
    """For tests and quick runs: timm's ``test_efficientnet`` (82 k parameters) + decoder widths 4..64."""
    return _timm(False, 'tiny_student', 'test_efficientnet', (4, 8, 16, 32, 64), min_depth, max_depth,
                 pretrained, bins)


@register_model('tiny_student_mb')
def tiny_student_mb(min_depth: float = DEFAULT_MIN_DEPTH, max_depth: float = DEFAULT_MAX_DEPTH,
                    pretrained: str | None = None, bins: Mapping[str, Any] | None = None) -> DepthStudent:
    """``tiny_student`` + MetricBins with 16 bins and a 16-dim embedding (override with ``bins``)."""
    return _timm(True, 'tiny_student', 'test_efficientnet', (4, 8, 16, 32, 64), min_depth, max_depth, pretrained,
                 {**TINY_BINS, **(bins or {})})


# ---- Table IV: the students with the AdaBins (``_ab``) and LocalBins (``_lb``) heads instead of MetricBins ----

TINY_ADABINS = {'n_bins': 16, 'embedding_dim': 16, 'patch_size': 8, 'num_layers': 1, 'ff_dim': 32,
                'regressor_hidden': 32, 'max_positions': 64}
TINY_LOCALBINS = {'n_bins': 16, 'bin_embedding_dim': 16, 'seed_hidden': 16, 'hidden': 16}


@register_model('monodepth2_ab')
def monodepth2_ab(min_depth: float = DEFAULT_MIN_DEPTH, max_depth: float = DEFAULT_MAX_DEPTH,
                  pretrained: str | None = None, bins: Mapping[str, Any] | None = None) -> DepthStudent:
    """Monodepth2 (ResNet-18) + AdaBins (16,379,156 parameters; Table IV: 16.36 M, see ``bins.adabins``)."""
    return _monodepth2(True, 'monodepth2', min_depth, max_depth, pretrained, bins, head='adabins')


@register_model('monodepth2_lb')
def monodepth2_lb(min_depth: float = DEFAULT_MIN_DEPTH, max_depth: float = DEFAULT_MAX_DEPTH,
                  pretrained: str | None = None, bins: Mapping[str, Any] | None = None) -> DepthStudent:
    """Monodepth2 (ResNet-18) + LocalBins (18,198,992 parameters; Table IV: 18.20 M, see ``bins.localbins``)."""
    return _monodepth2(True, 'monodepth2', min_depth, max_depth, pretrained, bins, head='localbins')


@register_model('hrdepth_ab')
def hrdepth_ab(min_depth: float = DEFAULT_MIN_DEPTH, max_depth: float = DEFAULT_MAX_DEPTH,
               pretrained: str | None = None, bins: Mapping[str, Any] | None = None) -> DepthStudent:
    """HR-Depth (ResNet-18) + AdaBins."""
    return _hrdepth(True, 'hrdepth', min_depth, max_depth, pretrained, bins, head='adabins')


@register_model('hrdepth_lb')
def hrdepth_lb(min_depth: float = DEFAULT_MIN_DEPTH, max_depth: float = DEFAULT_MAX_DEPTH,
               pretrained: str | None = None, bins: Mapping[str, Any] | None = None) -> DepthStudent:
    """HR-Depth (ResNet-18) + LocalBins."""
    return _hrdepth(True, 'hrdepth', min_depth, max_depth, pretrained, bins, head='localbins')


@register_model('monovit_ab')
def monovit_ab(min_depth: float = DEFAULT_MIN_DEPTH, max_depth: float = DEFAULT_MAX_DEPTH,
               pretrained: str | None = None, bins: Mapping[str, Any] | None = None,
               drop_path_rate: float = 0.2) -> DepthStudent:
    """MonoViT + AdaBins."""
    return _monovit(True, 'monovit', min_depth, max_depth, pretrained, bins, drop_path_rate, head='adabins')


@register_model('monovit_lb')
def monovit_lb(min_depth: float = DEFAULT_MIN_DEPTH, max_depth: float = DEFAULT_MAX_DEPTH,
               pretrained: str | None = None, bins: Mapping[str, Any] | None = None,
               drop_path_rate: float = 0.2) -> DepthStudent:
    """MonoViT + LocalBins."""
    return _monovit(True, 'monovit', min_depth, max_depth, pretrained, bins, drop_path_rate, head='localbins')


@register_model('tiny_student_ab')
def tiny_student_ab(min_depth: float = DEFAULT_MIN_DEPTH, max_depth: float = DEFAULT_MAX_DEPTH,
                    pretrained: str | None = None, bins: Mapping[str, Any] | None = None) -> DepthStudent:
    """``tiny_student`` + a small AdaBins (16 bins, 8 x 8 patches, one transformer layer of width 16)."""
    return _timm(True, 'tiny_student', 'test_efficientnet', (4, 8, 16, 32, 64), min_depth, max_depth, pretrained,
                 {**TINY_ADABINS, **(bins or {})}, head='adabins')


@register_model('tiny_student_lb')
def tiny_student_lb(min_depth: float = DEFAULT_MIN_DEPTH, max_depth: float = DEFAULT_MAX_DEPTH,
                    pretrained: str | None = None, bins: Mapping[str, Any] | None = None) -> DepthStudent:
    """``tiny_student`` + a small LocalBins (1 seed bin split four times into 16, embedding 16, LocalBins'
    decoder 32/16/8/4 channels on the encoder's 64-channel bottleneck)."""
    return _timm(True, 'tiny_student', 'test_efficientnet', (4, 8, 16, 32, 64), min_depth, max_depth, pretrained,
                 {**TINY_LOCALBINS, **(bins or {})}, head='localbins')
