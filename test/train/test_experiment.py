"""The experiment command at smoke scale (config/experiments/surroundsim_smoke.yaml): it trains, evaluates and
writes the tables; a second call skips what finished; an interrupted run is resumed. Checks the pipeline, not the
numbers."""
import json
import re
from pathlib import Path

import pytest

from surround_depth_train.config import ConfigError, save_config
from surround_depth_train.experiment import (ExperimentError, load_experiment, main, plan_runs, resolve_config,
                                             run_status)

SMOKE = Path(__file__).resolve().parents[2] / 'config' / 'experiments' / 'surroundsim_smoke.yaml'
REAL = SMOKE.with_name('surroundsim.yaml')


@pytest.fixture(scope='module', autouse=True)
def in_repository_root():
    """The experiment YAMLs name configs relative to the repository root, as the README's command runs."""
    import os

    before = os.getcwd()
    os.chdir(SMOKE.parents[2])
    yield
    os.chdir(before)


def _args(tmp: Path) -> list[str]:
    return [str(SMOKE), '--out-dir', str(tmp / 'runs'), '--report', str(tmp / 'report.md')]


@pytest.fixture(scope='module')
def finished(tmp_path_factory, in_repository_root):
    """One full pass of the smoke experiment: (folder, the progress output of the pass)."""
    import contextlib
    import io

    tmp = tmp_path_factory.mktemp('experiment')
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(_args(tmp)) == 0
    return tmp, out.getvalue()


def test_plan_orders_by_priority_then_seed_and_resolves_run_references():
    exp = load_experiment(SMOKE, out_dir='/x/runs')
    names = [r.name for r in plan_runs(exp)]
    assert names == ['teacher_pretrain', 'teacher_ft', 'plain_s0', 'mb_ckd_vrkd_s0', 'plain_s1', 'mb_ckd_vrkd_s1',
                     'mb_ckd_s0', 'kd_s0']
    ft = next(r for r in plan_runs(exp) if r.name == 'teacher_ft')
    assert 'teacher.checkpoint=/x/runs/teacher_pretrain/model.pt' in ft.overrides
    distilled = next(r for r in plan_runs(exp) if r.name == 'mb_ckd_vrkd_s1')
    assert 'teacher.cache_dir=/x/runs/teacher_cache' in distilled.overrides and 'seed=1' in distilled.overrides


def test_the_real_experiment_config_plans_every_table_row():
    exp = load_experiment(REAL)
    planned = plan_runs(exp)
    tables = {r.spec.table for r in planned}
    assert tables == {'teacher', 'V', 'III', 'IV'}
    assert sum(r.spec.name == 'mb_ckd_vrkd' for r in planned) >= 3
    for run in planned:  # every run resolves to a valid training config
        cfg = resolve_config(run)
        assert cfg.out_dir == str(Path(exp.out_dir) / run.name)


def test_reference_to_a_later_or_seeded_run_is_refused(tmp_path):
    text = SMOKE.read_text().replace('{run:teacher_ft}', '{run:plain}')
    path = tmp_path / 'bad.yaml'
    path.write_text(text)
    with pytest.raises(ConfigError, match='seeded run'):
        plan_runs(load_experiment(path))
    path.write_text(SMOKE.read_text().replace('{run:teacher_pretrain}', '{run:teacher_ft}'))
    with pytest.raises(ConfigError, match='runs later'):
        plan_runs(load_experiment(path))


@pytest.mark.slow
def test_experiment_writes_teacher_rows_and_tables_with_paired_seeds(finished):
    tmp, progress = finished
    assert len(re.findall(r'^\[experiment \d/8\] \S+: trained in', progress, re.M)) == 8
    report = json.loads((tmp / 'report.json').read_text())
    rows = report['rows']
    assert {n for n, r in rows.items() if r['table'] == 'teacher'} == {'teacher_pretrain', 'teacher_ft'}
    assert rows['teacher_pretrain']['extra']['own_world_downtown'] is not None
    assert rows['plain']['seeds'] == [0, 1] and rows['mb_ckd_vrkd']['seeds'] == [0, 1]
    assert len(rows['mb_ckd_vrkd']['delta_t_per_seed']) == 2 and rows['plain']['delta_t'] is None
    assert rows['kd']['table'] == 'III' and len(rows['kd']['delta_t_per_seed']) == 1
    # the consistency measure ran on every pair (untrained smoke models may leave no valid correspondence)
    cons = json.loads((tmp / 'runs' / 'mb_ckd_vrkd_s0' / 'eval_test' / 'results.json').read_text())['consistency']
    assert len(cons['pairs']) == 6 and 'consistency_rig' in rows['mb_ckd_vrkd']
    assert set(report['verdict']) >= {'direction_holds', 'ckd_vrkd_at_least_ckd', 'distilled_delta_t'}
    md = (tmp / 'report.md').read_text()
    for heading in ('## The teacher', '## Table V', '## Table III', '## Loss terms during training',
                    '## Wall time per run'):
        assert heading in md
    assert re.search(r'^\| \+ MB \+ CKD \+ VRKD \| 2 \| .* ± .*\|$', md, re.M)
    assert (tmp / 'report_predictions.png').stat().st_size > 0


@pytest.mark.slow
def test_second_call_skips_finished_runs_and_resumes_an_interrupted_one(finished, capsys):
    from surround_depth_train.train import main as train_main

    tmp, _ = finished
    capsys.readouterr()
    stamps = {p: p.stat().st_mtime_ns for p in (tmp / 'runs').glob('*/model.pt')}
    assert main(_args(tmp)) == 0
    out = capsys.readouterr().out
    assert len(re.findall(r'finished earlier, skipped', out)) == 8
    assert stamps == {p: p.stat().st_mtime_ns for p in (tmp / 'runs').glob('*/model.pt')}

    # interrupt plain_s1 after its first step (2 steps in all), as a killed run would leave it
    exp = load_experiment(SMOKE, out_dir=str(tmp / 'runs'), report=str(tmp / 'report.md'))
    run = next(r for r in plan_runs(exp) if r.name == 'plain_s1')
    for p in run.out_dir.iterdir():
        if p.is_file():
            p.unlink()
    import shutil
    shutil.rmtree(run.out_dir / 'eval_test')
    cfg = resolve_config(run)
    cfg.stop_after_steps = 1
    save_config(cfg, tmp / 'interrupted.yaml')
    assert train_main(['--config', str(tmp / 'interrupted.yaml')]) == 0
    assert json.loads((run.out_dir / 'result.json').read_text())['stopped_early'] is True
    assert run_status(run, resolve_config(run)) == 'partial'
    capsys.readouterr()
    assert main(_args(tmp) + ['--only', 'plain_s1']) == 0
    out = capsys.readouterr().out
    assert 'plain_s1: resuming' in out
    result = json.loads((run.out_dir / 'result.json').read_text())
    assert result['global_step'] == 2 and not result['stopped_early']
    assert '--resume' in (run.out_dir / 'train.log').read_text()

    # a finished run of another config is refused, not mixed into the tables
    exp.common.append('optim.lr=1.0e-3')
    changed = next(r for r in plan_runs(exp) if r.name == 'plain_s0')
    with pytest.raises(ExperimentError, match='optim.lr'):
        run_status(changed, resolve_config(changed))
