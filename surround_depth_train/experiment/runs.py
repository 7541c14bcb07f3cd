"""Running an experiment's runs: each trains in its own process, then is evaluated; finished work is skipped,
interrupted work resumed, and the gate is checked before any run that distils from the teacher."""
from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from surround_depth_train.atomic import atomic_write
from surround_depth_train.config import ConfigError, load_config, save_config, to_mapping
from surround_depth_train.experiment.config import (EvaluationSpec, ExperimentConfig, ExperimentError, PlannedRun,
                                                    resolve_config)
from surround_depth_train.training.config import TrainConfig

__all__ = ['EVALUATION_VERSION', 'read_json', 'run_status', 'evaluate_run', 'run_times', 'collect', 'execute',
           'check_gate', 'replace_evaluation']

#: Bumped when the evaluation gains measures, so older cached evaluations are redone (2: median-scaled metrics).
EVALUATION_VERSION = 2

def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def run_status(run: PlannedRun, cfg: TrainConfig) -> str:
    """``finished``, ``partial`` (a checkpoint to resume) or ``new``.

    Raises:
        ExperimentError: the run's folder holds a finished run of another config.
    """
    from surround_depth_train.training.checkpoint import config_differences

    out = run.out_dir
    result = read_json(out / 'result.json')
    finished = isinstance(result, dict) and not result.get('stopped_early') and (out / 'model.pt').is_file()
    if finished:
        saved = out / 'config.yaml'
        try:
            saved_cfg = load_config(TrainConfig, saved)
        except ConfigError:
            saved_cfg = None
        diffs = ['config.yaml unreadable'] if saved_cfg is None else \
            config_differences(to_mapping(saved_cfg), to_mapping(cfg))
        if diffs:
            raise ExperimentError(f'{run.name}: {out} holds a finished run of another config ({"; ".join(diffs)}); '
                                  f'delete that folder to train it again, or pass --out-dir for a new experiment')
        return 'finished'
    return 'partial' if (out / 'checkpoints' / 'last.pt').is_file() else 'new'


def _train(run: PlannedRun, cfg: TrainConfig, resume: bool) -> None:
    """Train ``run`` in its own process (log in ``<run>/train.log``)."""
    run.out_dir.mkdir(parents=True, exist_ok=True)
    planned = run.out_dir / 'experiment_config.yaml'
    save_config(cfg, planned)
    cmd = [sys.executable, '-m', 'surround_depth_train.train', '--config', str(planned)]
    if resume:
        cmd.append('--resume')
    log_path = run.out_dir / 'train.log'
    with open(log_path, 'a') as log:
        log.write(f'\n$ {shlex.join(cmd)}\n')
        log.flush()
        proc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env=os.environ.copy())
    if proc.returncode != 0:
        tail = log_path.read_text().splitlines()[-8:]
        raise ExperimentError(f'{run.name}: training failed (exit status {proc.returncode}); the end of '
                              f'{log_path}:\n  ' + '\n  '.join(tail))


def evaluate_run(run: PlannedRun, exp: ExperimentConfig, suffix: str = '', extra: Sequence[str] = ()) -> dict:
    """The evaluation command's run on the held-out split, reused when newer than the model file."""
    from surround_depth_train.evaluate import run_evaluation

    ev = exp.evaluation
    out = run.out_dir / f'eval_{ev.split}{suffix}'
    model = run.out_dir / 'model.pt'
    settings = {'evaluation': to_mapping(ev), 'extra': list(extra), 'version': EVALUATION_VERSION}
    cached = read_json(out / 'results.json')
    if cached is not None and (out / 'results.json').stat().st_mtime >= model.stat().st_mtime and \
            read_json(out / 'experiment_evaluation.json') == settings:
        return cached
    result = run_evaluation(model, config=run.out_dir / 'config.yaml', overrides=list(ev.overrides) + list(extra),
                            split=ev.split, out_dir=out, samples=ev.samples, pictures=ev.pictures,
                            latency_runs=ev.latency_runs, consistency=True, progress=False)
    with atomic_write(out / 'experiment_evaluation.json', 'w') as f:  # what this evaluation was made with
        json.dump(settings, f, indent=2)
    return result


def run_times(run: PlannedRun) -> dict[str, float]:
    """``train_s`` (the trainer's own wall time, every resumed part added up), ``eval_s`` and ``train_peak_rss_gb``
    (the training process's peak memory, its last part when resumed; absent for runs trained before it was recorded)."""
    times = dict(read_json(run.out_dir / 'experiment_times.json') or {})
    result = read_json(run.out_dir / 'result.json')
    if isinstance(result, dict) and result.get('wall_s') is not None:
        times['train_s'] = float(result['wall_s'])
    if isinstance(result, dict) and result.get('peak_rss_gb') is not None:
        times['train_peak_rss_gb'] = float(result['peak_rss_gb'])
    return times


def _add_time(run: PlannedRun, key: str, seconds: float) -> None:
    times = run_times(run)
    times[key] = times.get(key, 0.0) + seconds
    with atomic_write(run.out_dir / 'experiment_times.json', 'w') as f:
        json.dump(times, f, indent=2)


def collect(exp: ExperimentConfig, planned: list[PlannedRun]) -> dict[str, dict]:
    """``{run name: evaluation result}`` of every run evaluated so far (read from disk)."""
    results = {}
    split = exp.evaluation.split
    for run in planned:
        result = read_json(run.out_dir / f'eval_{split}' / 'results.json')
        if result is None or not (run.out_dir / 'model.pt').is_file():
            continue
        for suffix in run.spec.extra_evaluations:
            extra = read_json(run.out_dir / f'eval_{split}_{suffix}' / 'results.json')
            if extra is not None:
                result.setdefault('extra', {})[suffix] = extra
        results[run.name] = result
    return results


def execute(exp: ExperimentConfig, planned: list[PlannedRun], only: Sequence[str] = (),
            after_run: Callable[[], None] | None = None) -> None:
    """Train and evaluate every planned run not done yet (``after_run`` is called after each)."""
    selected = [r for r in planned if not only or r.spec.name in only or r.name in only]
    configs = {}
    for run in selected:  # every config resolves (and every finished run matches) before any training starts
        configs[run.name] = resolve_config(run)
    statuses = {run.name: run_status(run, configs[run.name]) for run in selected}
    for i, run in enumerate(selected, 1):
        cfg, status = configs[run.name], statuses[run.name]
        head = f'[experiment {i}/{len(selected)}] {run.name}'
        if cfg.needs_teacher and exp.gate.teacher:
            result = check_gate(exp, planned)
            if not result['passed']:
                raise ExperimentError(f'premise not met: {result["reason"]}; the runs that distil from the teacher '
                                      f'are not trained (make the teacher better first)')
        if status == 'finished':
            line = f'{head}: finished earlier, skipped'
        else:
            print(f'{head}: {"resuming" if status == "partial" else "training"} ({cfg.mode}, '
                  f'{cfg.model.name if cfg.mode == "student" else cfg.teacher.name}, {cfg.epochs} epochs x '
                  f'{cfg.data.train_samples} samples) ...', flush=True)
            t0 = time.perf_counter()
            _train(run, cfg, resume=status == 'partial')
            spent = time.perf_counter() - t0
            _add_time(run, 'train_s', spent)
            line = f'{head}: trained in {spent:.0f} s'
        t0 = time.perf_counter()
        fresh = not (run.out_dir / f'eval_{exp.evaluation.split}' / 'results.json').is_file()
        result = evaluate_run(run, exp)
        for suffix, extra in run.spec.extra_evaluations.items():
            evaluate_run(run, exp, f'_{suffix}', extra)
        spent = time.perf_counter() - t0
        if fresh or spent > 1.0:
            _add_time(run, 'eval_s', spent)
        mean = result['lidar']['mean']
        metric = 'no valid pixels' if mean is None else f'abs_rel {mean["abs_rel"]:.3f}, a1 {mean["a1"]:.3f}'
        print(f'{line}; {exp.evaluation.split}: {metric}', flush=True)
        if after_run is not None:
            after_run()


def check_gate(exp: ExperimentConfig, planned: list[PlannedRun]) -> dict[str, Any]:
    """Evaluate the gate (:class:`GateSpec`) and write ``gate.json`` into the experiment folder.

    Returns ``{'passed', 'reason', 'teacher', 'reference', 'ratio', 'max_ratio', 'split'}``; ``passed`` is False
    (with the reason) while the teacher or the reference run has not finished.
    """
    g = exp.gate
    teacher = next((r for r in planned if r.spec.name == g.teacher), None)
    reference = next((r for r in planned if r.spec.name == g.reference), None)
    out: dict[str, Any] = {'passed': False, 'max_ratio': g.max_ratio, 'split': g.split,
                           'teacher': None, 'reference': None, 'ratio': None}
    for role, run in (('teacher', teacher), ('reference', reference)):
        if run is None or not (run.out_dir / 'model.pt').is_file() or \
                not isinstance(read_json(run.out_dir / 'result.json'), dict):
            name = run.name if run is not None else (g.teacher if role == 'teacher' else g.reference)
            out['reason'] = f'the gate needs the finished run {name} ({role}); train it first'
            return out
    gate = EvaluationSpec(split=g.split, overrides=list(g.overrides), samples=None, pictures=0, latency_runs=1)
    values = {}
    for role, run in (('teacher', teacher), ('reference', reference)):
        result = evaluate_run(run, replace_evaluation(exp, gate), '_gate')
        values[role] = {'run': run.name, 'abs_rel': result['lidar']['mean']['abs_rel'],
                        'a1': result['lidar']['mean']['a1'], 'samples': result['dataset']['samples']}
    ratio = values['teacher']['abs_rel'] / values['reference']['abs_rel']
    out.update(teacher=values['teacher'], reference=values['reference'], ratio=ratio,
               passed=bool(ratio <= g.max_ratio))
    out['reason'] = (f'{teacher.name} AbsRel {values["teacher"]["abs_rel"]:.4f} vs {reference.name} '
                     f'{values["reference"]["abs_rel"]:.4f} on the {g.split} split: ratio {ratio:.3f} '
                     f'({"<=" if out["passed"] else ">"} {g.max_ratio:g})')
    Path(exp.out_dir).mkdir(parents=True, exist_ok=True)
    with atomic_write(Path(exp.out_dir) / 'gate.json', 'w') as f:
        json.dump(out, f, indent=2)
    print(f'[experiment] gate {"passed" if out["passed"] else "NOT passed"}: {out["reason"]}', flush=True)
    return out


def replace_evaluation(exp: ExperimentConfig, evaluation: EvaluationSpec) -> ExperimentConfig:
    """A shallow copy of ``exp`` that evaluates with ``evaluation``."""
    import copy

    other = copy.copy(exp)
    other.evaluation = evaluation
    return other
