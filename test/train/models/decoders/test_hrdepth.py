"""HR-Depth's nested decoder: published size, taps and the unused reference convolutions."""
from __future__ import annotations

import torch

from surround_depth_train.models.decoders import HRDepthDecoder


def _count(m) -> int:
    return sum(p.numel() for p in m.parameters())


def test_unused_reference_convolutions_are_kept_by_default():
    kept, dropped = HRDepthDecoder(), HRDepthDecoder(keep_unused=False)
    assert _count(kept) + 11_176_512 == 14_100_644  # with ResNet-18: the paper's 14.10 M
    assert {k.split('.')[1] for k in kept.state_dict()} - {k.split('.')[1] for k in dropped.state_dict()} == {
        'X_00_Conv_0', 'X_01_Conv_0', 'X_02_Conv_0', 'X_03_Conv_0'}


def test_features_run_coarse_to_fine_and_end_at_the_output_size():
    decoder = HRDepthDecoder()
    feats = [torch.rand(1, c, 64 // s, 96 // s) for c, s in zip([64, 64, 128, 256, 512], [2, 4, 8, 16, 32])]
    out = decoder(feats, (64, 96), scales=(0, 1, 2, 3))
    assert [f.shape[1] for f in out.features] == decoder.feature_channels == [256, 128, 64, 32, 16]
    assert [f.shape[-2:] for f in out.features][-1] == (64, 96)
    assert [out.disparities[s].shape[-1] for s in range(4)] == [96, 48, 24, 12]


def test_monovit_input_mapping_adds_attention_modules():
    decoder = HRDepthDecoder(input_channels=[64, 128, 216, 288, 288], disp_name='dispconv{}')
    assert {'f1', 'f2', 'f3', 'f4', 'dispconv0'} <= set(decoder.convs)
