"""Bad input to ``surround_depth_node``: one ``error:`` line naming the problem and the fix, exit status 2, no
traceback, before the node runs; ``--help`` prints usage; a float parameter takes an int (``-p min_depth:=5``)."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip('rclpy')

from surround_depth_train.allocator import ALLOCATOR_SETTINGS  # noqa: E402
from surround_depth_train.models import create_model, save_model  # noqa: E402

pytestmark = [pytest.mark.ros]

RIG = Path(__file__).resolve().parents[2] / 'config' / 'rigs' / 'surroundsim.yaml'

CASES = [
    (['--ros-args', '--params-file', '{tmp}/missing.yaml'], "--params-file '{tmp}/missing.yaml' does not exist"),
    (['--ros-args', '--params-file', '{tmp}/broken.yaml'], '--params-file {tmp}/broken.yaml:3: malformed YAML'),
    (['--ros-args', '-p', 'slop:=abc'], "slop"),
    (['--ros-args', '-p', 'allow_teacher:=3'], 'parameter allow_teacher'),
    # the int is taken as a float, so the node gets as far as the model file, which is missing
    (['--ros-args', '-p', 'min_depth:=5', '-p', 'max_depth:=40', '-p', 'model_file:={tmp}/missing.pt'],
     'does not exist'),
    (['--ros-args', '-p', 'backend:=onnxruntime'], 'is not an ONNX export but backend is onnxruntime: set backend: '
                                                   'torch'),
    (['--ros-args', '-p', 'model_file:={tmp}/student.onnx'], 'is an ONNX export but backend is torch: set backend: '
                                                              'onnxruntime'),
]


def _run(args: list[str]) -> subprocess.CompletedProcess:
    env = dict(os.environ, ROS_DOMAIN_ID='87', FASTDDS_BUILTIN_TRANSPORTS='LARGE_DATA', OMP_NUM_THREADS='1',
               **ALLOCATOR_SETTINGS)  # in effect already: the node does not re-execute itself (one start-up each)
    return subprocess.run([sys.executable, '-m', 'surround_depth_ros.node', *args], env=env, capture_output=True,
                          text=True, timeout=120)


@pytest.mark.parametrize('args, fragment', CASES)
def test_bad_input_ends_in_one_error_line_with_status_2(tmp_path, args, fragment):
    model = save_model(tmp_path / 'model.pt', create_model('tiny_student'), name='tiny_student', kwargs={},
                       input_size=(64, 96))
    (tmp_path / 'broken.yaml').write_text('surround_depth_node:\n  ros__parameters: [\n')
    (tmp_path / 'student.onnx').write_bytes(b'\x08\x08\x12\x07pytorch')
    args = [a.format(tmp=tmp_path) for a in args]
    if '--params-file' not in args:
        args += [x for p in (f'model_file:={model}', f'rig_file:={RIG}')
                 if not any(a.startswith(p.split('=')[0]) for a in args) for x in ('-p', p)]
    result = _run(args)
    assert result.returncode == 2, result.stderr[-2000:]
    errors = [line for line in result.stderr.splitlines() if 'error:' in line]
    assert len(errors) == 1 and 'Traceback' not in result.stderr, result.stderr[-2000:]
    assert fragment.format(tmp=tmp_path) in errors[0]


def test_help_prints_usage_with_every_parameter():
    result = _run(['--help'])
    assert result.returncode == 0 and result.stdout.startswith('usage: python -m surround_depth_ros.node [--help]')
    assert 'min_depth* = 0.0' in result.stdout and 'model_file = ' in result.stdout
