"""A converted SurroundSim bag shared by the bag tests (built once per session)."""
from __future__ import annotations

import pytest
import torch

from surround_depth_ros.bag.surroundsim import SurroundSimDrive
from surround_depth_ros.convert import main as convert_main
from surround_depth_train.models import create_model, save_model

FRAMES, W, H = 3, 96, 64


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
