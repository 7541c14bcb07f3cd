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
