"""A converted SurroundSim bag shared by the bag tests (built once per session)."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from surround_depth_ros.bag.surroundsim import SurroundSimDrive
from surround_depth_ros.convert import main as convert_main
from surround_depth_train.models import create_model, save_model

FRAMES, W, H = 3, 96, 64
_FIXTURES = Path(__file__).resolve().parents[2] / 'fixtures'


def humble_fixture():
    """test/fixtures/humble_bag.py (the tests run with --import-mode=importlib, so loaded by file)."""
    spec = importlib.util.spec_from_file_location('surround_depth_test_fixtures_humble_bag',
                                                  _FIXTURES / 'humble_bag.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope='session')
def sim(tmp_path_factory):
    """A 3-frame SurroundSim bag at 96 x 64, its ego-body masks and a tiny model at the same input size."""
    root = tmp_path_factory.mktemp('bag_eval')
    bag = root / 'sim'
    assert convert_main(['surroundsim', '--frames', str(FRAMES), '--size', f'{W}x{H}', '--out', str(bag)]) == 0
    drive = SurroundSimDrive(frames=FRAMES, image_size=(W, H))
    masks = drive.write_masks(root / 'masks')
    torch.manual_seed(0)
    model = root / 'model.pt'
    save_model(model, create_model('tiny_student_mb', max_depth=80.0), name='tiny_student_mb',
               kwargs={'max_depth': 80.0}, input_size=(H, W), training_rig=drive.dataset.rig)
    return {'bag': bag, 'masks': masks, 'model': model, 'dataset': drive.dataset, 'root': root}


@pytest.fixture(scope='session')
def humble_writer():
    """``write_humble_bag(src, dst, custom=True, keep=...)`` of test/fixtures/humble_bag.py."""
    return humble_fixture().write_humble_bag


@pytest.fixture(scope='session')
def humble_bag(sim, humble_writer, tmp_path_factory):
    """The sim bag as `ros2 bag record` of Humble writes it (sqlite3, metadata version 5, no definitions), with a
    topic of a custom message type (test/fixtures/humble_bag.py)."""
    return humble_writer(sim['bag'], tmp_path_factory.mktemp('humble') / 'drive')
