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
DESIGN = SMOKE.with_name('distillation.yaml')


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
    assert tables == {'teacher', 'V', 'III', 'IV', 'light'} == {'teacher', *exp.tables}
    assert sum(r.spec.name == 'mb_ckd_vrkd' for r in planned) >= 3
    shipped = {r.spec.name for r in planned if r.seed == exp.ship.seed} & {exp.ship.baseline, exp.ship.distilled}
    assert len(shipped) == 2  # the shipped pair is two runs of the experiment
    for run in planned:  # every run resolves to a valid training config
        cfg = resolve_config(run)
        assert cfg.out_dir == str(Path(exp.out_dir) / run.name)


def test_the_sweep_on_validation_plans_runs_that_only_differ_from_the_experiment_in_their_weights():
    sweep = load_experiment(REAL.with_name('surroundsim_sweep.yaml'))
    assert sweep.evaluation.split == 'val'
    main_exp = load_experiment(REAL)
    plain = {r.spec.name: resolve_config(r) for r in plan_runs(main_exp) if r.seed == 0}
    for run in plan_runs(sweep):
        cfg = resolve_config(run)
        ref = plain['plain' if cfg.model.name == 'monodepth2' else 'mb']
        assert (cfg.data, cfg.epochs, cfg.optim, cfg.seed) == (ref.data, ref.epochs, ref.optim, ref.seed), run.name
        if cfg.loss.ckd or cfg.loss.vrkd:  # distilled from the main experiment's fine-tuned teacher
            full = plain['mb_ckd_vrkd'].teacher
            assert (cfg.teacher.name, cfg.teacher.kwargs, cfg.teacher.checkpoint) == \
                (full.name, full.kwargs, full.checkpoint)


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
    # the pre-registered parts: the decision over both seed pairs, the gate, the validation curves
    decision = report['decision']
    assert decision['pairs'] == 2 and decision['scenes'] == 1 and set(decision['per_seed']) == {'0', '1'}
    assert decision['verdict'] in ('effect shown', 'ruled out', 'inconclusive') and decision['final']
    assert decision['interval'][0] <= decision['d'] <= decision['interval'][1]
    assert report['gate']['passed'] and report['gate']['teacher']['run'] == 'teacher_ft'
    assert set(report['validation_curves']) >= {'plain_s0', 'mb_ckd_vrkd_s1'}
    assert all(len(report['per_scene'][name]) == 1 for name in report['per_seed'])
    for heading in ('## Decision (pre-registered rule)', '## The gate', '## Validation curves'):
        assert heading in md
    assert (tmp / 'report_curves.png').read_bytes()[:4] == b'\x89PNG'
    times = report['runs']['plain_s0']['times']
    assert times['train_s'] == json.loads((tmp / 'runs' / 'plain_s0' / 'result.json').read_text())['wall_s']
    assert 0 < times['train_peak_rss_gb'] < 64 and '| training peak RSS (GB) |' in md


def test_the_structure_table_lists_a_run_once_when_it_is_both_baseline_and_same_head(finished, tmp_path):
    import shutil

    tmp, _ = finished
    shutil.copytree(tmp / 'runs', tmp_path / 'runs')  # the report re-ships: the module's runs stay untouched
    config = tmp_path / 'smoke_same_head.yaml'
    config.write_text(SMOKE.read_text().replace('compare:\n', 'compare:\n  same_head: plain\n', 1))
    assert main([str(config), '--out-dir', str(tmp_path / 'runs'), '--report', str(tmp_path / 'report.md'),
                 '--report-only']) == 0
    md = (tmp_path / 'report.md').read_text()
    structure = md.split('Structure alone', 1)[1].split('\n\n', 2)[1]  # the table after its caption
    labels = [line.split('|')[1].strip() for line in structure.splitlines()[2:]]
    assert labels.count('Tiny student') == 1 and '+ MB + CKD + VRKD' in labels, structure


def test_runs_that_distil_wait_for_the_gate_and_stop_when_the_teacher_is_not_better(finished, capsys):
    from surround_depth_train.experiment import check_gate, execute

    tmp, _ = finished
    exp = load_experiment(SMOKE, out_dir=str(tmp / 'runs'), report=str(tmp / 'report.md'))
    exp.gate.max_ratio = 1e-9
    planned = plan_runs(exp)
    gate = check_gate(exp, planned)
    assert not gate['passed'] and 'ratio' in gate['reason'] and gate['ratio'] > 1e-9
    assert json.loads((tmp / 'runs' / 'gate.json').read_text())['passed'] is False
    stamps = {p: p.stat().st_mtime_ns for p in (tmp / 'runs').glob('*/model.pt')}
    with pytest.raises(ExperimentError, match='premise not met'):
        execute(exp, planned, only=['mb_ckd_vrkd_s0'])
    assert stamps == {p: p.stat().st_mtime_ns for p in (tmp / 'runs').glob('*/model.pt')}
    exp.gate.max_ratio = 1000
    assert check_gate(exp, planned)['passed']  # restores gate.json for the tests after this one


def test_the_shipped_pair_is_written_in_half_precision_with_its_test_metrics(finished):
    import torch

    from surround_depth_train.shipped import read_shipped

    tmp, _ = finished
    pair = read_shipped(tmp / 'runs' / 'shipped')
    assert pair is not None
    for model, run in ((pair.baseline, 'plain_s0'), (pair.distilled, 'mb_ckd_vrkd_s0')):
        result = json.loads((tmp / 'runs' / run / 'eval_test' / 'results.json').read_text())
        assert model.run == run and model.seed == 0
        assert model.test_metrics == pytest.approx(result['lidar']['mean'])
        weights = torch.load(model.path, weights_only=True)['state_dict']
        assert {v.dtype for v in weights.values() if v.is_floating_point()} == {torch.float16}
        assert (pair.folder / f'{model.role}.yaml').read_text() == (tmp / 'runs' / run / 'config.yaml').read_text()
    assert 'Shipped models: `plain_s0` and `mb_ckd_vrkd_s0`' in (tmp / 'report.md').read_text()
    assert set(pair.manifest['paired_delta_t_per_seed']) == {'0', '1'}  # the smoke experiment's two seeds
    assert 'Over the 2 paired seeds of the experiment' in (pair.folder / 'README.md').read_text()
    assert '| baseline | `baseline.pt` |' in (pair.folder / 'README.md').read_text()


def test_shipping_is_both_or_neither_and_refuses_a_pair_over_the_size_limit(finished):
    from surround_depth_train.experiment import collect, ship
    from surround_depth_train.shipped import read_shipped

    tmp, _ = finished
    exp = load_experiment(SMOKE, out_dir=str(tmp / 'runs'), report=str(tmp / 'report.md'))
    planned = plan_runs(exp)
    results = collect(exp, planned)
    before = read_shipped(exp.ship.dir)
    exp.ship.max_total_mb = 1e-3
    with pytest.raises(ExperimentError, match='over ship.max_total_mb'):
        ship(exp, planned, results, 'cmd')
    assert read_shipped(exp.ship.dir) == before  # the shipped pair is untouched
    assert not Path(exp.ship.dir + '.partial').exists()
    exp.ship.require_direction = True
    exp.ship.max_total_mb = 30.0
    exp.compare.target_delta_t = 1e9  # a direction no run can show
    assert 'none, because the paper\'s direction does not hold' in ship(exp, planned, results, 'cmd')
    assert read_shipped(exp.ship.dir) == before
    exp.ship.require_direction, exp.ship.require_pair_gain = False, True
    exp.ship.baseline = exp.ship.distilled = 'plain'  # a student against itself gains nothing
    assert 'none, because `plain` does not beat `plain` (paired Δ_T +0.00 %' in ship(exp, planned, results, 'cmd')
    assert read_shipped(exp.ship.dir) == before


@pytest.mark.slow
def test_second_call_skips_finished_runs_and_resumes_an_interrupted_one(finished, capsys):
    from surround_depth_train.train import main as train_main

    tmp, _ = finished
    capsys.readouterr()
    stamps = {p: p.stat().st_mtime_ns for p in (tmp / 'runs').glob('*/model.pt')}
    assert main(_args(tmp)) == 0
    out = capsys.readouterr().out
    assert len(re.findall(r'finished earlier, skipped', out)) == 8
    assert 'gate passed' in out
    assert stamps == {p: p.stat().st_mtime_ns for p in (tmp / 'runs').glob('*/model.pt')}

    # interrupt plain_s1 after its first step (2 steps in all), as a killed run would leave it
    exp = load_experiment(SMOKE, out_dir=str(tmp / 'runs'), report=str(tmp / 'report.md'))
    run = next(r for r in plan_runs(exp) if r.name == 'plain_s1')
    import shutil
    shutil.rmtree(run.out_dir)   # a killed run leaves only what its first step wrote
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


def test_the_pre_registered_design_gives_every_role_its_own_scenes():
    from surround_depth_train.training.builders import build_dataset

    exp = load_experiment(DESIGN)
    planned = plan_runs(exp)
    assert exp.seeds == list(range(8)) and exp.decision.planned_seeds == 8
    assert sum(r.spec.name == 'mb' for r in planned) == sum(r.spec.name == 'mb_ckd_vrkd' for r in planned) == 8
    scenes = {}

    def seeds_of(cfg, split):
        ds = build_dataset(cfg.data, split)
        return {ds.locate(i)[0] for i in range(len(ds))}

    for run in planned:
        cfg = resolve_config(run)
        role = 'teacher' if run.spec.name == 'teacher' else 'students'
        scenes.setdefault(role, set()).update(seeds_of(cfg, 'train'))
        if run.spec.name == 'mb':
            assert cfg.data.lidar_beams == 8 and cfg.loss.ckd == cfg.loss.vrkd == 0
        if run.spec.name == 'mb_ckd_vrkd':
            assert (cfg.loss.ckd, cfg.loss.vrkd) == (0.1, 1.0) and cfg.teacher.cache
        if run.spec.name == 'teacher':
            assert cfg.mode == 'teacher' and cfg.loss.teacher_target == 'dense'
    test_cfg = load_config_with(resolve_config(planned[1]), exp.evaluation.overrides)
    scenes['test'] = seeds_of(test_cfg, 'test')
    gate_cfg = load_config_with(resolve_config(planned[1]), exp.gate.overrides)
    scenes['val'] = seeds_of(gate_cfg, 'val')
    assert len(scenes['teacher']) == 160 and len(scenes['students']) == 12 and len(scenes['test']) == 64
    roles = list(scenes)
    for i, a in enumerate(roles):
        for b in roles[i + 1:]:
            assert not scenes[a] & scenes[b], (a, b)
    assert test_cfg.data.lidar_beams == 32 and gate_cfg.data.lidar_beams == 32


def load_config_with(cfg, overrides):
    from surround_depth_train.config import apply_overrides, to_mapping
    from surround_depth_train.config import from_mapping
    from surround_depth_train.training.config import TrainConfig

    return from_mapping(TrainConfig, apply_overrides(to_mapping(cfg), overrides))


def _synthetic_results(exp, planned, gain: float, noise: float, scenes: int = 40):
    """Evaluation results of every mb / mb_ckd_vrkd seed: per-scene metrics; the distilled arm ``gain`` better."""
    import numpy as np

    from surround_depth_train.metrics import LOWER_IS_BETTER, METRIC_NAMES

    rng = np.random.default_rng(0)
    base = {'abs_rel': 0.2, 'sq_rel': 1.5, 'rmse': 5.0, 'rmse_log': 0.25, 'a1': 0.7, 'a2': 0.9, 'a3': 0.95}
    results = {}
    for run in planned:
        if run.spec.name not in ('mb', 'mb_ckd_vrkd'):
            continue
        per_scene = {}
        for c in range(scenes):
            factor = 1 + (gain if run.spec.name == 'mb_ckd_vrkd' else 0.0) + noise * rng.standard_normal()
            per_scene[f'scene-{c}'] = {k: base[k] / factor if LOWER_IS_BETTER[k] else base[k] * factor
                                       for k in METRIC_NAMES}
        results[run.name] = {'lidar': {'mean': base, 'per_scene': per_scene}}
    return results


@pytest.mark.parametrize('gain, noise, verdict', [(0.10, 0.01, 'effect shown'), (0.0, 0.005, 'ruled out'),
                                                  (0.03, 0.3, 'inconclusive')])
def test_the_decision_rule_reads_the_bootstrap_interval_as_pre_registered(gain, noise, verdict):
    from surround_depth_train.experiment import decide

    exp = load_experiment(DESIGN, out_dir='/nonexistent')
    exp.decision.resamples = 2000
    planned = plan_runs(exp)
    decision = decide(exp, planned, _synthetic_results(exp, planned, gain, noise))
    assert decision['verdict'] == verdict, decision
    assert decision['pairs'] == 8 and decision['final'] and decision['scenes'] == 40
    lo, hi = decision['interval']
    assert lo <= decision['d'] <= hi
    if verdict == 'effect shown':
        assert decision['d'] > 3 and lo > 0


def test_the_decision_is_not_final_before_every_planned_pair_has_finished():
    from surround_depth_train.experiment import decide

    exp = load_experiment(DESIGN, out_dir='/nonexistent')
    exp.decision.resamples = 200
    planned = plan_runs(exp)
    results = _synthetic_results(exp, planned, 0.1, 0.01)
    for name in ('mb_s7', 'mb_ckd_vrkd_s6'):
        del results[name]
    decision = decide(exp, planned, results)
    assert decision['pairs'] == 6 and not decision['final'] and set(decision['per_seed']) == {str(s) for s in range(6)}


def test_the_shipped_seed_is_chosen_on_validation_once_every_seed_has_finished(tmp_path):
    from surround_depth_train.experiment import seed_by_validation

    exp = load_experiment(DESIGN, out_dir=str(tmp_path))
    planned = plan_runs(exp)
    runs = [r for r in planned if r.spec.name == 'light_mb_ckd_vrkd']
    results = {}
    for run, val in zip(runs, (0.30, 0.20, 0.25)):
        run.out_dir.mkdir(parents=True)
        (run.out_dir / 'result.json').write_text(json.dumps({'val': {'mean': {'abs_rel': val}}}))
        results[run.name] = {}
        if run.seed != runs[-1].seed:
            assert seed_by_validation(planned, results, 'light_mb_ckd_vrkd') is None  # not every seed yet
    assert seed_by_validation(planned, results, 'light_mb_ckd_vrkd') == runs[1].seed
