"""A model evaluated at another input size than its training size: one warning with both sizes; a size the network
cannot take is refused before any work, with one line and nothing written."""
from __future__ import annotations

import logging

import pytest
import torch

from surround_depth_train.evaluate import main as evaluate_main
from surround_depth_train.models import create_model
from surround_depth_train.models.input_size import input_size_problem
from surround_depth_train.models.modelfile import save_model


@pytest.fixture(scope='module')
def model_file(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp('input_size') / 'model.pt'
    save_model(path, create_model('tiny_student_mb'), name='tiny_student_mb', kwargs={}, input_size=(64, 96))
    return path


def _evaluate(model_file, out, *overrides):
    return evaluate_main(['--model', str(model_file), '--out', str(out), '--pictures', '0', '--latency-runs', '1',
                          '--no-consistency', 'data.val_samples=1', *overrides])


def test_evaluating_at_another_size_than_the_training_size_warns_once_with_both(model_file, tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger='surround_depth.evaluate'):
        assert _evaluate(model_file, tmp_path / 'other', 'data.image_size=[100,70]') == 0
        assert _evaluate(model_file, tmp_path / 'own') == 0
    warnings = [r.getMessage() for r in caplog.records if r.name == 'surround_depth.evaluate']
    assert len(warnings) == 1 and 'trained at 96 x 64 (w x h) and runs at 100 x 70' in warnings[0]


def test_a_size_the_network_cannot_take_is_refused_before_any_work(model_file, tmp_path, capsys):
    out = tmp_path / 'never'
    assert _evaluate(model_file, out, 'data.image_size=[200,16]') == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith('error: data.image_size=[200, 16]: tiny_student_mb cannot run at 200 x 16')
    assert len(err.splitlines()) == 1 and 'at least 33 pixels' in err and not out.exists()


def test_input_size_problem_names_the_smallest_side():
    assert input_size_problem('m', (33, 33), 33) is None
    assert 'at least 33' in input_size_problem('m', (32, 640), 33)
