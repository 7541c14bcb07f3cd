"""The numbers of an experiment: per run spec the metrics over seeds, paired Delta_T, the verdict of the paper's
direction, the pre-registered decision rule (a bootstrap over seeds and scenes), loss scales and validation curves."""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from surround_depth_train.experiment.config import ExperimentConfig, PlannedRun
from surround_depth_train.experiment.runs import read_json, run_times
from surround_depth_train.metrics import METRIC_NAMES, delta_t

__all__ = ['mean_std', 'summarise', 'paired_delta_t', 'verdict', 'loss_scales', 'scene_table', 'decide',
           'validation_curves', 'flattened']


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    arr = np.asarray(values, np.float64)
    return float(arr.mean()), float(arr.std(ddof=1)) if len(arr) > 1 else 0.0


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
        metrics = {k: mean_std([m[k] for _, m in ok]) for k in METRIC_NAMES} if ok else None
        dts = [delta_t(m, base_by_seed[r.seed]) for r, m in ok if r.seed in base_by_seed] \
            if name != exp.compare.baseline else []
        if runs[0].seed is not None:
            dt = mean_std(dts) if dts else None
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
            'consistency_rig': None if not cons else dict(zip(('mean', 'std'), mean_std(cons))),
            'consistency_dense_reference': next(((results[r.name].get('consistency') or {}).get('dense_reference')
                                                 for r in runs), None),
            'dense_abs_rel': None if not dense else dict(zip(('mean', 'std'), mean_std([d['abs_rel']
                                                                                         for d in dense]))),
            'median_scaled': None if not structure else {
                k: dict(zip(('mean', 'std'), mean_std([m[k] for m in structure]))) for k in ('abs_rel', 'a1')},
            'extra': {suffix: v['lidar']['mean'] for suffix, v in (results[runs[0].name].get('extra') or {}).items()},
            'times': {r.name: run_times(r) for r in runs},
        }
    return rows


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
            out['distilled_vs_same_head'] = dict(zip(('mean', 'std'), mean_std(pairs)), seeds=len(pairs))
    if full is not None and full['delta_t'] is not None:
        dt = full['delta_t']
        out['distilled_delta_t'] = dt
        out['distilled_seeds'] = len(full['delta_t_per_seed'])
        out['direction_holds'] = bool(len(full['delta_t_per_seed']) >= 2 and dt['mean'] >= c.target_delta_t
                                      and dt['mean'] - dt['std'] > 0)
    if full is not None and ckd is not None and full['delta_t'] and ckd['delta_t']:
        out['ckd_vrkd_at_least_ckd'] = bool(full['delta_t']['mean'] >= ckd['delta_t']['mean'])
    return out


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


def _delta_t_array(result: np.ndarray, baseline: np.ndarray) -> np.ndarray:
    """:func:`~surround_depth_train.metrics.delta_t` over the last axis (the seven metrics) of broadcast arrays."""
    from surround_depth_train.metrics import LOWER_IS_BETTER

    sign = np.array([-1.0 if LOWER_IS_BETTER[k] else 1.0 for k in METRIC_NAMES])
    with np.errstate(divide='ignore', invalid='ignore'):
        rel = sign * (result - baseline) / baseline
    rel = np.where(baseline == 0, np.nan, rel)
    return 100.0 * np.nanmean(rel, axis=-1)


def scene_table(planned: list[PlannedRun], results: dict[str, dict], spec_name: str
                ) -> dict[int | None, dict[str, np.ndarray]]:
    """Per seed of ``spec_name``: scene -> the seven LiDAR metrics (evaluation's ``per_scene``)."""
    out = {}
    for run in planned:
        if run.spec.name == spec_name and run.name in results:
            per_scene = results[run.name]['lidar'].get('per_scene') or {}
            out[run.seed] = {s: np.array([m[k] for k in METRIC_NAMES], np.float64)
                             for s, m in per_scene.items() if m is not None}
    return out


def decide(exp: ExperimentConfig, planned: list[PlannedRun], results: dict[str, dict]) -> dict[str, Any] | None:
    """The pre-registered decision rule (:class:`~surround_depth_train.experiment.config.DecisionSpec`).

    ``d`` is the mean over seed pairs of Delta_T (%) of the distilled run against the reference run of the same seed,
    each from the metrics averaged over the scenes both evaluations have. The interval resamples seed pairs and
    scenes with replacement (the same scenes for both arms and every seed of a replicate) and takes percentiles of
    the replicates' ``d``. Returns None when the experiment has no decision rule or no finished pair.
    """
    spec = exp.decision
    if not spec.distilled:
        return None
    dist, ref = scene_table(planned, results, spec.distilled), scene_table(planned, results, spec.reference)
    seeds = sorted(s for s in dist if s in ref)
    if not seeds:
        return None
    scenes = sorted(set.intersection(*[set(dist[s]) & set(ref[s]) for s in seeds]))
    if not scenes:
        return None
    D = np.stack([np.stack([dist[s][c] for c in scenes]) for s in seeds])   # [seeds, scenes, metrics]
    R = np.stack([np.stack([ref[s][c] for c in scenes]) for s in seeds])
    per_seed = _delta_t_array(D.mean(1), R.mean(1))                          # [seeds]
    d = float(per_seed.mean())
    rng = np.random.default_rng(spec.bootstrap_seed)
    n_s, n_c = len(seeds), len(scenes)
    reps = np.empty(spec.resamples)
    chunk = 1000
    for start in range(0, spec.resamples, chunk):
        b = min(chunk, spec.resamples - start)
        w = rng.multinomial(n_c, np.full(n_c, 1.0 / n_c), size=b) / n_c      # [b, scenes] scene weights
        pick = rng.integers(0, n_s, size=(b, n_s))                           # [b, n_s] seed pairs drawn
        dm = np.einsum('bc,scm->bsm', w, D)
        rm = np.einsum('bc,scm->bsm', w, R)
        dt = _delta_t_array(dm, rm)                                          # [b, seeds]
        reps[start:start + b] = np.take_along_axis(dt, pick, axis=1).mean(1)
    alpha = (1.0 - spec.confidence) / 2.0
    lo, hi = (float(v) for v in np.quantile(reps, [alpha, 1.0 - alpha]))
    if d >= spec.effect and lo > 0:
        verdict_ = 'effect shown'
    elif hi < spec.effect:
        verdict_ = 'ruled out'
    else:
        verdict_ = 'inconclusive'
    planned_pairs = spec.planned_seeds or len(exp.seeds)
    per_scene = _delta_t_array(D, R).mean(0)                                 # [scenes], mean over seeds
    return {'distilled': spec.distilled, 'reference': spec.reference, 'd': d, 'interval': [lo, hi],
            'confidence': spec.confidence, 'effect': spec.effect, 'verdict': verdict_, 'pairs': n_s,
            'planned_pairs': planned_pairs, 'final': n_s >= planned_pairs, 'scenes': n_c,
            'resamples': spec.resamples, 'bootstrap_seed': spec.bootstrap_seed,
            'per_seed': {str(s): float(v) for s, v in zip(seeds, per_seed)},
            'per_scene': {c: float(v) for c, v in zip(scenes, per_scene)},
            'seed_sd': float(per_seed.std(ddof=1)) if n_s > 1 else None}


def validation_curves(planned: list[PlannedRun]) -> dict[str, list[tuple[int, float]]]:
    """Run name -> ``[(step, validation AbsRel), ...]`` from each run's ``val_history.json``."""
    curves = {}
    for run in planned:
        history = read_json(run.out_dir / 'val_history.json')
        if isinstance(history, list) and history:
            curves[run.name] = [(int(h['step']), float(h['mean']['abs_rel'])) for h in history
                                if isinstance(h, dict) and h.get('mean')]
    return curves


def flattened(curve: Sequence[tuple[int, float]], tolerance: float = 0.02) -> bool | None:
    """Whether the last two validations differ by less than ``tolerance`` (relative); None with fewer than two."""
    if len(curve) < 2:
        return None
    (_, a), (_, b) = curve[-2], curve[-1]
    return bool(abs(b - a) / max(a, 1e-12) < tolerance)
