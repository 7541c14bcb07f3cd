"""Optimiser groups by module: the encoder at lr * encoder_lr_factor for students and the teacher alike."""
import pytest
import torch

from surround_depth_train.distill import DistillationTask
from surround_depth_train.losses import DistillationWeights
from surround_depth_train.models import create_model
from surround_depth_train.training.builders import build_optimizer, encoder_of
from surround_depth_train.training.config import OptimConfig

OPTIM = OptimConfig(lr=1e-3, encoder_lr_factor=0.1)


def groups_by_lr(optimizer) -> dict[float, set[int]]:
    return {round(g['lr'], 12): {id(p) for p in g['params']} for g in optimizer.param_groups}


@pytest.mark.parametrize('name, encoder_attribute', [('tiny_student_mb', 'encoder'),
                                                     ('depth_anything_tiny_metric', 'pretrained')])
def test_the_encoder_trains_at_the_reduced_rate_inside_the_task_wrapper(name, encoder_attribute):
    model = create_model(name)
    # fine-tuning the teacher wraps it: parameter names start with `student.`, which name prefixes missed
    task = DistillationTask(model, weights=DistillationWeights(ckd=0, vrkd=0), min_depth=0.1, max_depth=80)
    optimizer = build_optimizer(task.student_side, encoder_of(task.student), OPTIM)
    groups = groups_by_lr(optimizer)
    encoder = {id(p) for p in getattr(model, encoder_attribute).parameters()}
    assert groups[1e-4] == encoder
    assert groups[1e-3] == {id(p) for p in model.parameters()} - encoder
    assert all(name in ('decoder_head', 'encoder') for name in (g['name'] for g in optimizer.param_groups))


def test_fitnets_regressors_train_at_the_full_rate():
    student = create_model('tiny_student_mb')
    teacher = create_model('depth_anything_tiny_metric', n_bins=16)
    task = DistillationTask(student, weights=DistillationWeights(ckd=0, vrkd=0, fitnets=1), min_depth=0.1,
                            max_depth=80, teacher=teacher, feature_pairs=[(0, 0)], fitnets_channels=([64], [32]))
    groups = groups_by_lr(build_optimizer(task.student_side, encoder_of(task.student), OPTIM))
    assert {id(p) for p in task.student_side.fitnets.parameters()} <= groups[1e-3]
    assert not any(id(p) in g for g in groups.values() for p in teacher.parameters())


def test_a_model_without_an_encoder_module_is_refused():
    with pytest.raises(ValueError, match='encoder'):
        encoder_of(torch.nn.Linear(2, 2))


def test_seed_offset_frames_per_scene_and_lidar_beams_choose_the_surroundsim_scenes_and_sensor(tmp_path):
    from surround_depth_train.training.builders import build_dataset
    from surround_depth_train.training.config import DataConfig

    base = dict(image_size=(64, 48), train_samples=4, val_samples=2, cache_dir=str(tmp_path))
    plain = build_dataset(DataConfig(**base), 'train')
    moved = build_dataset(DataConfig(**base, seed_offset=1000, frames_per_scene=1), 'train')
    assert [plain.locate(i) for i in range(4)] == [(0, 0), (0, 1), (0, 2), (0, 3)]
    assert [moved.locate(i) for i in range(4)] == [(1000, 0), (1001, 0), (1002, 0), (1003, 0)]
    test = build_dataset(DataConfig(**base, seed_offset=50, test_samples=2), 'test')
    assert test.locate(1)[0] == 2_000_050
    dense = build_dataset(DataConfig(**base), 'train')[0]['depth_mask'].float().mean()
    sparse = build_dataset(DataConfig(**base, lidar_beams=8), 'train')[0]['depth_mask'].float().mean()
    assert 0 < sparse < 0.5 * dense


@pytest.mark.parametrize('key, value', [('seed_offset', 10), ('frames_per_scene', 1), ('lidar_beams', 8)])
def test_surroundsim_only_data_keys_are_refused_for_other_datasets(tmp_path, key, value):
    from surround_depth_train.config import ConfigError
    from surround_depth_train.training.builders import build_dataset
    from surround_depth_train.training.config import DataConfig

    with pytest.raises(ConfigError, match=f'data.{key} applies to SurroundSim only'):
        build_dataset(DataConfig(dataset='nuscenes', root=str(tmp_path), **{key: value}), 'train')


def test_a_lidar_without_beams_is_refused_as_a_config_error():
    from surround_depth_train.config import ConfigError
    from surround_depth_train.training.builders import build_dataset
    from surround_depth_train.training.config import DataConfig

    with pytest.raises(ConfigError, match='beams must be >= 1'):
        build_dataset(DataConfig(lidar_beams=0), 'train')
