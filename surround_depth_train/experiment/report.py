"""The experiment's report: Markdown tables, the predictions picture, the validation curves and a JSON twin."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from surround_depth_train.atomic import atomic_write
from surround_depth_train.config import load_config, to_mapping
from surround_depth_train.experiment.config import ExperimentConfig, PlannedRun
from surround_depth_train.experiment.runs import read_json, run_times
from surround_depth_train.experiment.statistics import (decide, flattened, loss_scales, summarise,
                                                          validation_curves, verdict)
from surround_depth_train.metrics import METRIC_NAMES
from surround_depth_train.training.config import TrainConfig

__all__ = ['write_report']


def _fmt(mean: float, std: float | None, digits: int = 3, sign: bool = False) -> str:
    text = f'{mean:+.{digits}f}' if sign else f'{mean:.{digits}f}'
    return text if std is None else f'{text} ± {std:.{digits}f}'


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


def _picture(exp: ExperimentConfig, planned: list[PlannedRun], path: Path) -> str | None:
    """Predictions of the picture runs on one evaluation sample, one row each, under images and dense GT."""
    import torch

    from surround_depth_train.models.modelfile import load_model
    from surround_depth_train.training.builders import build_dataset
    from surround_depth_train.visualize import colorize_depth, depth_colour_bar, label, mosaic, save_png

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
    grid = mosaic(rows)
    bar = depth_colour_bar(grid.shape[1], lo, hi)
    save_png(path, np.vstack([grid, np.full((4, grid.shape[1], 3), 255, np.uint8), bar]))
    return path.name


def _curves_picture(exp: ExperimentConfig, curves: dict[str, list[tuple[int, float]]], path: Path) -> str | None:
    """Validation AbsRel against the training step of every run that recorded it, one line per run."""
    if not curves:
        return None
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    for name, curve in curves.items():
        steps, values = zip(*curve)
        ax.plot(steps, values, marker='o', markersize=2, linewidth=1, label=name)
    ax.set_xlabel('training step')
    ax.set_ylabel('validation AbsRel (training LiDAR)')
    ax.set_title('validation curves')
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6, ncol=3)
    fig.tight_layout()
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format='png')
    plt.close(fig)
    with atomic_write(path, 'wb') as f:
        f.write(buf.getvalue())
    return path.name


def _decision_lines(exp: ExperimentConfig, decision: dict[str, Any] | None) -> list[str]:
    if not exp.decision.distilled:
        return []
    spec = exp.decision
    head = ['## Decision (pre-registered rule)', '']
    if decision is None:
        return head + [f'`{spec.distilled}` and `{spec.reference}` have no finished pair yet: no decision.', '']
    lo, hi = decision['interval']
    status = ('final' if decision['final'] else
              f'NOT final: {decision["pairs"]} of {decision["planned_pairs"]} planned pairs have finished')
    lines = head + [
        f'd = mean paired Δ_T of `{spec.distilled}` against `{spec.reference}` = **{decision["d"]:+.2f} %** over '
        f'{decision["pairs"]} seed pair(s) and {decision["scenes"]} test scenes; {spec.confidence:.0%} bootstrap '
        f'interval over seeds and scenes [{lo:+.2f}, {hi:+.2f}] % ({spec.resamples} resamples). Rule: "effect shown" '
        f'if d ≥ +{spec.effect:g} % and the lower end > 0; "ruled out" if the upper end < +{spec.effect:g} %; '
        f'otherwise inconclusive.', '',
        f'**Verdict: {decision["verdict"]}** ({status}).', '',
        '| seed | Δ_T (%) |', '|---:|---:|']
    lines += [f'| {seed} | {v:+.2f} |' for seed, v in decision['per_seed'].items()]
    per_scene = np.array(list(decision['per_scene'].values()))
    lines += ['', f'Per scene (mean over seeds): Δ_T from {per_scene.min():+.1f} to {per_scene.max():+.1f} %, median '
              f'{np.median(per_scene):+.1f} %; seed SD '
              + ('-' if decision['seed_sd'] is None else f'{decision["seed_sd"]:.2f}') + ' points. Every per-seed '
              'and per-scene value is in the JSON twin of this report.', '']
    return lines


def _gate_lines(exp: ExperimentConfig, gate: dict[str, Any] | None) -> list[str]:
    if not exp.gate.teacher:
        return []
    lines = ['## The gate: is the teacher better than the students?', '']
    if not gate or gate.get('ratio') is None:
        return lines + ['Not checked yet (the teacher and the reference student must finish first).', '']
    t, r = gate['teacher'], gate['reference']
    return lines + [
        f'On the {gate["split"]} split ({t["samples"]} camera sets, full LiDAR): teacher `{t["run"]}` AbsRel '
        f'{t["abs_rel"]:.4f} (δ<1.25 {t["a1"]:.3f}), reference `{r["run"]}` {r["abs_rel"]:.4f} (δ<1.25 '
        f'{r["a1"]:.3f}); ratio **{gate["ratio"]:.3f}** against at most {gate["max_ratio"]:g}: '
        f'**{"passed" if gate["passed"] else "premise not met"}**.', '']


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
    decision = decide(exp, planned, results)
    gate = read_json(Path(exp.out_dir) / 'gate.json') if exp.gate.teacher else None
    curves = validation_curves(planned)
    curves_png = _curves_picture(exp, curves, report.with_name(report.stem + '_curves.png'))
    out += _decision_lines(exp, decision)
    out += _gate_lines(exp, gate)
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
                'The teacher evaluated on the students\' test split (the experiment\'s design says what it learnt '
                f'from); `{exp.compare.baseline}` for comparison. Δ_T against `{exp.compare.baseline}` (mean of its '
                'seeds).', '',
                _table(teacher_rows + ([base] if base else []), with_std=True), '']
        # baseline and same_head are often one run (the distillation experiment's `mb`): listed once
        names = dict.fromkeys((exp.compare.baseline, exp.compare.same_head, exp.compare.distilled))
        structure = [r for r in teacher_rows + [rows.get(n) for n in names] if r is not None and r.get('median_scaled')]
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
    if curves_png:
        ref = next((r for r in planned if r.spec.name == exp.decision.reference or r.spec.name == exp.compare.baseline),
                   None)
        flat = flattened(curves.get(ref.name, [])) if ref is not None else None
        out += ['## Validation curves', '',
                'Validation AbsRel (each run\'s own validation split and LiDAR) after every epoch.'
                + ('' if flat is None or ref is None else
                   f' `{ref.name}` has {"flattened" if flat else "NOT flattened"}: its last two validations differ '
                   f'by {abs(curves[ref.name][-1][1] - curves[ref.name][-2][1]) / curves[ref.name][-2][1] * 100:.1f} % '
                   f'(flattened: < 2 %).'), '', f'![validation curves]({curves_png})', '']
    if picture:
        out += ['## Predictions side by side', '',
                f'{ev.split} sample {exp.picture.sample}: images, dense ground truth, then one row per model '
                f'(first seed); the colour bar under it gives depth in metres.', '', f'![predictions]({picture})', '']
    out += ['## Wall time per run', '', '| run | train (s) | evaluation (s) | training peak RSS (GB) |',
            '|---|---:|---:|---:|']
    for run in planned:
        if run.name in results:
            t = run_times(run)
            rss = f'{t["train_peak_rss_gb"]:.2f}' if 'train_peak_rss_gb' in t else 'n/a'
            out.append(f'| {run.name} | {t.get("train_s", 0):.0f} | {t.get("eval_s", 0):.0f} | {rss} |')
    out += ['', '## Experiment config', '', '```yaml', yaml.safe_dump(to_mapping(exp), sort_keys=False).rstrip(),
            '```', '']
    obj = {'command': command, 'shipped': shipped, 'decision': decision, 'gate': gate,
           'validation_curves': {k: [list(p) for p in v] for k, v in curves.items()},
           'per_seed': {r.name: results[r.name]['lidar']['mean'] for r in planned if r.name in results},
           'per_scene': {r.name: results[r.name]['lidar'].get('per_scene') for r in planned if r.name in results}, 'config': to_mapping(exp), 'seeds': exp.seeds, 'split': ev.split,
           'dataset': ds, 'rows': rows, 'verdict': ver, 'loss_scales': losses, 'picture': picture,
           'runs': {r.name: {'seed': r.seed, 'overrides': r.overrides, 'times': run_times(r)} for r in planned
                    if r.name in results}}
    with atomic_write(report, 'w') as f:
        f.write('\n'.join(out))
    with atomic_write(report.with_suffix('.json'), 'w') as f:
        json.dump(obj, f, indent=2)
    return obj
