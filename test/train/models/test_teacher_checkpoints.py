"""Checkpoint loaders of the teacher: layouts, key reports, relative backbones and architecture checks.

Files are built in tmp_path with the official key layout; the official-layout reference checkpoint of a reduced
model lives in test/fixtures/teacher (see test_teacher_model.py for how it was produced).
"""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from surround_depth_train.models import create_model
from surround_depth_train.models.teacher import (CheckpointError, DepthAnythingMetric, EncoderSpec,
                                                 detect_architecture, load_depth_anything)
from surround_depth_train.models.teacher.checkpoints import official_metric_key

FIXTURES = Path(__file__).resolve().parents[2] / 'fixtures' / 'teacher'


def _official_state() -> dict[str, torch.Tensor]:
    """The reference checkpoint's keys without wrapper and prefix (the official model's own state-dict names)."""
    ckpt = torch.load(FIXTURES / 'official_metric_reduced.pt', weights_only=True)
    return {k.removeprefix('module.'): v for k, v in ckpt['model'].items()}


def _reference_model(**overrides) -> DepthAnythingMetric:
    io = torch.load(FIXTURES / 'official_metric_reduced_io.pt', weights_only=True)
    c = io['config']
    kwargs = dict(encoder=EncoderSpec(c['embed_dim'], c['depth'], c['num_heads'], c['features'],
                                      tuple(c['out_channels'])),
                  pretrain_size=c['pretrain_size'], n_bins=c['n_bins'], bin_embedding_dim=c['bin_embedding_dim'],
                  input_size=tuple(c['network_size']))
    return DepthAnythingMetric(**{**kwargs, **overrides})


def _assert_holds(model: DepthAnythingMetric, official: dict[str, torch.Tensor]) -> None:
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, official[official_metric_key(key)].to(value.dtype), atol=0, rtol=0)


@pytest.mark.parametrize('layout', ['model_key_and_module_prefix', 'module_prefix_only', 'bare', 'native'])
def test_loader_accepts_wrapped_prefixed_bare_and_native_layouts(tmp_path, layout):
    official = _official_state()
    if layout == 'model_key_and_module_prefix':
        obj = {'model': {'module.' + k: v for k, v in official.items()}}
    elif layout == 'module_prefix_only':
        obj = {'module.' + k: v for k, v in official.items()}
    elif layout == 'bare':
        obj = official
    else:
        donor = _reference_model()
        load_depth_anything(donor, official)
        obj = donor.state_dict()
    torch.save(obj, tmp_path / 'ckpt.pt')
    model = _reference_model()
    report = load_depth_anything(model, tmp_path / 'ckpt.pt')
    assert report.ok and not report.fresh
    assert report.layout == ('native' if layout == 'native' else 'metric')
    assert len(report.loaded) == len(model.state_dict())
    _assert_holds(model, official)


def test_loader_reports_missing_and_unexpected_keys():
    official = _official_state()
    del official['core.core.pretrained.blocks.2.ls1.gamma']
    del official['seed_projector._net.2.bias']
    official['core.core.pretrained.register_tokens'] = torch.zeros(1, 4, 64)
    with pytest.raises(CheckpointError, match=r'2 missing: .*pretrained\.blocks\.2\.ls1\.gamma') as err:
        load_depth_anything(_reference_model(), official)
    assert 'bins.seed_projector._net.2.bias' in str(err.value)
    assert '1 unexpected: pretrained.register_tokens' in str(err.value)

    model = _reference_model()
    before = model.pretrained.blocks[2].ls1.gamma.detach().clone()
    report = load_depth_anything(model, official, strict=False)
    assert report.missing == ['bins.seed_projector._net.2.bias', 'pretrained.blocks.2.ls1.gamma']
    assert report.unexpected == ['pretrained.register_tokens']
    assert not report.ok
    torch.testing.assert_close(model.pretrained.blocks[2].ls1.gamma, before)
    torch.testing.assert_close(model.pretrained.blocks[3].ls1.gamma,
                               official['core.core.pretrained.blocks.3.ls1.gamma'].float())


def test_loader_loads_a_relative_backbone_into_encoder_and_dpt_with_the_head_fresh(tmp_path):
    official = _official_state()
    relative = {k.removeprefix('core.core.'): v for k, v in official.items() if k.startswith('core.core.')}
    assert all(k.startswith(('pretrained.', 'depth_head.')) for k in relative)
    torch.save(relative, tmp_path / 'depth_anything_vits14.pth')
    torch.manual_seed(0)
    model = _reference_model()
    head_before = {k: v.clone() for k, v in model.bins.state_dict().items()}
    report = load_depth_anything(model, tmp_path / 'depth_anything_vits14.pth')
    assert report.layout == 'relative' and report.ok
    assert report.fresh == sorted('bins.' + k for k in head_before)
    assert 'freshly initialised' in str(report)
    for key, value in model.state_dict().items():
        if key.startswith('bins.'):
            torch.testing.assert_close(value, head_before[key.removeprefix('bins.')])
        else:
            torch.testing.assert_close(value, relative[key].to(value.dtype))


def test_loader_refuses_vitb_checkpoint_for_vitl():
    with torch.device('meta'):
        vitb = DepthAnythingMetric(encoder='vitb')
        vitl = DepthAnythingMetric(encoder='vitl')
    checkpoint = {'model': {'module.' + official_metric_key(k): v for k, v in vitb.state_dict().items()}}
    assert detect_architecture(checkpoint).variant == 'vitb'
    with pytest.raises(CheckpointError, match=r'looks like vitb \(embed_dim 768, 12 blocks, DPT features 128'):
        load_depth_anything(vitl, checkpoint)


def test_loader_refuses_a_relative_vitl_backbone_for_the_tiny_teacher(tmp_path):
    with torch.device('meta'):
        vitl = DepthAnythingMetric(encoder='vitl')
    relative = {k: v for k, v in vitl.state_dict().items() if not k.startswith('bins.')}
    info = detect_architecture(relative)
    assert (info.layout, info.variant) == ('relative', 'vitl')
    with pytest.raises(CheckpointError, match='looks like vitl .* but the model is tiny'):
        load_depth_anything(create_model('depth_anything_tiny_metric'), relative)


def test_loader_refuses_a_head_of_another_bin_count():
    with pytest.raises(CheckpointError, match=r'shapes differ .*seed_bin_regressor'):
        load_depth_anything(_reference_model(n_bins=32), _official_state())


def test_loader_rejects_files_that_are_not_depth_anything_checkpoints(tmp_path):
    torch.save({'encoder.conv1.weight': torch.zeros(1)}, tmp_path / 'other.pt')
    with pytest.raises(CheckpointError, match='not a Depth Anything checkpoint'):
        load_depth_anything(_reference_model(), tmp_path / 'other.pt')
    with pytest.raises(FileNotFoundError, match='does not exist'):
        load_depth_anything(_reference_model(), tmp_path / 'missing.pt')
    (tmp_path / 'garbage.pt').write_bytes(b'not a torch file')
    with pytest.raises(CheckpointError, match='cannot read checkpoint'):
        load_depth_anything(_reference_model(), tmp_path / 'garbage.pt')


def test_registered_factory_loads_a_checkpoint_path(tmp_path):
    torch.manual_seed(1)
    donor = create_model('depth_anything_tiny_metric')
    official_layout = {'model': {'module.' + official_metric_key(k): v for k, v in donor.state_dict().items()}}
    torch.save(official_layout, tmp_path / 'tiny_metric.pt')
    model = create_model('depth_anything_tiny_metric', checkpoint=str(tmp_path / 'tiny_metric.pt'))
    assert model.checkpoint_report.layout == 'metric' and model.checkpoint_report.ok
    images = torch.rand(1, 3, 42, 56)
    with torch.no_grad():
        torch.testing.assert_close(model(images).depth, donor(images).depth)
