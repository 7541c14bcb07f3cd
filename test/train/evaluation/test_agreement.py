"""Student-teacher agreement: a model measured against itself agrees exactly; the LiDAR numbers are the evaluation's."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from surround_depth_train.config import load_config, save_config
from surround_depth_train.evaluation.agreement import main, measure_agreement
from surround_depth_train.models import create_model, save_model
from surround_depth_train.training.config import TrainConfig

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture(scope='module')
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp('agreement')
    cfg = load_config(TrainConfig, REPO / 'config' / 'train' / 'surroundsim_student_baseline.yaml',
                      ['data.image_size=[96,64]', 'data.test_samples=2'])
    save_config(cfg, root / 'config.yaml')
    paths = []
    for seed, kwargs in ((0, {}), (1, {'max_depth': 40.0})):  # the second one starts at half the depth
        torch.manual_seed(seed)
        paths.append(save_model(root / f'm{seed}.pt', create_model('tiny_student_mb', **kwargs),
                                name='tiny_student_mb', kwargs=kwargs, input_size=(64, 96)))
    return root, paths


def test_a_model_agrees_exactly_with_itself_and_not_with_another(files):
    root, (teacher, other) = files
    result = measure_agreement(teacher, [teacher, other], config=root / 'config.yaml', progress=False)
    assert result[str(teacher)]['teacher']['abs_rel'] == pytest.approx(0.0, abs=1e-7)
    assert result[str(teacher)]['teacher']['a1'] == 1.0
    assert result[str(other)]['teacher']['abs_rel'] > 0.2
    assert result[str(other)]['lidar'] != result[str(teacher)]['lidar']


def test_the_command_prints_a_table_and_refuses_non_data_overrides(files, capsys):
    root, (teacher, other) = files
    assert main(['--teacher', str(teacher), '--students', str(other), '--config', str(root / 'config.yaml')]) == 0
    out = capsys.readouterr().out
    assert '| model | AbsRel vs LiDAR |' in out and f'| {other} |' in out
    assert main(['--teacher', str(teacher), '--students', str(other), '--config', str(root / 'config.yaml'),
                 'epochs=3']) == 2
    assert 'only data.* keys' in capsys.readouterr().err
