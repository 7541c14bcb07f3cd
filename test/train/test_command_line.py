"""A tool's ``usage:`` line names the command as the user typed it: the console script, or ``python -m``."""
import sys

import pytest

from surround_depth_train.command_line import prog
from surround_depth_train.evaluate import main as evaluate_main
from surround_depth_train.train import main as train_main


@pytest.mark.parametrize('argv0, expected', [
    ('/opt/ros/ws/install/lib/surround_depth_ros/evaluate', 'evaluate'),
    ('/work/.venv/bin/train', 'train'),
    ('/work/surround_depth_train/evaluate.py', 'python -m surround_depth_train.evaluate'),
    ('-c', 'python -m surround_depth_train.evaluate'),
    ('', 'python -m surround_depth_train.evaluate'),
])
def test_prog_is_the_console_script_or_python_dash_m(monkeypatch, argv0, expected):
    monkeypatch.setattr(sys, 'argv', [argv0])
    assert prog('surround_depth_train.evaluate') == expected


@pytest.mark.parametrize('main, script', [(evaluate_main, 'evaluate'), (train_main, 'train')])
def test_help_prints_usage_naming_the_console_script(monkeypatch, capsys, main, script):
    monkeypatch.setattr(sys, 'argv', [f'/install/lib/surround_depth_ros/{script}', '--help'])
    with pytest.raises(SystemExit) as exit_:
        main(['--help'])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.startswith(f'usage: {script} ')
