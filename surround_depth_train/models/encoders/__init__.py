"""Feature encoders: timm backbones (``features_only``) and MPViT (not in timm)."""
from surround_depth_train.models.encoders.mpvit import MPViT, mpvit_small, mpvit_tiny
from surround_depth_train.models.encoders.timm_features import TimmEncoder

__all__ = ['TimmEncoder', 'MPViT', 'mpvit_small', 'mpvit_tiny']
