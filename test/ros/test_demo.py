"""The README's main command at smoke-test scale: training demo, SurroundSim bag, offline evaluation, node + live
evaluator processes fed by a replay over DDS, one report whose numbers are those of this run."""
from __future__ import annotations

import json
import os
import re

import pytest

pytest.importorskip('rclpy')

from surround_depth_ros.demo import main  # noqa: E402

pytestmark = [pytest.mark.ros, pytest.mark.slow]


def test_quick_demo_runs_the_whole_chain_and_reports_the_numbers_of_this_run(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv('ROS_DOMAIN_ID', str(200 + os.getpid() % 30))
    assert main(['--out', str(tmp_path), '--quick']) == 0
    out = capsys.readouterr().out
    report = tmp_path / 'report.md'
    assert f'the report: {report}' in out and '[cloud] fused' in out
    text = report.read_text()
    # the training demo ran (sheets, fused cloud, teacher, baseline, distilled) and its table is in the report
    assert sorted(p.name for p in (tmp_path / 'world').glob('sheet_*.png')) == [
        'sheet_seed0_frame000.png', 'sheet_seed0_frame001.png']
    assert (tmp_path / 'cloud_bev.png').is_file() and (tmp_path / 'comparison.png').is_file()
    assert (tmp_path / 'runs' / 'teacher' / 'model.pt').is_file()
    assert (tmp_path / 'runs' / 'student_ckd_vrkd' / 'model.pt').is_file()
    assert re.search(r'^\| student \+ CKD \+ VRKD \|', text, re.M)
    offline_base = json.loads((tmp_path / 'offline_baseline' / 'results.json').read_text())
    offline_kd = json.loads((tmp_path / 'offline_kd' / 'results.json').read_text())
    live = json.loads((tmp_path / 'live' / 'results.json').read_text())
    assert live['frames'] and live['live']['received']['depth'] > 0
    rows = re.findall(r'^\| ([^|]+) \| [^|]+ \| [^|]+ \| ([0-9.]+) \|', text, re.M)
    got = {name.strip(): float(v) for name, v in rows}
    assert got[f'{offline_base["model"]["name"]} baseline (offline, bag)'] == \
        pytest.approx(offline_base['lidar']['mean']['abs_rel'], abs=5e-4)
    assert got[f'{offline_kd["model"]["name"]} + CKD + VRKD (offline, bag)'] == \
        pytest.approx(offline_kd['lidar']['mean']['abs_rel'], abs=5e-4)
    assert got['the same, live: node over DDS'] == pytest.approx(live['lidar']['mean']['abs_rel'], abs=5e-4)
    assert 'surround_depth_node: pipeline' in text and 'model time per set, median' in text
    for picture in re.findall(r'\]\(([^)]+\.png)\)', text):
        assert (tmp_path / picture).is_file(), picture
    assert (tmp_path / 'live' / 'pictures' / 'bev_live.png').is_file()
