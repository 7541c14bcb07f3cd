"""The experiment's shipped students: a baseline and a distilled student as compact (float16) model files.

The experiment command (``ExperimentConfig.ship``) writes them once its verdict says the paper's direction holds:
both or neither, at most ``max_total_mb`` together, next to a manifest (``models.json``) and a ``README.md`` that
give the command, the experiment config, each run's training config, its seed and its test metrics. ``make demo``
reads the manifest (:func:`read_shipped`) and deploys the two files, evaluating them in its own run.

Layout of the folder::

    baseline.pt, distilled.pt     model files (surround_depth_train.models.modelfile), weights in float16
    baseline.yaml, distilled.yaml the training configs of the two runs
    models.json                   the manifest (below); written last, so a folder without it ships nothing
    README.md                     the same, for people
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Mapping

import torch

from surround_depth_train.atomic import atomic_write
from surround_depth_train.resources import resource_path

__all__ = ['ShipSpec', 'ShippedModel', 'ShippedPair', 'ShippingError', 'ship_pair', 'read_shipped',
           'DEFAULT_SHIPPED_DIR', 'ROLES']

ROLES = ('baseline', 'distilled')
MANIFEST = 'models.json'
MANIFEST_FORMAT = 'surround_depth_shipped_models'
#: Where ``config/experiments/surroundsim.yaml`` ships its pair (relative to the repository root).
DEFAULT_SHIPPED_DIR = resource_path('docs/results/surroundsim_models')  # the checkout's, else the install's


@dataclass
class ShipSpec:
    """``ship:`` of an experiment YAML: which two runs become the shipped pair (no ``dir``: nothing is shipped)."""

    dir: str | None = None
    baseline: str = ''                   # run spec names (seeded runs: the run of ``seed``)
    distilled: str = ''
    seed: int = 0                        # the seed shipped when seed_by is fixed
    seed_by: Literal['fixed', 'validation'] = 'fixed'  # validation: the seed whose distilled run has the lowest
                                         # validation AbsRel, once every seed of it has finished (never the test)
    dtype: str = 'float16'
    max_total_mb: float = 30.0
    require_direction: bool = True       # ship only when the experiment's verdict says the direction holds
    require_pair_gain: bool = True       # ... and the shipped distilled student beats its own baseline (mean paired
                                         # Delta_T over the seeds both runs have)


class ShippingError(RuntimeError):
    """The pair cannot be shipped as asked; the message says why and what to change."""


@dataclass(frozen=True)
class ShippedModel:
    role: str
    path: Path
    run: str
    seed: int | None
    model: str
    parameters: int
    test_metrics: dict[str, float]
    sha256: str


@dataclass(frozen=True)
class ShippedPair:
    folder: Path
    manifest: dict[str, Any]
    baseline: ShippedModel
    distilled: ShippedModel


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(1 << 20), b''):
            h.update(block)
    return h.hexdigest()


def ship_pair(spec: ShipSpec, runs: Mapping[str, Path], results: Mapping[str, Mapping[str, Any]], *,
              command: str, experiment_config: Mapping[str, Any], evaluation: Mapping[str, Any],
              delta_t: float | None, paired_delta_t: Mapping[int, float] | None = None) -> ShippedPair:
    """Write the pair into ``spec.dir`` (both or neither) and return it as :func:`read_shipped` would.

    Args:
        runs: role -> the run folder (``model.pt``, ``config.yaml``).
        results: role -> the run's evaluation result (``results.json`` of the experiment's evaluation).
        delta_t: Delta_T (%) of the distilled student against the baseline of the same seed.
        paired_delta_t: the same per seed of the two runs (seed -> %), when they were trained on several.

    Raises:
        ShippingError: a run has no model file, or the two files together exceed ``spec.max_total_mb``.
    """
    from surround_depth_train.models.modelfile import write_compact_copy

    if spec.dir is None:
        raise ShippingError('ship.dir is not set: say where the shipped models go')
    dtype = getattr(torch, spec.dtype, None)
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise ShippingError(f'ship.dtype {spec.dtype!r} is not a floating-point torch dtype (e.g. float16)')
    folder = Path(spec.dir)
    missing = [str(runs[r] / 'model.pt') for r in ROLES if not (runs[r] / 'model.pt').is_file()]
    if missing:
        raise ShippingError(f'no model file at {missing}: finish those runs first')
    staging = folder.with_name(folder.name + '.partial')
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        entries = {}
        for role in ROLES:
            dst = write_compact_copy(runs[role] / 'model.pt', staging / f'{role}.pt', dtype)
            shutil.copyfile(runs[role] / 'config.yaml', staging / f'{role}.yaml')
            res = results[role]
            entries[role] = {
                'file': dst.name, 'config': f'{role}.yaml', 'run': runs[role].name, 'seed': spec.seed,
                'model': res['model']['name'], 'parameters': int(res['model']['parameters']),
                'bytes': dst.stat().st_size, 'sha256': _sha256(dst),
                'test_metrics': {k: float(v) for k, v in res['lidar']['mean'].items()},
            }
        total_mb = sum(e['bytes'] for e in entries.values()) / 1e6
        if total_mb > spec.max_total_mb:
            raise ShippingError(f'the two {spec.dtype} model files take {total_mb:.1f} MB together, over '
                                f'ship.max_total_mb = {spec.max_total_mb:g}: ship smaller students (ship.baseline / '
                                f'ship.distilled) or raise the limit')
        manifest = {'format': MANIFEST_FORMAT, 'command': command, 'dtype': spec.dtype,
                    'evaluation': dict(evaluation), 'distilled_delta_t_vs_baseline': delta_t,
                    'paired_delta_t_per_seed': {str(k): float(v) for k, v in (paired_delta_t or {}).items()},
                    'experiment_config': dict(experiment_config), **entries}
        (staging / 'README.md').write_text(_readme(manifest))
        with atomic_write(staging / MANIFEST, 'w') as f:
            json.dump(manifest, f, indent=2)
        old = folder.with_name(folder.name + '.old')
        shutil.rmtree(old, ignore_errors=True)
        if folder.exists():
            os.replace(folder, old)
        os.replace(staging, folder)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    pair = read_shipped(folder)
    assert pair is not None
    return pair


def _readme(m: Mapping[str, Any]) -> str:
    rows = []
    for role in ROLES:
        e, t = m[role], m[role]['test_metrics']
        rows.append(f'| {role} | `{e["file"]}` | {e["model"]} | {e["parameters"] / 1e6:.2f} M | {e["run"]} | '
                    f'{e["seed"]} | {t["abs_rel"]:.3f} | {t["rmse"]:.3f} | {t["a1"]:.3f} | '
                    f'{e["bytes"] / 1e6:.1f} MB |')
    ev = m['evaluation']
    dt = m['distilled_delta_t_vs_baseline']
    per_seed = m.get('paired_delta_t_per_seed') or {}
    seeds = ''
    if len(per_seed) > 1:
        values = list(per_seed.values())
        seeds = (f' Over the {len(values)} paired seeds of the experiment: {sum(values) / len(values):+.2f} % on '
                 f'average (' + ', '.join(f'seed {k}: {v:+.2f} %' for k, v in per_seed.items()) + ').')
    return '\n'.join([
        '# Shipped students of the SurroundSim experiment', '',
        f'Written by `{m["command"]}` (do not edit by hand: rerunning the command rewrites this folder). Weights are '
        f'stored in {m["dtype"]} and load as float32 (`surround_depth_train.models.load_model`); the training config '
        f'of each run is next to it.', '',
        f'Test metrics: the experiment\'s evaluation on the **{ev.get("split")}** split ({ev.get("samples")} camera '
        f'sets, {ev.get("image_size")}, LiDAR ground truth), computed with the float32 weights before the copy.', '',
        '| role | file | model | params | run | seed | AbsRel | RMSE | δ<1.25 | size |',
        '|---|---|---|---:|---|---:|---:|---:|---:|---:|', *rows, '',
        (f'Δ_T of the distilled student against the baseline: {dt:+.2f} % (this seed).{seeds}'
         if dt is not None else ''), '',
        '`make demo` deploys these two files and evaluates them in its own run.', ''])


def read_shipped(folder: str | os.PathLike | None = None) -> ShippedPair | None:
    """The shipped pair in ``folder`` (default :data:`DEFAULT_SHIPPED_DIR`), or None when nothing is shipped.

    Raises:
        ShippingError: the manifest exists but the folder is damaged (a file missing or changed).
    """
    folder = Path(folder) if folder is not None else DEFAULT_SHIPPED_DIR
    path = folder / MANIFEST
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ShippingError(f'{path} is not valid JSON ({exc}); rerun the experiment command to rewrite it') from None
    if manifest.get('format') != MANIFEST_FORMAT:
        raise ShippingError(f'{path} is not a shipped-models manifest (format {manifest.get("format")!r})')
    models = {}
    for role in ROLES:
        e = manifest[role]
        file = folder / e['file']
        if not file.is_file() or _sha256(file) != e['sha256']:
            raise ShippingError(f'{file} is missing or differs from the manifest (sha256); restore it with git or '
                                f'rerun the experiment command')
        models[role] = ShippedModel(role=role, path=file, run=e['run'], seed=e['seed'], model=e['model'],
                                    parameters=e['parameters'], test_metrics=e['test_metrics'], sha256=e['sha256'])
    return ShippedPair(folder=folder, manifest=manifest, **models)
