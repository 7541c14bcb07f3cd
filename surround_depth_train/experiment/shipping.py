"""The shipped pair: which seed ships (fixed, or chosen on validation) and the conditions for writing it."""
from __future__ import annotations

import dataclasses

import numpy as np

from surround_depth_train.config import ConfigError, to_mapping
from surround_depth_train.experiment.config import ExperimentConfig, ExperimentError, PlannedRun
from surround_depth_train.experiment.runs import read_json
from surround_depth_train.experiment.statistics import paired_delta_t, summarise, verdict
from surround_depth_train.metrics import delta_t
from surround_depth_train.shipped import ShippingError, ship_pair

__all__ = ['seed_by_validation', 'ship']


def seed_by_validation(planned: list[PlannedRun], results: dict[str, dict], spec_name: str) -> int | None:
    """The seed whose ``spec_name`` run has the lowest validation AbsRel (its training's last validation), or None
    while any of its seeds has not finished. The test split plays no part in the choice."""
    best = None
    for run in planned:
        if run.spec.name != spec_name:
            continue
        val = (read_json(run.out_dir / 'result.json') or {}).get('val') if run.name in results else None
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
