"""nuScenes and DDAD through the trainer's builders: the shipped paper configs build their datasets on the fixtures,
one training step and one validation run on each, and wrong data keys are refused with the fix."""
from pathlib import Path

import pytest

from surround_depth_train.config import ConfigError, from_mapping, load_config
from surround_depth_train.data import schema as S
from surround_depth_train.train import build_trainer
from surround_depth_train.training.builders import build_dataset
from surround_depth_train.training.config import TrainConfig

CONFIGS = Path(__file__).resolve().parents[3] / 'config' / 'train'


def _roots(name, nuscenes_root, ddad_root) -> list[str]:
    if name.startswith('nuscenes'):
        return [f'data.root={nuscenes_root}', 'data.version=v1.0-mini']
    return [f'data.root={ddad_root}', f'data.masks={ddad_root / "mask"}']


@pytest.mark.parametrize('name', ['nuscenes_teacher', 'nuscenes_student_baseline', 'nuscenes_student_kd',
                                  'ddad_teacher', 'ddad_student_baseline', 'ddad_student_kd'])
def test_paper_configs_build_their_datasets_on_the_fixtures(name, nuscenes_root, ddad_root):
    cfg = load_config(TrainConfig, CONFIGS / f'{name}.yaml',
                      _roots(name, nuscenes_root, ddad_root) + ['data.image_size=[96, 64]'])
    assert cfg.batch_size == 12 and cfg.epochs == 5
    paper_size = {'nuscenes': [640, 352], 'ddad': [640, 384]}[cfg.data.dataset]
    assert list(load_config(TrainConfig, CONFIGS / f'{name}.yaml').data.image_size) == paper_size
    train, val = build_dataset(cfg.data, 'train'), build_dataset(cfg.data, 'val')
    assert train.max_depth == {'nuscenes': 80.0, 'ddad': 200.0}[cfg.data.dataset]
    sample = val[0]
    S.validate_sample(sample, 6, (96, 64))
    assert S.DEPTH_NATIVE in sample and S.DEPTH_NATIVE not in train[0]
    if cfg.data.dataset == 'ddad':
        assert not bool(train[0][S.SELF_MASK].all())  # the masks are applied


@pytest.mark.parametrize('dataset', ['nuscenes', 'ddad'])
def test_one_training_step_and_one_validation_on_each_fixture(dataset, nuscenes_root, ddad_root, tmp_path):
    data = {'dataset': dataset, 'image_size': [96, 64], 'root': str(nuscenes_root if dataset == 'nuscenes'
                                                                      else ddad_root)}
    if dataset == 'nuscenes':
        data['version'] = 'v1.0-mini'
    cfg = from_mapping(TrainConfig, {
        'out_dir': str(tmp_path / 'run'), 'epochs': 1, 'batch_size': 2, 'tensorboard': False, 'data': data,
        'model': {'name': 'tiny_student_mb'},
        'teacher': {'name': 'depth_anything_tiny_metric', 'kwargs': {'input_size': [28, 42], 'n_bins': 16}},
        'loss': {'ckd': 0.1, 'vrkd': 1.0}, 'optim': {'scheduler': 'constant'}, 'stop_after_steps': 1})
    trainer = build_trainer(cfg)
    trainer.fit()
    assert trainer.state.global_step == 1
    result = trainer.validate()
    assert 0 < result['mean']['abs_rel'] < 10


def test_wrong_data_keys_are_refused_with_the_fix(nuscenes_root, tmp_path):
    with pytest.raises(ConfigError, match=r"data.version: .*|unknown nuScenes version 'v2'"):
        build_dataset(from_mapping(TrainConfig, {'data': {'dataset': 'nuscenes', 'root': str(nuscenes_root),
                                                          'version': 'v2'}}).data, 'train')
    with pytest.raises(ConfigError, match="data.masks is a DDAD option"):
        build_dataset(from_mapping(TrainConfig, {'data': {'dataset': 'nuscenes', 'root': str(nuscenes_root),
                                                          'version': 'v1.0-mini', 'masks': str(tmp_path)}}).data,
                      'train')
    with pytest.raises(ConfigError, match=r"data.train_scenes\[0\]: expected a string"):
        from_mapping(TrainConfig, {'data': {'train_scenes': [61]}})
    with pytest.raises(ConfigError, match="unknown nuScenes split 'training'"):
        build_dataset(from_mapping(TrainConfig, {'data': {'dataset': 'nuscenes', 'root': str(nuscenes_root),
                                                          'version': 'v1.0-mini', 'train_split': 'training'}}).data,
                      'train')


@pytest.mark.parametrize('dataset', ['nuscenes', 'ddad'])
def test_one_evaluation_run_on_each_fixture_at_native_resolution(dataset, nuscenes_root, ddad_root, tmp_path):
    from surround_depth_train.evaluate import run_evaluation
    from surround_depth_train.models.modelfile import save_model
    from surround_depth_train.models.registry import create_model

    kwargs = {'min_depth': 0.1, 'max_depth': 80.0}
    save_model(tmp_path / 'model.pt', create_model('tiny_student_mb', **kwargs), name='tiny_student_mb',
               kwargs=kwargs, input_size=(64, 96))
    extra = ['data.version=v1.0-mini'] if dataset == 'nuscenes' else [f'data.masks={ddad_root / "mask"}']
    root = nuscenes_root if dataset == 'nuscenes' else ddad_root
    result = run_evaluation(tmp_path / 'model.pt', dataset=dataset, out_dir=tmp_path / 'eval', latency_runs=1,
                            pictures=1, progress=False,
                            overrides=[f'data.root={root}', 'data.image_size=[96, 64]'] + extra)
    assert result['dataset']['samples'] == 2
    assert result['dataset']['gt_resolution'].endswith('(native)')
    assert result['lidar']['mean']['abs_rel'] > 0 and (tmp_path / 'eval' / 'results.md').is_file()
