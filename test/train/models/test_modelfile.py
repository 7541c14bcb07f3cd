"""The model file format: round trips, training checkpoints, and the errors that name the fix."""
from __future__ import annotations

import pytest
import torch

from surround_depth_train.models import MODEL_FORMAT_VERSION, create_model, load_model, read_model_file, save_model
from surround_depth_train.models.modelfile import ModelFileError


@pytest.fixture
def model():
    torch.manual_seed(0)
    return create_model('tiny_student_mb', max_depth=60.0, bins={'bin_centers_type': 'normed'})


def _save(path, model, **kwargs):
    return save_model(path, model, name='tiny_student_mb',
                      kwargs={'max_depth': 60.0, 'bins': {'bin_centers_type': 'normed'}, 'pretrained': '/x'},
                      input_size=(64, 96), **kwargs)


def test_model_file_round_trip_rebuilds_the_same_model(tmp_path, model):
    path = _save(tmp_path / 'model.pt', model)
    loaded, meta = load_model(path)
    images = torch.rand(2, 3, 64, 96)
    with torch.no_grad():
        torch.testing.assert_close(loaded(images).depth, model.eval()(images).depth)
    assert not loaded.training
    assert meta['name'] == 'tiny_student_mb' and meta['format_version'] == MODEL_FORMAT_VERSION
    assert meta['kwargs'] == {'max_depth': 60.0, 'bins': {'bin_centers_type': 'normed'}}  # pretrained dropped
    assert meta['input_size'] == [64, 96] and meta['depth_range'] == [0.1, 60.0]
    assert meta['head'] == {'type': 'metric_bins', 'n_bins': 16, 'bin_centers_type': 'normed'}
    assert len(meta['normalisation']['mean']) == 3 and 'state_dict' not in meta


def test_file_is_a_plain_dict_that_loads_with_weights_only(tmp_path, model):
    obj = torch.load(_save(tmp_path / 'model.pt', model), weights_only=True)
    assert isinstance(obj, dict) and obj['format'] == 'surround_depth_model'


def test_training_checkpoint_loads_as_a_model_and_keeps_its_state(tmp_path, model):
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(torch.rand(1, 3, 64, 96)).depth.mean().backward()
    optimizer.step()
    extra = {'optimizer': optimizer.state_dict(), 'rng': {'torch': torch.get_rng_state()}, 'epoch': 2, 'step': 40}
    path = _save(tmp_path / 'ckpt.pt', model, extra=extra)
    loaded, meta = load_model(path)
    assert meta['epoch'] == 2 and meta['step'] == 40
    restored = torch.optim.AdamW(loaded.parameters(), lr=1e-3)
    restored.load_state_dict(meta['optimizer'])
    assert torch.equal(meta['rng']['torch'], extra['rng']['torch'])


def test_extra_state_must_be_plain(tmp_path, model):
    import numpy as np
    with pytest.raises(TypeError, match='ndarray.*torch.from_numpy'):
        _save(tmp_path / 'ckpt.pt', model, extra={'rng': {'numpy': np.zeros(3)}})
    with pytest.raises(ValueError, match='collide'):
        _save(tmp_path / 'ckpt.pt', model, extra={'name': 'x'})
    assert not (tmp_path / 'ckpt.pt').exists()


def test_unregistered_name_is_refused_when_saving(tmp_path, model):
    with pytest.raises(ModelFileError, match='not a registered model'):
        save_model(tmp_path / 'm.pt', model, name='nope', kwargs={}, input_size=(64, 96))


def test_a_bare_state_dict_is_refused_with_a_hint(tmp_path, model):
    torch.save(model.state_dict(), tmp_path / 'bare.pt')
    with pytest.raises(ModelFileError, match='bare state dict'):
        load_model(tmp_path / 'bare.pt')


def test_a_newer_format_version_asks_for_an_update(tmp_path, model):
    obj = read_model_file(_save(tmp_path / 'model.pt', model))
    obj['format_version'] = MODEL_FORMAT_VERSION + 1
    torch.save(obj, tmp_path / 'newer.pt')
    with pytest.raises(ModelFileError, match='update surround_depth_train'):
        load_model(tmp_path / 'newer.pt')


def test_an_unknown_registry_name_is_named(tmp_path, model):
    obj = read_model_file(_save(tmp_path / 'model.pt', model))
    obj['name'] = 'gone_model'
    torch.save(obj, tmp_path / 'gone.pt')
    with pytest.raises(ModelFileError, match="'gone_model'.*not registered"):
        load_model(tmp_path / 'gone.pt')


def test_a_file_that_needs_unpickling_is_not_a_model_file(tmp_path):
    torch.save({'format': 'surround_depth_model', 'obj': object()}, tmp_path / 'evil.pt')
    with pytest.raises(ModelFileError, match='weights_only'):
        load_model(tmp_path / 'evil.pt')
    with pytest.raises(FileNotFoundError):
        load_model(tmp_path / 'missing.pt')
