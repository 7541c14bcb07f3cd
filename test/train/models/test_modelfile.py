"""The model file format: round trips, training checkpoints, and the errors that name the fix."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from surround_depth_train.models import (MODEL_FORMAT_VERSION, ModelInfo, create_model, is_teacher, load_model,
                                         read_model_file, save_model)
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


def test_a_compact_copy_stores_half_precision_weights_and_deploys_like_the_original(tmp_path, model):
    from surround_depth_train.models.modelfile import write_compact_copy

    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(torch.rand(1, 3, 64, 96)).depth.mean().backward()
    optimizer.step()
    ckpt = _save(tmp_path / 'ckpt.pt', model, extra={'optimizer': optimizer.state_dict(), 'step': 3})
    full = _save(tmp_path / 'model.pt', model)
    compact = write_compact_copy(ckpt, tmp_path / 'compact.pt')
    obj = torch.load(compact, weights_only=True)
    assert 'optimizer' not in obj and 'step' not in obj  # training state left out
    floats = [v for v in obj['state_dict'].values() if v.is_floating_point()]
    assert floats and all(v.dtype == torch.float16 for v in floats)
    assert all(not v.is_floating_point() for k, v in obj['state_dict'].items() if 'num_batches_tracked' in k)
    assert compact.stat().st_size < 0.6 * full.stat().st_size
    loaded, meta = load_model(compact)
    assert all(p.dtype == torch.float32 for p in loaded.parameters())
    assert meta['training_rig'] == read_model_file(full)['training_rig']
    images = torch.rand(2, 3, 64, 96)
    with torch.no_grad():
        reference = model.eval()(images).depth
        torch.testing.assert_close(loaded(images).depth, reference, rtol=1e-2, atol=1e-2)


def test_a_compact_copy_needs_a_floating_point_dtype(tmp_path, model):
    from surround_depth_train.models.modelfile import write_compact_copy

    with pytest.raises(ValueError, match='floating-point'):
        write_compact_copy(_save(tmp_path / 'model.pt', model), tmp_path / 'c.pt', dtype=torch.int8)


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


# ---- format version 2: the training rig, ModelInfo, version-1 files --------------------------------------------

def _rig():
    from surround_depth_train.data.surroundsim import surroundsim_rig
    return surroundsim_rig()  # 640 x 384, six cameras


def test_a_camera_rig_is_recorded_resized_to_the_input_size(tmp_path, model):
    rig = _rig()
    path = _save(tmp_path / 'model.pt', model, training_rig=rig)
    _, meta = load_model(path)
    assert meta['format_version'] == 2
    recorded = meta['training_rig']
    assert [c['name'] for c in recorded] == rig.names
    expected = rig.resized(96, 64)
    for cam, ref in zip(recorded, expected):
        assert (cam['width'], cam['height']) == (96, 64) and set(cam) == {'name', 'K', 'width', 'height'}
        np.testing.assert_allclose(np.array(cam['K']), ref.K, rtol=1e-12)
    # 640 -> 96 columns: fx scales by 0.15, fy by 64 / 384
    np.testing.assert_allclose(recorded[0]['K'][0][0], rig[0].K[0, 0] * 96 / 640)
    np.testing.assert_allclose(recorded[0]['K'][1][1], rig[0].K[1, 1] * 64 / 384)


def test_a_list_rig_at_the_input_size_is_stored_as_given_and_a_wrong_size_is_refused(tmp_path, model):
    listed = [{'name': c.name, 'K': c.K.tolist(), 'width': c.width, 'height': c.height}
              for c in _rig().resized(96, 64)]
    meta = read_model_file(_save(tmp_path / 'model.pt', model, training_rig=listed))
    assert meta['training_rig'] == listed
    native = [{'name': c.name, 'K': c.K.tolist(), 'width': c.width, 'height': c.height} for c in _rig()]
    with pytest.raises(ValueError, match='640x384 images but the network input is 96x64; resize it first'):
        _save(tmp_path / 'bad.pt', model, training_rig=native)
    with pytest.raises(ValueError, match='fx, fy > 0'):
        _save(tmp_path / 'bad.pt', model, training_rig=[dict(listed[0], K=[[0, 0, 1], [0, 0, 1], [0, 0, 1]])])
    with pytest.raises(ValueError, match='unique'):
        _save(tmp_path / 'bad.pt', model, training_rig=listed[:2] * 2)
    with pytest.raises(ValueError, match='exactly the keys'):
        _save(tmp_path / 'bad.pt', model, training_rig=[{'name': 'front', 'K': listed[0]['K']}])
    assert not (tmp_path / 'bad.pt').exists()


def test_a_model_saved_without_a_rig_records_none(tmp_path, model):
    meta = read_model_file(_save(tmp_path / 'model.pt', model))
    assert meta['format_version'] == 2 and meta['training_rig'] is None


def _write_version_1(path, model):
    """A model file exactly as the version-1 code wrote it (no training_rig key)."""
    obj = {
        'format': 'surround_depth_model', 'format_version': 1, 'name': 'tiny_student_mb',
        'kwargs': {'max_depth': 60.0, 'bins': {'bin_centers_type': 'normed'}}, 'input_size': [64, 96],
        'normalisation': {'mean': [0.485, 0.456, 0.406], 'std': [0.229, 0.224, 0.225]},
        'depth_range': [0.1, 60.0], 'head': {'type': 'metric_bins', 'n_bins': 16, 'bin_centers_type': 'normed'},
        'state_dict': {k: v.detach().cpu() for k, v in model.state_dict().items()},
    }
    torch.save(obj, path)
    return path


def test_a_version_1_file_still_loads_with_no_training_rig(tmp_path, model):
    path = _write_version_1(tmp_path / 'v1.pt', model)
    loaded, meta = load_model(path)
    assert meta['format_version'] == 1 and meta['training_rig'] is None
    images = torch.rand(1, 3, 64, 96)
    with torch.no_grad():
        torch.testing.assert_close(loaded(images).depth, model.eval()(images).depth)
    info = ModelInfo.read(path)
    assert info.format_version == 1 and info.training_rig is None


def test_a_version_2_file_without_its_rig_key_or_with_a_broken_rig_is_damaged(tmp_path, model):
    obj = read_model_file(_save(tmp_path / 'model.pt', model, training_rig=_rig()))
    broken = dict(obj, training_rig=[dict(obj['training_rig'][0], width=640)])
    torch.save(broken, tmp_path / 'broken.pt')
    with pytest.raises(ModelFileError, match='damaged.*resize it first'):
        read_model_file(tmp_path / 'broken.pt')
    del obj['training_rig']
    torch.save(obj, tmp_path / 'missing.pt')
    with pytest.raises(ModelFileError, match=r"damaged.*\['training_rig'\]"):
        load_model(tmp_path / 'missing.pt')


def test_model_info_reads_what_the_engine_needs_without_building_the_model(tmp_path, model, monkeypatch):
    path = _save(tmp_path / 'model.pt', model, training_rig=_rig())
    import surround_depth_train.models.modelfile as modelfile

    def refuse(*args, **kwargs):
        raise AssertionError('ModelInfo must not build the model')

    monkeypatch.setattr(modelfile, 'create_model', refuse)
    info = ModelInfo.read(path)
    assert info.name == 'tiny_student_mb' and info.input_size == (64, 96) and info.depth_range == (0.1, 60.0)
    assert info.kwargs == {'max_depth': 60.0, 'bins': {'bin_centers_type': 'normed'}}
    assert info.head == {'type': 'metric_bins', 'n_bins': 16, 'bin_centers_type': 'normed'}
    assert info.format_version == MODEL_FORMAT_VERSION == 2
    assert not info.is_teacher and info.fully_convolutional and info.has_confidence
    assert [c['name'] for c in info.training_rig] == _rig().names
    assert ModelInfo.from_file_dict(info.to_dict()) == info
    json.dumps(info.to_dict())  # plain types: fits an exported file's metadata


def test_teachers_are_marked_and_are_not_fully_convolutional(tmp_path):
    teacher = create_model('depth_anything_tiny_metric', n_bins=16)
    path = save_model(tmp_path / 'teacher.pt', teacher, name='depth_anything_tiny_metric',
                      kwargs={'n_bins': 16}, input_size=(56, 84))
    info = ModelInfo.read(path)
    assert info.is_teacher and not info.fully_convolutional and info.has_confidence
    assert is_teacher('depth_anything_vitl_metric') and not is_teacher('monodepth2_mb')
    assert not is_teacher('no_such_model')
    plain = create_model('tiny_student')
    info = ModelInfo.read(save_model(tmp_path / 'plain.pt', plain, name='tiny_student', kwargs={},
                                     input_size=(64, 96)))
    assert not info.has_confidence and info.head is None and info.fully_convolutional
