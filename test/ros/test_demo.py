"""The README's main command at smoke-test scale: training demo, SurroundSim bag, offline evaluation, node + live
evaluator processes fed by a replay over DDS, one report whose numbers are those of this run."""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

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
    assert got[f'{offline_base["model"]["name"]} baseline, toy-trained (offline, bag)'] == \
        pytest.approx(offline_base['lidar']['mean']['abs_rel'], abs=5e-4)
    assert got[f'{offline_kd["model"]["name"]} + CKD + VRKD, toy-trained (offline, bag)'] == \
        pytest.approx(offline_kd['lidar']['mean']['abs_rel'], abs=5e-4)
    assert got['the same, live: node over DDS'] == pytest.approx(live['lidar']['mean']['abs_rel'], abs=5e-4)
    assert 'surround_depth_node: pipeline' in text and 'model time per set, median' in text
    guide = text[text.index('What each table measures'):text.index('| Method')]
    assert 'says nothing about distillation' in guide and 'The training table' in guide  # one sentence per table
    assert 'shipped students\' table' not in guide  # --quick deploys the toy pair
    for picture in re.findall(r'\]\(([^)]+\.png)\)', text):
        assert (tmp_path / picture).is_file(), picture
    assert (tmp_path / 'live' / 'pictures' / 'bev_live.png').is_file()


def test_the_demo_evaluates_shipped_students_in_its_run_and_reproduces_their_recorded_metrics(tmp_path,
                                                                                              tiny_shipped_pair):
    from surround_depth_ros.demo import evaluate_shipped, shipped_section

    pair = tiny_shipped_pair
    results = evaluate_shipped(tmp_path / 'demo', pair)
    for model in (pair.baseline, pair.distilled):
        got = results[model.role]['lidar']['mean']
        assert results[model.role]['dataset']['samples'] == 2
        for key in ('abs_rel', 'rmse', 'a1'):  # float16 weights: the same numbers up to their rounding
            assert got[key] == pytest.approx(model.test_metrics[key], rel=0.02, abs=2e-3)
    text = '\n'.join(shipped_section(pair, results))
    assert 'evaluated in this run' in text and f'{results["baseline"]["lidar"]["mean"]["abs_rel"]:.3f}' in text
    assert re.search(r'^\| tiny_student_mb distilled \(`distilled`, this run\) \|.*\| [+-][0-9.]+ \|$', text, re.M)


def test_a_shipped_folder_that_was_changed_is_refused_by_name(tmp_path, capsys, tiny_shipped_pair):
    pair = tiny_shipped_pair
    with open(pair.distilled.path, 'ab') as f:
        f.write(b'\0')
    assert main(['--out', str(tmp_path / 'demo'), '--shipped', str(pair.folder)]) == 1
    err = capsys.readouterr().err
    assert 'distilled.pt is missing or differs from the manifest' in err and 'Traceback' not in err


def test_the_reading_guide_names_each_table_the_report_has(tiny_shipped_pair):
    from surround_depth_ros.demo import reading_guide

    with_shipped = '\n'.join(reading_guide(tiny_shipped_pair, 20))
    assert 'the shipped pair on this demo\'s one short drive (20 camera sets' in with_shipped
    assert 'shipped students\' table' in with_shipped and 'docs/results/distillation.md' in with_shipped
    toy = '\n'.join(reading_guide(None, 6))
    assert 'two toy-trained students' in toy and 'shipped students' not in toy
