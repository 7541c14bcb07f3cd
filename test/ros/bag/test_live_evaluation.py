"""Live evaluation over real DDS: replay process -> node process -> live evaluator process, compared with the
offline bag evaluation of the same bag on the frames present in both (abs_rel within 2 % relative). Counts, stamps
and values only, never wall-clock time."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

pytest.importorskip('rclpy')

from surround_depth_ros.bag.surroundsim import SurroundSimDrive  # noqa: E402
from surround_depth_ros.convert import main as convert_main  # noqa: E402
from surround_depth_ros.evaluate_bag import main as evaluate_main  # noqa: E402
from surround_depth_train.models import create_model, save_model  # noqa: E402

pytestmark = [pytest.mark.ros, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[3]
DOMAIN = str(100 + os.getpid() % 60)
FRAMES, W, H = 6, 96, 64


def _env() -> dict:
    return dict(os.environ, ROS_DOMAIN_ID=DOMAIN, FASTDDS_BUILTIN_TRANSPORTS='LARGE_DATA', PYTHONUNBUFFERED='1',
                OMP_NUM_THREADS='1', PYTHONPATH=str(REPO))


def _wait_for_text(path: Path, text: str, proc: subprocess.Popen, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in path.read_text():
            return
        assert proc.poll() is None, f'{path.name} ended early:\n{path.read_text()}'
        time.sleep(0.1)
    raise AssertionError(f'{text!r} never appeared in {path}:\n{path.read_text()}')


def test_live_and_offline_evaluation_agree_on_the_frames_present_in_both(tmp_path):
    bag = tmp_path / 'sim'
    assert convert_main(['surroundsim', '--frames', str(FRAMES), '--size', f'{W}x{H}', '--out', str(bag)]) == 0
    masks = SurroundSimDrive(frames=FRAMES, image_size=(W, H)).write_masks(tmp_path / 'masks')
    torch.manual_seed(0)
    model = tmp_path / 'model.pt'
    save_model(model, create_model('tiny_student_mb', max_depth=80.0), name='tiny_student_mb',
               kwargs={'max_depth': 80.0}, input_size=(H, W))
    assert evaluate_main([str(bag), '--model', str(model), '--out', str(tmp_path / 'offline'), '--pictures', '0',
                          '--mask-files', *masks]) == 0
    offline = json.loads((tmp_path / 'offline' / 'results.json').read_text())

    params = tmp_path / 'params.yaml'
    params.write_text(yaml.safe_dump({'surround_depth_node': {'ros__parameters': {
        'model_file': str(model), 'rig_file': str(bag / 'rig.yaml'), 'lidar_topic': '/lidar/points',
        'diagnostics_period': 0.5}}}))
    procs, logs = [], {}

    def start(name, cmd):
        logs[name] = tmp_path / f'{name}.log'
        procs.append(subprocess.Popen(cmd, env=_env(), stdout=open(logs[name], 'w'), stderr=subprocess.STDOUT))
        return procs[-1]

    try:
        node = start('node', [sys.executable, '-m', 'surround_depth_ros.node', '--ros-args', '--params-file',
                              str(params)])
        live = start('live', [sys.executable, '-m', 'surround_depth_ros.evaluate_live', '--rig', str(bag / 'rig.yaml'),
                              '--out', str(tmp_path / 'live'), '--idle-timeout', '6', '--mask-files', *masks])
        _wait_for_text(logs['live'], '[evaluate_live] ready', live)
        _wait_for_text(logs['node'], 'allocator:', node)  # the node's start-up line: engine loaded, subscribed
        replay = subprocess.run([sys.executable, '-m', 'surround_depth_ros.replay', str(bag), '--rate', '0.5',
                                 '--wait-for-subscribers', '60', '--delay', '2', '--quiet'], env=_env(), capture_output=True,
                                text=True, timeout=120)
        assert replay.returncode == 0, replay.stderr
        assert live.wait(120) == 0, logs['live'].read_text()
        assert node.poll() is None, logs['node'].read_text()
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()
    result = json.loads((tmp_path / 'live' / 'results.json').read_text())
    off = {(r['camera'], round(r['stamp'], 6)): r['metrics'] for r in offline['frames'] if r['metrics']}
    on = {(r['camera'], round(r['stamp'], 6)): r['metrics'] for r in result['frames'] if r['metrics']}
    common = sorted(set(off) & set(on))
    assert len(common) >= FRAMES * 6 // 2, (len(on), len(off), result['live'])
    assert set(on) <= set(off)  # every live image is one of the bag's frames, at its own stamp
    for key in common:
        assert on[key]['abs_rel'] == pytest.approx(off[key]['abs_rel'], rel=0.02), key
        assert on[key]['count'] == off[key]['count'], key  # the same LiDAR points, moved by the same odometry
    mean_on = sum(on[k]['abs_rel'] for k in common) / len(common)
    mean_off = sum(off[k]['abs_rel'] for k in common) / len(common)
    assert mean_on == pytest.approx(mean_off, rel=0.02)
    md = (tmp_path / 'live' / 'results.md').read_text()
    assert '| Method | Params | Latency | AbsRel' in md and 'surround_depth_node: pipeline' in md
    assert result['live']['received']['diagnostics'] > 0 and result['latency']['median_ms'] is not None
