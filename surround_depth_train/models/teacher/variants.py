"""Registered teachers: ``depth_anything_{vits,vitb,vitl}_metric`` and the ``depth_anything_tiny_metric`` stand-in,
all registered with ``teacher=True`` (``registry.is_teacher``).

Every factory takes the same keywords; ``checkpoint`` is a local path to an official metric checkpoint, a relative
``depth_anything_vit{s,b,l}14.pth`` backbone (the bins head then starts fresh) or a native state dict.
"""
from __future__ import annotations

import os
from typing import Sequence

from surround_depth_train.models.registry import register_model
from surround_depth_train.models.teacher.checkpoints import load_depth_anything
from surround_depth_train.models.teacher.depth_anything import DepthAnythingMetric

__all__ = ['depth_anything_vits_metric', 'depth_anything_vitb_metric', 'depth_anything_vitl_metric',
           'depth_anything_tiny_metric']


def _build(encoder: str, *, min_depth: float, max_depth: float, input_size: int | Sequence[int] | None,
           checkpoint: str | os.PathLike | None, n_bins: int, bin_centers_type: str) -> DepthAnythingMetric:
    model = DepthAnythingMetric(encoder=encoder, min_depth=min_depth, max_depth=max_depth, input_size=input_size,
                                n_bins=n_bins, bin_centers_type=bin_centers_type)
    model.checkpoint_report = load_depth_anything(model, checkpoint) if checkpoint is not None else None
    return model


@register_model('depth_anything_vits_metric', teacher=True)
def depth_anything_vits_metric(*, min_depth: float = 1e-3, max_depth: float = 80.0,
                               input_size: int | Sequence[int] | None = 518, checkpoint: str | None = None,
                               n_bins: int = 64, bin_centers_type: str = 'softplus') -> DepthAnythingMetric:
    """ViT-S/14 teacher (DPT features 64); no official metric checkpoint exists, load the relative backbone."""
    return _build('vits', min_depth=min_depth, max_depth=max_depth, input_size=input_size, checkpoint=checkpoint,
                  n_bins=n_bins, bin_centers_type=bin_centers_type)


@register_model('depth_anything_vitb_metric', teacher=True)
def depth_anything_vitb_metric(*, min_depth: float = 1e-3, max_depth: float = 80.0,
                               input_size: int | Sequence[int] | None = 518, checkpoint: str | None = None,
                               n_bins: int = 64, bin_centers_type: str = 'softplus') -> DepthAnythingMetric:
    """ViT-B/14 teacher (DPT features 128); no official metric checkpoint exists, load the relative backbone."""
    return _build('vitb', min_depth=min_depth, max_depth=max_depth, input_size=input_size, checkpoint=checkpoint,
                  n_bins=n_bins, bin_centers_type=bin_centers_type)


@register_model('depth_anything_vitl_metric', teacher=True)
def depth_anything_vitl_metric(*, min_depth: float = 1e-3, max_depth: float = 80.0,
                               input_size: int | Sequence[int] | None = 518, checkpoint: str | None = None,
                               n_bins: int = 64, bin_centers_type: str = 'softplus') -> DepthAnythingMetric:
    """ViT-L/14 teacher (335.79 M parameters), the architecture of the official metric checkpoints.

    Use ``max_depth=80`` with ``depth_anything_metric_depth_outdoor.pt`` and ``10`` with the indoor one.
    """
    return _build('vitl', min_depth=min_depth, max_depth=max_depth, input_size=input_size, checkpoint=checkpoint,
                  n_bins=n_bins, bin_centers_type=bin_centers_type)


@register_model('depth_anything_tiny_metric', teacher=True)
def depth_anything_tiny_metric(*, min_depth: float = 1e-3, max_depth: float = 80.0,
                               input_size: int | Sequence[int] | None = 56, checkpoint: str | None = None,
                               n_bins: int = 64, bin_centers_type: str = 'softplus') -> DepthAnythingMetric:
    """Test stand-in with the teacher's interface: 4 ViT blocks of width 64, DPT features 32 (~0.8 M parameters).

    Not a Depth Anything model; it runs a training step on the CPU in well under a second at small sizes.
    """
    return _build('tiny', min_depth=min_depth, max_depth=max_depth, input_size=input_size, checkpoint=checkpoint,
                  n_bins=n_bins, bin_centers_type=bin_centers_type)
