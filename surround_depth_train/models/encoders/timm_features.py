"""Feature encoders from timm (``features_only``), e.g. the ResNet-18 encoder of Monodepth2 and HR-Depth.

Weights are never downloaded: timm is always called with ``pretrained=False``; ImageNet or public depth weights
are loaded from local files by ``surround_depth_train.models.pretrained``.
"""
from __future__ import annotations

import timm
import torch
from torch import Tensor, nn

__all__ = ['TimmEncoder']


class TimmEncoder(nn.Module):
    """A timm backbone returning its feature pyramid, finest first.

    For ``resnet18`` the module names equal torchvision's (``conv1``, ``bn1``, ``layer1.0.conv1``, ...) and the
    features are ``relu(bn1(conv1))`` (64 ch, 1/2) and ``layer1..4`` (64, 128, 256, 512 ch at 1/4 .. 1/32), exactly
    Monodepth2's ``ResnetEncoder`` features.

    Attributes:
        channels: channels per feature level.
        reductions: stride of each level relative to the input.
    """

    def __init__(self, name: str, **timm_kwargs):
        super().__init__()
        if not timm.is_model(name):
            raise ValueError(f'timm has no model {name!r}; see timm.list_models() for the names')
        try:
            self.body = timm.create_model(name, features_only=True, pretrained=False, **timm_kwargs)
        except (RuntimeError, TypeError, ValueError) as exc:
            raise ValueError(f'timm model {name!r} cannot be built with features_only=True: {exc}') from exc
        self.name = name
        self.channels: list[int] = list(self.body.feature_info.channels())
        self.reductions: list[int] = list(self.body.feature_info.reduction())
        if any(b <= a for a, b in zip(self.reductions, self.reductions[1:])):
            raise ValueError(f'timm model {name!r} gives features at strides {self.reductions}; a depth decoder '
                             f'needs a pyramid of increasing strides (a CNN or hierarchical ViT backbone)')
        cfg = getattr(self.body, 'pretrained_cfg', None) or {}
        self.imagenet_mean = tuple(cfg.get('mean', (0.485, 0.456, 0.406)))
        self.imagenet_std = tuple(cfg.get('std', (0.229, 0.224, 0.225)))

    def forward(self, x: Tensor) -> list[Tensor]:
        return list(self.body(x))

    def load_backbone_state(self, state: dict[str, torch.Tensor]) -> tuple[list[str], list[str]]:
        """Load a timm/torchvision classification state dict; returns ``(missing, unexpected)`` keys."""
        result = self.body.load_state_dict(state, strict=False)
        return list(result.missing_keys), list(result.unexpected_keys)
