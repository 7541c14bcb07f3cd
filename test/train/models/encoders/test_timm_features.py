"""timm feature encoders."""
from __future__ import annotations

import pytest
import torch

from surround_depth_train.models.encoders import TimmEncoder


def test_resnet18_gives_monodepth2_features_with_torchvision_names():
    encoder = TimmEncoder('resnet18')
    assert encoder.channels == [64, 64, 128, 256, 512] and encoder.reductions == [2, 4, 8, 16, 32]
    assert 'body.layer1.0.conv1.weight' in encoder.state_dict()
    feats = encoder(torch.rand(1, 3, 64, 64))
    assert [f.shape[1] for f in feats] == encoder.channels


def test_unknown_or_flat_backbones_are_refused():
    with pytest.raises(ValueError, match='no model'):
        TimmEncoder('resnet_does_not_exist')
    with pytest.raises(ValueError, match='increasing strides'):
        TimmEncoder('test_vit')
