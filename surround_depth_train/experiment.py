"""The distillation experiment as one resumable command: train every run of an experiment YAML, evaluate each on the
held-out split, and write the tables.

    python -m surround_depth_train.experiment config/experiments/surroundsim.yaml [--only NAME ...]
        [--out-dir DIR] [--report PATH] [--dry-run] [--debug]

An experiment YAML (:class:`ExperimentConfig`) lists runs; each run is a training config (``config/train/*.yaml``)
plus ``key=value`` overrides (the experiment's ``common`` ones, then its named ``presets``, then its own). A run
marked ``seeded`` is repeated for every seed of ``seeds`` (``<name>_s<seed>``; the same seeds for every seeded
run, so runs are paired: same initialisation, same data order). Overrides may name ``{out_dir}`` (the experiment's
folder) and ``{run:NAME}`` (the folder of an earlier run, e.g. ``teacher.checkpoint={run:teacher_ft}/model.pt``).

Each run trains in its own process (``python -m surround_depth_train.train``; log in ``<run>/train.log``) on the
GPU when one is available (``device: auto``), then is evaluated in this process by the evaluation command's
:func:`~surround_depth_train.evaluate.run_evaluation` on ``evaluation.split`` (the held-out test split). The
command is resumable:

- a run whose ``result.json`` says it finished (and whose saved config equals the planned one) is skipped;
- a run with ``checkpoints/last.pt`` but no finished result is continued with ``--resume`` (the trainer refuses a
  checkpoint whose config differs);
- a finished run whose saved config differs from the planned one is refused (delete its folder, or use another
  ``--out-dir``), so a table never mixes two settings;
- an evaluation newer than the run's ``model.pt`` is reused.

Rendered SurroundSim samples are cached by the dataset (``data.cache_dir``), the teacher's outputs by the trainer
(``teacher.cache``). Runs are executed in ``(priority, seed index, order in the file)`` order, so the runs a
partial experiment needs most finish first. One line per run reports progress.

The report (``report``, Markdown, and the same path with ``.json``) holds the teacher's own rows, each table
(mean +- standard deviation over seeds; ``Delta_T`` per seed against the ``compare.baseline`` run of the same seed,
then mean +- std), the cross-view consistency, the training loss terms, a picture of predictions side by side, the
wall time of every run and the command, seeds and config that produced it.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import yaml

from surround_depth_train.atomic import atomic_write
from surround_depth_train.config import ConfigError, load_config, save_config, to_mapping
from surround_depth_train.metrics import METRIC_NAMES, delta_t
from surround_depth_train.shipped import ShipSpec, ShippingError, ship_pair
from surround_depth_train.training.config import TrainConfig

__all__ = ['RunSpec', 'EvaluationSpec', 'CompareSpec', 'PictureSpec', 'ExperimentConfig', 'PlannedRun',
           'load_experiment', 'plan_runs', 'run_status', 'ship', 'main']


@dataclass
class RunSpec:
    """One run of the experiment: a training config plus overrides."""

    name: str
    config: str                          # training YAML (config/train/*.yaml)
    overrides: list[str] = field(default_factory=list)
    presets: list[str] = field(default_factory=list)   # names of ExperimentConfig.presets, applied in order
    seeded: bool = False                 # repeat for every seed of ExperimentConfig.seeds
    seeds: list[int] | None = None       # a seeded run on these seeds only (e.g. [0] for a one-seed row)
    table: str = ''                      # the table the run is a row of: teacher or a key of tables ('' = none)
    label: str = ''                      # the row label (default: the name)
    priority: int = 0                    # lower runs first
    # further evaluations of this run's model: suffix -> data.* overrides (e.g. the teacher in its own world)
    extra_evaluations: dict[str, list[str]] = field(default_factory=dict)


@dataclass
class EvaluationSpec:
    split: str = 'test'
    overrides: list[str] = field(default_factory=list)  # data.* overrides of every evaluation (the students' world)
    samples: int | None = None           # None = the whole split
    pictures: int = 1                    # mosaics + bird's-eye views per evaluation
    latency_runs: int = 1                # latency is not a subject of this experiment; one pass keeps it cheap


@dataclass
class CompareSpec:
    baseline: str = 'plain'              # Delta_T reference (run name; paired by seed)
    distilled: str = 'mb_ckd_vrkd'       # the paper's full method
    ckd_only: str = 'mb_ckd'             # CKD alone, which CKD + VRKD should at least match
    same_head: str | None = 'mb'         # the distilled student's architecture without distillation
    target_delta_t: float = 5.0          # the paper's direction: distilled >= this Delta_T (%), beyond one std
    consistency: list[str] = field(default_factory=lambda: ['plain', 'mb', 'mb_vrkd', 'mb_ckd_vrkd'])


@dataclass
class GateSpec:
    """The premise a distillation experiment needs, checked before any run that uses the teacher.

    The teacher and the reference student (its first seed) are evaluated on ``split`` (validation, never the test
    split) with ``overrides``; runs that distil from the teacher start only when the teacher's AbsRel is at most
    ``max_ratio`` times the reference's. Otherwise the experiment stops with "premise not met".
    """

    teacher: str | None = None           # run name of the teacher (None: no gate)
    reference: str = 'mb'                # the student without distillation (first seed)
    split: str = 'val'
    overrides: list[str] = field(default_factory=list)  # data.* overrides of both gate evaluations
    max_ratio: float = 0.8


@dataclass
class DecisionSpec:
    """The pre-registered decision rule on the distillation's own effect (:mod:`surround_depth_train.experiment`).

    ``d`` = mean over seeds of the paired Delta_T (%) of ``distilled`` against ``reference`` on the evaluation split;
    an interval of ``confidence`` from a bootstrap over seeds and scenes. "effect shown" if ``d >= effect`` and the
    interval's lower end is above 0; "ruled out" if its upper end is below ``effect``; otherwise "inconclusive".
    """

    distilled: str | None = None         # None: no decision rule (older experiments)
    reference: str = 'mb'
    effect: float = 3.0                  # Delta_T (%) that counts as an effect
    confidence: float = 0.95
    resamples: int = 10000
    bootstrap_seed: int = 0
    planned_seeds: int | None = None     # the verdict is final only with this many pairs (None: every seed)


@dataclass
class PictureSpec:
    runs: list[str] = field(default_factory=list)  # runs whose predictions are shown (seeded: the first seed)
    sample: int = 0                      # index into the evaluation split


@dataclass
class ExperimentConfig:
    name: str = 'experiment'
    description: str = ''                # the design, in a few sentences (copied into the report)
    out_dir: str = 'runs/experiment'
    report: str = 'docs/results/experiment.md'
    analysis: str | None = None          # a hand-written analysis file the report links to
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    common: list[str] = field(default_factory=list)     # overrides of every run
    presets: dict[str, list[str]] = field(default_factory=dict)
    evaluation: EvaluationSpec = field(default_factory=EvaluationSpec)
    compare: CompareSpec = field(default_factory=CompareSpec)
    gate: GateSpec = field(default_factory=GateSpec)
    decision: DecisionSpec = field(default_factory=DecisionSpec)
    picture: PictureSpec = field(default_factory=PictureSpec)
    ship: ShipSpec = field(default_factory=ShipSpec)  # the baseline / distilled pair `make demo` deploys
    # the tables of the report, in order: RunSpec.table -> title (each also lists the baseline for reference)
    tables: dict[str, str] = field(default_factory=lambda: {'V': 'Table V: ablation',
                                                            'III': 'Table III: distillation baselines',
                                                            'IV': 'Table IV: bin heads'})
    runs: list[RunSpec] = field(default_factory=list)


@dataclass
class PlannedRun:
    spec: RunSpec
    name: str                            # <spec.name> or <spec.name>_s<seed>
    seed: int | None
    seed_index: int
    out_dir: Path
    overrides: list[str]

    @property
    def label(self) -> str:
        return self.spec.label or self.spec.name


class ExperimentError(RuntimeError):
    """A run failed or cannot be used; the message names the run and what to do."""


def load_experiment(path: str | os.PathLike, out_dir: str | None = None, report: str | None = None
                    ) -> ExperimentConfig:
    exp = load_config(ExperimentConfig, path)
    if out_dir:
        exp.out_dir = out_dir
    if report:
        exp.report = report
    if exp.ship.dir is not None:
        exp.ship.dir = exp.ship.dir.replace('{out_dir}', exp.out_dir)
    names = [r.name for r in exp.runs]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ConfigError(f'runs: the names {dupes} appear more than once; give every run its own name')
    if not exp.runs:
        raise ConfigError('runs: the experiment lists no run')
    if not exp.seeds:
        raise ConfigError('seeds: give at least one seed')
    for r in exp.runs:
        missing = [p for p in r.presets if p not in exp.presets]
        if missing:
            raise ConfigError(f'runs.{r.name}.presets: {missing} not in presets ({sorted(exp.presets)})')
        if r.table not in ('', 'teacher', *exp.tables):
            raise ConfigError(f'runs.{r.name}.table: {r.table!r} is not a table of the report; the tables are '
                              f'teacher, {", ".join(exp.tables)} (add it under tables:)')
        if not re.fullmatch(r'[A-Za-z0-9_.-]+', r.name):
            raise ConfigError(f'runs: {r.name!r} is not a usable folder name; use letters, digits, _ . -')
    for key, overrides in (('evaluation', exp.evaluation.overrides), ('gate', exp.gate.overrides)):
        bad = [o for o in overrides if not o.startswith('data.')]
        if bad:
            raise ConfigError(f'{key}.overrides {bad}: only data.* keys describe the evaluation data')
    for key, name in (('gate.teacher', exp.gate.teacher), ('gate.reference', exp.gate.reference if exp.gate.teacher
                                                                else None),
                      ('decision.distilled', exp.decision.distilled),
                      ('decision.reference', exp.decision.reference if exp.decision.distilled else None)):
        if name is not None and name not in names:
            raise ConfigError(f'{key}: {name!r} is not a run of the experiment ({", ".join(names)})')
    return exp


#: Bumped when the evaluation gains measures, so older cached evaluations are redone (2: median-scaled metrics).
EVALUATION_VERSION = 2

_REF = re.compile(r'\{run:([A-Za-z0-9_.-]+)\}')


def plan_runs(exp: ExperimentConfig) -> list[PlannedRun]:
    """Every run (seeded ones once per seed), in execution order, with references resolved.

    Raises:
        ConfigError: a ``{run:NAME}`` reference names an unknown run, a seeded one, or one that runs later.
    """
    root = Path(exp.out_dir)
    runs: list[tuple[tuple[int, int, int], PlannedRun]] = []
    for pos, spec in enumerate(exp.runs):
        seeds = list(enumerate(spec.seeds if spec.seeds is not None else exp.seeds)) if spec.seeded or \
            spec.seeds is not None else [(0, None)]
        for k, seed in seeds:
            name = spec.name if seed is None else f'{spec.name}_s{seed}'
            overrides = list(exp.common) + [o for p in spec.presets for o in exp.presets[p]] + list(spec.overrides)
            overrides = [o.replace('{out_dir}', str(root)) for o in overrides]
            overrides += [f'out_dir={root / name}'] + ([f'seed={seed}'] if seed is not None else [])
            runs.append(((spec.priority, k, pos), PlannedRun(spec, name, seed, k, root / name, overrides)))
    runs.sort(key=lambda item: item[0])
    planned = [r for _, r in runs]
    order = {r.name: i for i, r in enumerate(planned)}
    specs = {s.name: s for s in exp.runs}
    for i, run in enumerate(planned):
        resolved = []
        for o in run.overrides:
            for ref in _REF.findall(o):
                if ref not in specs:
                    raise ConfigError(f'runs.{run.spec.name}: {{run:{ref}}} names no run of the experiment')
                if specs[ref].seeded or specs[ref].seeds is not None:
                    raise ConfigError(f'runs.{run.spec.name}: {{run:{ref}}} is a seeded run; refer to one run')
                if order[ref] >= i:
                    raise ConfigError(f'runs.{run.spec.name}: {{run:{ref}}} runs later; give {ref} a lower '
                                      f'priority (or list it first)')
            resolved.append(_REF.sub(lambda m: str(root / m.group(1)), o))
        run.overrides = resolved
    return planned


def resolve_config(run: PlannedRun) -> TrainConfig:
    """The run's training config: its YAML with the experiment's overrides."""
    try:
        return load_config(TrainConfig, run.spec.config, run.overrides)
    except ConfigError as exc:
        raise ConfigError(f'runs.{run.spec.name}: {exc}') from None


def _read_json(path: Path) -> Any:
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
    result = _read_json(out / 'result.json')
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


def _evaluate(run: PlannedRun, exp: ExperimentConfig, suffix: str = '', extra: Sequence[str] = ()) -> dict:
    """The evaluation command's run on the held-out split, reused when newer than the model file."""
    from surround_depth_train.evaluate import run_evaluation

    ev = exp.evaluation
    out = run.out_dir / f'eval_{ev.split}{suffix}'
    model = run.out_dir / 'model.pt'
    settings = {'evaluation': to_mapping(ev), 'extra': list(extra), 'version': EVALUATION_VERSION}
    cached = _read_json(out / 'results.json')
    if cached is not None and (out / 'results.json').stat().st_mtime >= model.stat().st_mtime and \
            _read_json(out / 'experiment_evaluation.json') == settings:
        return cached
    result = run_evaluation(model, config=run.out_dir / 'config.yaml', overrides=list(ev.overrides) + list(extra),
                            split=ev.split, out_dir=out, samples=ev.samples, pictures=ev.pictures,
                            latency_runs=ev.latency_runs, consistency=True, progress=False)
    with atomic_write(out / 'experiment_evaluation.json', 'w') as f:  # what this evaluation was made with
        json.dump(settings, f, indent=2)
    return result


def _times(run: PlannedRun) -> dict[str, float]:
    """``train_s`` (the trainer's own wall time, every resumed part added up) and ``eval_s``."""
    times = dict(_read_json(run.out_dir / 'experiment_times.json') or {})
    result = _read_json(run.out_dir / 'result.json')
    if isinstance(result, dict) and result.get('wall_s') is not None:
        times['train_s'] = float(result['wall_s'])
    return times


def _add_time(run: PlannedRun, key: str, seconds: float) -> None:
    times = _times(run)
    times[key] = times.get(key, 0.0) + seconds
    with atomic_write(run.out_dir / 'experiment_times.json', 'w') as f:
        json.dump(times, f, indent=2)


def collect(exp: ExperimentConfig, planned: list[PlannedRun]) -> dict[str, dict]:
    """``{run name: evaluation result}`` of every run evaluated so far (read from disk)."""
    results = {}
    split = exp.evaluation.split
    for run in planned:
        result = _read_json(run.out_dir / f'eval_{split}' / 'results.json')
        if result is None or not (run.out_dir / 'model.pt').is_file():
            continue
        for suffix in run.spec.extra_evaluations:
            extra = _read_json(run.out_dir / f'eval_{split}_{suffix}' / 'results.json')
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
        result = _evaluate(run, exp)
        for suffix, extra in run.spec.extra_evaluations.items():
            _evaluate(run, exp, f'_{suffix}', extra)
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
                not isinstance(_read_json(run.out_dir / 'result.json'), dict):
            name = run.name if run is not None else (g.teacher if role == 'teacher' else g.reference)
            out['reason'] = f'the gate needs the finished run {name} ({role}); train it first'
            return out
    gate = EvaluationSpec(split=g.split, overrides=list(g.overrides), samples=None, pictures=0, latency_runs=1)
    values = {}
    for role, run in (('teacher', teacher), ('reference', reference)):
        result = _evaluate(run, replace_evaluation(exp, gate), '_gate')
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


# ---------------------------------------------------------------------------------------------- the report


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    arr = np.asarray(values, np.float64)
    return float(arr.mean()), float(arr.std(ddof=1)) if len(arr) > 1 else 0.0


def _fmt(mean: float, std: float | None, digits: int = 3, sign: bool = False) -> str:
    text = f'{mean:+.{digits}f}' if sign else f'{mean:.{digits}f}'
    return text if std is None else f'{text} ± {std:.{digits}f}'


def summarise(exp: ExperimentConfig, planned: list[PlannedRun], results: dict[str, dict]) -> dict[str, Any]:
    """Per run spec: the seeds it has, metrics mean/std, Delta_T per seed vs the paired baseline, consistency."""
    by_spec: dict[str, list[PlannedRun]] = {}
    for run in planned:
        if run.name in results:
            by_spec.setdefault(run.spec.name, []).append(run)
    base_by_seed = {r.seed: results[r.name]['lidar']['mean'] for r in by_spec.get(exp.compare.baseline, [])
                    if results[r.name]['lidar']['mean'] is not None}
    rows = {}
    for name, runs in by_spec.items():
        spec = runs[0].spec
        means = [results[r.name]['lidar']['mean'] for r in runs]
        ok = [(r, m) for r, m in zip(runs, means) if m is not None]
        metrics = {k: _mean_std([m[k] for _, m in ok]) for k in METRIC_NAMES} if ok else None
        dts = [delta_t(m, base_by_seed[r.seed]) for r, m in ok if r.seed in base_by_seed] \
            if name != exp.compare.baseline else []
        if runs[0].seed is not None:
            dt = _mean_std(dts) if dts else None
        else:  # one run against the mean of the baseline's seeds (no pairing possible)
            base_mean = ({k: float(np.mean([b[k] for b in base_by_seed.values()])) for k in METRIC_NAMES}
                         if base_by_seed else None)
            dt = (delta_t(ok[0][1], base_mean), None) if ok and base_mean and name != exp.compare.baseline \
                else None
        cons = [(results[r.name].get('consistency') or {}).get('rig') for r in runs]
        cons = [c for c in cons if c is not None]
        dense = [results[r.name]['dense']['mean'] for r in runs if (results[r.name].get('dense') or {}).get('mean')]
        structure = [results[r.name]['lidar_median_scaled']['mean'] for r in runs
                     if (results[r.name].get('lidar_median_scaled') or {}).get('mean')]
        rows[name] = {
            'label': spec.label or name, 'table': spec.table, 'seeds': [r.seed for r in runs],
            'runs': [r.name for r in runs], 'parameters': results[runs[0].name]['model']['parameters'],
            'metrics': None if metrics is None else {k: {'mean': m, 'std': s} for k, (m, s) in metrics.items()},
            'delta_t_per_seed': dts, 'delta_t': None if dt is None else {'mean': dt[0], 'std': dt[1]},
            'consistency_rig': None if not cons else dict(zip(('mean', 'std'), _mean_std(cons))),
            'consistency_dense_reference': next(((results[r.name].get('consistency') or {}).get('dense_reference')
                                                 for r in runs), None),
            'dense_abs_rel': None if not dense else dict(zip(('mean', 'std'), _mean_std([d['abs_rel']
                                                                                         for d in dense]))),
            'median_scaled': None if not structure else {
                k: dict(zip(('mean', 'std'), _mean_std([m[k] for m in structure]))) for k in ('abs_rel', 'a1')},
            'extra': {suffix: v['lidar']['mean'] for suffix, v in (results[runs[0].name].get('extra') or {}).items()},
            'times': {r.name: _times(r) for r in runs},
        }
    return rows


def _table(rows: list[dict], with_std: bool) -> str:
    from surround_depth_train.evaluation.report import TABLE_COLUMNS

    lines = ['| ' + ' | '.join(TABLE_COLUMNS[:1] + ('Seeds',) + TABLE_COLUMNS[1:2] + TABLE_COLUMNS[3:]) + ' |',
             '|---|---:|' + '---:|' * (len(TABLE_COLUMNS) - 2)]
    for row in rows:
        m = row['metrics']
        cells = [row['label'], str(len(row['seeds'])), f'{row["parameters"] / 1e6:.2f} M']
        if m is None:
            cells += ['no valid pixels'] + [''] * 6
        else:
            cells += [_fmt(m[k]['mean'], m[k]['std'] if with_std and len(row['seeds']) > 1 else None)
                      for k in METRIC_NAMES]
        dt = row['delta_t']
        cells.append('-' if dt is None else _fmt(dt['mean'], dt['std'] if dt['std'] is not None
                                                 and len(row['seeds']) > 1 else None, 2, sign=True))
        lines.append('| ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines)


def paired_delta_t(planned: list[PlannedRun], results: dict[str, dict], run: str, reference: str
                   ) -> dict[int | None, float]:
    """Delta_T (%) of spec ``run`` against spec ``reference`` of the same seed, for every seed both have."""
    mean = {(r.spec.name, r.seed): results[r.name]['lidar']['mean'] for r in planned if r.name in results}
    return {seed: delta_t(m, mean[(reference, seed)]) for (name, seed), m in mean.items()
            if name == run and m and mean.get((reference, seed))}


def verdict(exp: ExperimentConfig, rows: dict[str, dict], results: dict[str, dict] | None = None,
            planned: list[PlannedRun] | None = None) -> dict[str, Any]:
    """Whether the paper's direction holds in these runs (None where the runs needed are missing)."""
    c = exp.compare
    full, ckd = rows.get(c.distilled), rows.get(c.ckd_only)
    out: dict[str, Any] = {'target_delta_t': c.target_delta_t}
    if results is not None and planned is not None and c.same_head:
        # the distillation's own effect: Delta_T of the distilled student against the same student, paired seeds
        pairs = list(paired_delta_t(planned, results, c.distilled, c.same_head).values())
        if pairs:
            out['distilled_vs_same_head'] = dict(zip(('mean', 'std'), _mean_std(pairs)), seeds=len(pairs))
    if full is not None and full['delta_t'] is not None:
        dt = full['delta_t']
        out['distilled_delta_t'] = dt
        out['distilled_seeds'] = len(full['delta_t_per_seed'])
        out['direction_holds'] = bool(len(full['delta_t_per_seed']) >= 2 and dt['mean'] >= c.target_delta_t
                                      and dt['mean'] - dt['std'] > 0)
    if full is not None and ckd is not None and full['delta_t'] and ckd['delta_t']:
        out['ckd_vrkd_at_least_ckd'] = bool(full['delta_t']['mean'] >= ckd['delta_t']['mean'])
    return out


def _picture(exp: ExperimentConfig, planned: list[PlannedRun], path: Path) -> str | None:
    """Predictions of the picture runs on one evaluation sample, one row each, under images and dense GT."""
    import torch

    from surround_depth_train.models.modelfile import load_model
    from surround_depth_train.training.builders import build_dataset
    from surround_depth_train.visualize import colorize_depth, label, mosaic, save_png

    chosen = []
    for name in exp.picture.runs:
        run = next((r for r in planned if r.spec.name == name and (r.out_dir / 'model.pt').is_file()), None)
        if run is not None:
            chosen.append(run)
    if not chosen:
        return None
    cfg = load_config(TrainConfig, chosen[0].out_dir / 'config.yaml', exp.evaluation.overrides)
    ds = build_dataset(cfg.data, exp.evaluation.split)
    sample = ds[min(exp.picture.sample, len(ds) - 1)]
    lo, hi = ds.min_depth, ds.max_depth
    images = sample['image']
    rows = [[label((im.permute(1, 2, 0).numpy() * 255).astype(np.uint8), n)
             for im, n in zip(images, ds.camera_names)]]
    dense = sample['depth_dense'][:, 0].numpy()
    rows.append([label(colorize_depth(d, lo, hi), 'dense GT') for d in dense])
    for run in chosen:
        model, _ = load_model(run.out_dir / 'model.pt')
        with torch.no_grad():
            depth = model.eval()(images, depth_only=True).depth[:, 0].float().numpy()
        rows.append([label(colorize_depth(d, lo, hi), run.spec.name) for d in depth])  # short: fits a 160 px tile
    save_png(path, mosaic(rows))
    return path.name


def seed_by_validation(planned: list[PlannedRun], results: dict[str, dict], spec_name: str) -> int | None:
    """The seed whose ``spec_name`` run has the lowest validation AbsRel (its training's last validation), or None
    while any of its seeds has not finished. The test split plays no part in the choice."""
    best = None
    for run in planned:
        if run.spec.name != spec_name:
            continue
        val = (_read_json(run.out_dir / 'result.json') or {}).get('val') if run.name in results else None
        if not val or not val.get('mean'):
            return None
        if best is None or val['mean']['abs_rel'] < best[0]:
            best = (val['mean']['abs_rel'], run.seed)
    return None if best is None else best[1]


def ship(exp: ExperimentConfig, planned: list[PlannedRun], results: dict[str, dict], command: str) -> str | None:
    """Write the shipped pair (``exp.ship``) when both runs are evaluated and, if required, the direction holds.

    Returns one line for the report (None when the experiment ships nothing).
    """
    spec = exp.ship
    if spec.dir is None:
        return None
    if spec.seed_by == 'validation':
        chosen = seed_by_validation(planned, results, spec.distilled)
        if chosen is None:
            return (f'Shipped models: not yet (every seed of `{spec.distilled}` must finish before the seed is '
                    f'chosen on validation).')
        spec = dataclasses.replace(spec, seed=chosen)
    runs = {}
    for role, name in (('baseline', spec.baseline), ('distilled', spec.distilled)):
        run = next((r for r in planned if r.spec.name == name and r.seed in (spec.seed, None)), None)
        if run is None:
            raise ConfigError(f'ship.{role}: {name!r} is not a run of the experiment (seed {spec.seed})')
        runs[role] = run
    if any(r.name not in results for r in runs.values()):
        return f'Shipped models: not yet (`{runs["baseline"].name}` and `{runs["distilled"].name}` must finish).'
    ver = verdict(exp, summarise(exp, planned, results), results, planned)
    if spec.require_direction and not ver.get('direction_holds'):
        return (f'Shipped models: none, because the paper\'s direction does not hold (ship.require_direction); '
                f'`{spec.dir}` is left as it was.')
    res = {role: results[r.name] for role, r in runs.items()}
    dt = delta_t(res['distilled']['lidar']['mean'], res['baseline']['lidar']['mean'])
    per_seed = paired_delta_t(planned, results, spec.distilled, spec.baseline)
    paired = list(per_seed.values())
    pair_gain = float(np.mean(paired)) if paired else None
    if spec.require_pair_gain and (pair_gain is None or pair_gain <= 0):
        return (f'Shipped models: none, because `{spec.distilled}` does not beat `{spec.baseline}` (paired Δ_T '
                f'{"n/a" if pair_gain is None else f"{pair_gain:+.2f} %"} over {len(paired)} seed(s); '
                f'ship.require_pair_gain); `{spec.dir}` is left as it was.')
    first = next(iter(res.values()))['dataset']
    evaluation = {'split': exp.evaluation.split, 'samples': first['samples'], 'image_size': first['image_size'],
                  'overrides': list(exp.evaluation.overrides)}
    try:
        pair = ship_pair(spec, {role: r.out_dir for role, r in runs.items()}, res, command=command,
                         experiment_config=to_mapping(exp), evaluation=evaluation, delta_t=dt,
                         paired_delta_t={k: v for k, v in per_seed.items() if k is not None})
    except ShippingError as exc:
        raise ExperimentError(f'ship: {exc}') from None
    size = sum(m.path.stat().st_size for m in (pair.baseline, pair.distilled)) / 1e6
    return (f'Shipped models: `{runs["baseline"].name}` and `{runs["distilled"].name}` in `{spec.dir}` '
            f'({spec.dtype}, {size:.1f} MB together; Δ_T {dt:+.2f} % on the {exp.evaluation.split} split); '
            f'`make demo` deploys them.')


def write_report(exp: ExperimentConfig, exp_path: str, planned: list[PlannedRun], results: dict[str, dict],
                 command: str, shipped: str | None = None) -> dict[str, Any]:
    """Write ``exp.report`` (Markdown) and its JSON twin; returns the JSON object."""
    rows = summarise(exp, planned, results)
    report = Path(exp.report)
    report.parent.mkdir(parents=True, exist_ok=True)
    picture = _picture(exp, planned, report.with_name(report.stem + '_predictions.png'))
    ver = verdict(exp, rows, results, planned)
    teacher_rows = [r for r in rows.values() if r['table'] == 'teacher']
    ev = exp.evaluation
    any_result = next(iter(results.values()))
    ds = any_result['dataset']
    out = [f'# {exp.name}: results', '',
           f'Generated by `{command}` (seeds {exp.seeds}; experiment config `{exp_path}`, copied at the end). '
           f'Every number below is the evaluation command\'s (`surround_depth_train.evaluate.run_evaluation`) on '
           f'the **{ev.split}** split of the students\' world: {ds["samples"]} camera sets of six images at '
           f'{ds["image_size"][0]} x {ds["image_size"][1]}, LiDAR ground truth, depth range '
           f'{ds["min_depth"]:g}-{ds["max_depth"]:g} m, no median scaling. Mean ± standard deviation over seeds; '
           f'Δ_T (%) against `{exp.compare.baseline}` of the same seed (paired), then mean ± std.', '']
    if exp.description:
        out += ['## Design', '', exp.description.strip(), '']
    if exp.analysis:
        out += [f'The analysis of these numbers is in [{Path(exp.analysis).name}]({Path(exp.analysis).name}).', '']
    out += ['## Verdict (computed from the tables below)', '']
    if 'distilled_delta_t' in ver:
        dt = ver['distilled_delta_t']
        out.append(f'- `{exp.compare.distilled}` vs `{exp.compare.baseline}`: Δ_T = '
                   f'{_fmt(dt["mean"], dt["std"] if ver["distilled_seeds"] > 1 else None, 2, sign=True)} % over '
                   f'{ver["distilled_seeds"]} paired seed(s); the paper\'s direction '
                   f'(≥ +{exp.compare.target_delta_t:g} %, beyond one std, ≥ 2 seeds) '
                   f'**{"holds" if ver["direction_holds"] else "does not hold"}** here.')
    else:
        out.append(f'- `{exp.compare.distilled}` or `{exp.compare.baseline}` has not finished: no verdict yet.')
    if 'distilled_vs_same_head' in ver:
        d = ver['distilled_vs_same_head']
        out.append(f'- `{exp.compare.distilled}` vs `{exp.compare.same_head}` (the same student without '
                   f'distillation): Δ_T = {_fmt(d["mean"], d["std"] if d["seeds"] > 1 else None, 2, sign=True)} % '
                   f'over {d["seeds"]} paired seed(s).')
    if 'ckd_vrkd_at_least_ckd' in ver:
        out.append(f'- CKD + VRKD {"is" if ver["ckd_vrkd_at_least_ckd"] else "is not"} at least as good as CKD '
                   f'alone (mean Δ_T).')
    if shipped:
        out.append(f'- {shipped}')
    out.append('')
    if teacher_rows:
        base = rows.get(exp.compare.baseline)
        out += ['## The teacher (Table I, first rows)', '',
                'The teacher evaluated on the students\' test split, zero-shot (pre-trained in the other world) '
                'and after fine-tuning on the students\' LiDAR; the plain student for comparison. Δ_T against '
                'the plain student (mean of its seeds).', '',
                _table(teacher_rows + ([base] if base else []), with_std=True), '']
        structure = [r for r in teacher_rows + [rows.get(n) for n in (exp.compare.baseline, exp.compare.same_head,
                                                                       exp.compare.distilled)]
                     if r is not None and r.get('median_scaled')]
        if structure:
            out += ['Structure alone (each image median-scaled to the LiDAR first, Monodepth2\'s protocol): what a '
                    'teacher can pass on through scale-invariant probabilities even where its metric scale is off.',
                    '', '| run | seeds | AbsRel (median-scaled) | δ<1.25 (median-scaled) |', '|---|---:|---:|---:|']
            for r in structure:
                ms = r['median_scaled']
                cells = [_fmt(ms[k]['mean'], ms[k]['std'] if len(r['seeds']) > 1 else None) for k in ('abs_rel', 'a1')]
                out.append(f'| {r["label"]} | {len(r["seeds"])} | {cells[0]} | {cells[1]} |')
            out.append('')
        extra = [(r['label'], k, v) for r in teacher_rows for k, v in r['extra'].items() if v]
        if extra:
            out += ['Further evaluations of the teacher:', '', '| run | evaluation | AbsRel | RMSE | δ<1.25 |',
                    '|---|---|---:|---:|---:|']
            out += [f'| {lab} | {k} | {v["abs_rel"]:.3f} | {v["rmse"]:.3f} | {v["a1"]:.3f} |' for lab, k, v in extra]
            out.append('')
    for table, title in exp.tables.items():
        trs = [r for r in rows.values() if r['table'] == table]
        if not trs:
            continue
        base = rows.get(exp.compare.baseline)
        if table != 'V' and base is not None and base not in trs:
            trs = [base] + trs
        if trs:
            out += [f'## {title}', '', _table(trs, with_std=True), '']
    cons_rows = [rows[n] for n in exp.compare.consistency if n in rows and rows[n]['consistency_rig'] is not None]
    if cons_rows:
        ref = next((r['consistency_dense_reference'] for r in cons_rows if r['consistency_dense_reference']), None)
        out += ['## Cross-view consistency', '',
                'Rig median of `|z - d| / d` between adjacent cameras at corresponding pixels (lower = more '
                'consistent), mean ± std over seeds' + (f'; the dense ground truth gives {ref:.2g}.' if ref else '.'),
                '', '| run | seeds | rig median |', '|---|---:|---:|']
        for r in cons_rows:
            rig = r['consistency_rig']
            out.append(f'| {r["label"]} | {len(r["seeds"])} | '
                       f'{_fmt(rig["mean"], rig["std"] if len(r["seeds"]) > 1 else None, 4)} |')
        out.append('')
    losses = loss_scales(planned, results)
    if losses:
        terms = sorted({t for v in losses.values() for t in v})
        out += ['## Loss terms during training', '',
                'Mean of each logged term (unweighted) over the last quarter of the steps, first seed; shows the '
                'scales the weights multiply.', '', '| run | ' + ' | '.join(terms) + ' |',
                '|---|' + '---:|' * len(terms)]
        out += [f'| {name} | ' + ' | '.join(f'{v[t]:.4g}' if t in v else '-' for t in terms) + ' |'
                for name, v in losses.items()]
        out.append('')
    if picture:
        out += ['## Predictions side by side', '',
                f'{ev.split} sample {exp.picture.sample}: images, dense ground truth, then one row per model '
                f'(first seed).', '', f'![predictions]({picture})', '']
    out += ['## Wall time per run', '', '| run | train (s) | evaluation (s) |', '|---|---:|---:|']
    for run in planned:
        if run.name in results:
            t = _times(run)
            out.append(f'| {run.name} | {t.get("train_s", 0):.0f} | {t.get("eval_s", 0):.0f} |')
    out += ['', '## Experiment config', '', '```yaml', yaml.safe_dump(to_mapping(exp), sort_keys=False).rstrip(),
            '```', '']
    obj = {'command': command, 'shipped': shipped, 'config': to_mapping(exp), 'seeds': exp.seeds, 'split': ev.split,
           'dataset': ds, 'rows': rows, 'verdict': ver, 'loss_scales': losses, 'picture': picture,
           'runs': {r.name: {'seed': r.seed, 'overrides': r.overrides, 'times': _times(r)} for r in planned
                    if r.name in results}}
    with atomic_write(report, 'w') as f:
        f.write('\n'.join(out))
    with atomic_write(report.with_suffix('.json'), 'w') as f:
        json.dump(obj, f, indent=2)
    return obj


def loss_scales(planned: list[PlannedRun], results: dict[str, dict]) -> dict[str, dict[str, float]]:
    """Mean of each ``train/<term>`` TensorBoard scalar over the last quarter of steps, first seed of each spec."""
    try:
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    except ImportError:
        return {}
    from surround_depth_train.losses import DistillationWeights

    terms = ['loss'] + [name for name, _ in DistillationWeights().items()]
    out: dict[str, dict[str, float]] = {}
    for run in planned:
        if run.name not in results or run.spec.name in out or run.seed_index != 0 or not (run.out_dir / 'tb').is_dir():
            continue
        acc = EventAccumulator(str(run.out_dir / 'tb'), size_guidance={'scalars': 0})
        acc.Reload()
        tags = set(acc.Tags().get('scalars', []))
        vals = {}
        for t in terms:
            if f'train/{t}' in tags:
                events = acc.Scalars(f'train/{t}')
                tail = events[len(events) * 3 // 4:] or events
                vals[t] = float(np.mean([e.value for e in tail]))
        if vals:
            out[run.spec.name] = vals
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog='python -m surround_depth_train.experiment', description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('config', type=Path, help='experiment YAML (config/experiments/*.yaml)')
    parser.add_argument('--only', nargs='+', default=(), metavar='NAME',
                        help='train only these runs (spec names or <name>_s<seed>); the report covers every '
                             'finished run')
    parser.add_argument('--out-dir', help='the experiment\'s run folder (default: the YAML\'s out_dir)')
    parser.add_argument('--report', help='the report\'s Markdown path (default: the YAML\'s report)')
    parser.add_argument('--dry-run', action='store_true', help='print the plan (runs, status, overrides) and stop')
    parser.add_argument('--report-only', action='store_true', help='write the report from the finished runs only')
    parser.add_argument('--debug', action='store_true', help='show the traceback of an error')
    args = parser.parse_args(argv)
    command = 'python -m surround_depth_train.experiment ' + shlex.join(
        [str(args.config)] + (['--out-dir', args.out_dir] if args.out_dir else []) +
        (['--report', args.report] if args.report else []))
    try:
        exp = load_experiment(args.config, args.out_dir, args.report)
        planned = plan_runs(exp)
        unknown = [n for n in args.only if not any(n in (r.spec.name, r.name) for r in planned)]
        if unknown:
            raise ConfigError(f'--only {unknown}: no such run; the runs are {[r.name for r in planned]}')
        if args.dry_run:
            for run in planned:
                print(f'{run.name}: {run_status(run, resolve_config(run))}; {run.spec.config} '
                      f'{shlex.join(run.overrides)}')
            return 0

        def report() -> None:  # after every run, so an interrupted experiment leaves the tables it has
            results = collect(exp, planned)
            if results:
                write_report(exp, str(args.config), planned, results, command, ship(exp, planned, results, command))

        if not args.report_only:
            execute(exp, planned, args.only, after_run=report)
        report()
    except (ConfigError, ExperimentError) as exc:
        if args.debug:
            raise
        print(f'error: {exc}', file=sys.stderr)
        return 2
    print(f'[experiment] report in {exp.report} (+ {Path(exp.report).with_suffix(".json").name})')
    return 0


if __name__ == '__main__':
    sys.exit(main())
