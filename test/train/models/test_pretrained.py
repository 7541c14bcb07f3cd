"""Initialisation from local weights in the public key layouts (files built here, nothing downloaded)."""
from __future__ import annotations

import re

import pytest
import torch
import torchvision

from surround_depth_train.models import create_model
from surround_depth_train.models.pretrained import load_pretrained


def _random_like(model, prefix: str) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return {k[len(prefix):]: torch.randn(v.shape, generator=g) if v.is_floating_point() else v.clone()
            for k, v in model.state_dict().items() if k.startswith(prefix)}


def _monodepth2_decoder_file(ours: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Our decoder keys -> Monodepth2's ``decoder.<index>`` layout (upconv(4,0), (4,1), ..., (0,1), dispconv 0..3)."""
    out = {}
    for key, value in ours.items():
        m = re.fullmatch(r'convs\.upconv_(\d)_(\d)\.(.+)', key)
        if m:
            out[f'decoder.{2 * (4 - int(m.group(1))) + int(m.group(2))}.{m.group(3)}'] = value
        else:
            m = re.fullmatch(r'convs\.dispconv_(\d)\.(.+)', key)
            out[f'decoder.{10 + int(m.group(1))}.{m.group(2)}'] = value
    return out


def _torchvision_resnet18() -> dict[str, torch.Tensor]:
    torch.manual_seed(2)
    return torchvision.models.resnet18().state_dict()


def _assert_loaded(model, expected: dict[str, torch.Tensor], prefix: str) -> None:
    state = model.state_dict()
    for key, value in expected.items():
        torch.testing.assert_close(state[prefix + key], value, rtol=0, atol=0)


@pytest.mark.parametrize('with_head', [False, True])
def test_monodepth2_checkpoint_folder_loads_encoder_and_decoder(tmp_path, with_head):
    resnet = _torchvision_resnet18()
    torch.save({**{f'encoder.{k}': v for k, v in resnet.items()}, 'height': 192, 'width': 640,
                'use_stereo': False}, tmp_path / 'encoder.pth')
    decoder = _random_like(create_model('monodepth2'), 'decoder.')
    torch.save(_monodepth2_decoder_file(decoder), tmp_path / 'depth.pth')
    model = create_model('monodepth2_mb' if with_head else 'monodepth2', pretrained=str(tmp_path))
    _assert_loaded(model, {k: v for k, v in resnet.items() if not k.startswith('fc.')}, 'encoder.body.')
    _assert_loaded(model, decoder, 'decoder.')
    report = model.load_report
    assert report.metadata == {'height': 192, 'width': 640, 'use_stereo': False}
    assert sorted(report.unused) == ['encoder.pth:encoder.fc.bias', 'encoder.pth:encoder.fc.weight']
    assert report.loaded_parameters == 14_329_236
    fresh = sum(p.numel() for p in model.metric_bins.parameters()) if with_head else 0
    assert report.initialised_parameters == fresh
    assert all(k.startswith('metric_bins.') for k in report.initialised)
    assert 'freshly initialised' in report.summary()


def test_imagenet_resnet_file_initialises_only_the_encoder(tmp_path):
    resnet = _torchvision_resnet18()
    torch.save(resnet, tmp_path / 'resnet18.pth')
    model = create_model('timm_student', backbone='resnet18', pretrained=str(tmp_path / 'resnet18.pth'))
    _assert_loaded(model, {k: v for k, v in resnet.items() if not k.startswith('fc.')}, 'encoder.body.')
    assert model.load_report.loaded_parameters == 11_176_512
    assert all(k.startswith('decoder.') for k in model.load_report.initialised)


def test_hrdepth_checkpoint_with_alias_keys_loads(tmp_path):
    resnet = _torchvision_resnet18()
    torch.save({f'encoder.{k}': v for k, v in resnet.items()}, tmp_path / 'encoder.pth')
    decoder = _random_like(create_model('hrdepth'), 'decoder.')
    aliases = {f'decoder.{i}.{k.split(".", 2)[2]}': v for i, (k, v) in enumerate(decoder.items())}
    torch.save({**decoder, **aliases}, tmp_path / 'depth.pth')
    model = create_model('hrdepth_mb', pretrained=str(tmp_path))
    _assert_loaded(model, decoder, 'decoder.')
    assert model.load_report.loaded_parameters == 14_100_644
    assert len(model.load_report.aliases) == len(aliases)


def _mpvit_aliases(encoder: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The public MPViT layout repeats each path's shared cpe/crpe under every block."""
    out = {}
    layers: dict[str, set[str]] = {}
    for key in encoder:
        m = re.match(r'(mhca_stages\.\d+\.mhca_blks\.\d+)\.MHCA_layers\.(\d+)\.', key)
        if m:
            layers.setdefault(m.group(1), set()).add(m.group(2))
    for key, value in encoder.items():
        m = re.fullmatch(r'(mhca_stages\.\d+\.mhca_blks\.\d+)\.(cpe|crpe)\.(.+)', key)
        if m:
            for layer in layers[m.group(1)]:
                out[f'{m.group(1)}.MHCA_layers.{layer}.{m.group(2)}.{m.group(3)}'] = value
                if m.group(2) == 'crpe':
                    out[f'{m.group(1)}.MHCA_layers.{layer}.factoratt_crpe.crpe.{m.group(3)}'] = value
    return out


def test_monovit_checkpoint_and_mpvit_imagenet_file_load(tmp_path):
    reference = create_model('monovit')
    encoder = _random_like(reference, 'encoder.')
    decoder = _random_like(reference, 'decoder.')
    torch.save({**encoder, **_mpvit_aliases(encoder), 'height': 192, 'width': 640}, tmp_path / 'encoder.pth')
    torch.save(decoder, tmp_path / 'depth.pth')
    model = create_model('monovit_mb', pretrained=str(tmp_path))
    _assert_loaded(model, encoder, 'encoder.')
    _assert_loaded(model, decoder, 'decoder.')
    assert model.load_report.loaded_parameters == 27_870_108
    assert model.load_report.aliases and not model.load_report.unused

    imagenet = {'model': {**encoder, 'cls_head.cls.weight': torch.zeros(1000, 288),
                          'cls_head.cls.bias': torch.zeros(1000)}}
    torch.save(imagenet, tmp_path / 'mpvit_small.pth')
    model = create_model('monovit', pretrained=str(tmp_path / 'mpvit_small.pth'))
    _assert_loaded(model, encoder, 'encoder.')
    assert sorted(model.load_report.unused) == ['mpvit_small.pth:cls_head.cls.bias',
                                                'mpvit_small.pth:cls_head.cls.weight']
    assert all(k.startswith('decoder.') for k in model.load_report.initialised)


def test_missing_weights_are_reported_with_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match='not found'):
        create_model('tiny_student', pretrained=str(tmp_path / 'nope.pth'))
    with pytest.raises(FileNotFoundError, match='encoder.pth'):
        create_model('monodepth2', pretrained=str(tmp_path))


class _Custom:
    pass


def test_files_that_need_unpickling_are_refused(tmp_path):
    torch.save({'obj': _Custom()}, tmp_path / 'evil.pth')
    with pytest.raises(ValueError, match='weights_only=True'):
        create_model('tiny_student', pretrained=str(tmp_path / 'evil.pth'))


def test_unrelated_or_mismatched_checkpoints_are_refused(tmp_path):
    torch.save({'something.else': torch.zeros(3)}, tmp_path / 'other.pth')
    with pytest.raises(ValueError, match='nothing in'):
        create_model('monodepth2', pretrained=str(tmp_path / 'other.pth'))
    torch.save({'conv1.weight': torch.zeros(1)}, tmp_path / 'bad.pth')
    with pytest.raises(ValueError, match='shape mismatch'):
        load_pretrained(create_model('monodepth2'), tmp_path / 'bad.pth', family='monodepth2')
