"""The experiment YAML (:class:`ExperimentConfig`) and its plan: every run, seeded ones once per seed, in execution
order, with ``{run:NAME}`` references resolved."""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from surround_depth_train.config import ConfigError, load_config
from surround_depth_train.shipped import ShipSpec
from surround_depth_train.training.config import TrainConfig

__all__ = ['RunSpec', 'EvaluationSpec', 'CompareSpec', 'GateSpec', 'DecisionSpec', 'PictureSpec', 'ExperimentConfig',
           'PlannedRun', 'ExperimentError', 'load_experiment', 'plan_runs', 'resolve_config']


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
