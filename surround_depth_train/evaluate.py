"""Evaluation entry point: a model file on a dataset -> Table I (Markdown + JSON), consistency, pictures.

    python -m surround_depth_train.evaluate --model runs/kd/model.pt [--dataset surroundsim] [--split val]
        [--config config/train/<name>.yaml] [--baseline runs/base/eval_surroundsim_val/results.json]
        [--out DIR] [--samples N] [data.key=value ...]

The dataset is built by the trainer's own builder (``training.builders.build_dataset``) from the ``data`` section
of ``--config`` (e.g. a run's saved ``config.yaml``) with ``data.*`` overrides; without ``--config`` the defaults
apply and the network input size is the model file's. Works for students and teachers alike. Writes
``results.json``, ``results.md`` and ``pictures/`` (mosaics and bird's-eye views) in ``--out``
(default: ``<model dir>/eval_<dataset>_<split>``).
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import torch

from surround_depth_train.atomic import atomic_write
from surround_depth_train.command_line import prog
from surround_depth_train.config import ConfigError, load_config
from surround_depth_train.evaluation.report import render_markdown, write_json
from surround_depth_train.evaluation.runner import evaluate_model
from surround_depth_train.output_path import check_output_dir
from surround_depth_train.training.builders import build_dataset
from surround_depth_train.training.config import TrainConfig

__all__ = ['main', 'run_evaluation']


def _load_baseline(path: Path) -> dict:
    if not path.is_file():
        raise ConfigError(f'--baseline: no file at {path}; pass the results.json of an earlier evaluation '
                          f'(or a training run\'s val_metrics.json)')
    try:
        baseline = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f'--baseline: {path} is not readable JSON ({exc})') from None
    if not isinstance(baseline, dict) or not ('lidar' in baseline or 'mean' in baseline):
        raise ConfigError(f'--baseline: {path} holds no metrics; pass the results.json of an evaluation run')
    return baseline


def _check_input_size(model: torch.nn.Module, meta: dict, image_size) -> None:
    """Refuse a size the network cannot take; warn once when it is not the training size (``image_size`` is
    ``(W, H)`` as ``data.image_size``)."""
    from surround_depth_train.models.input_size import input_size_problem, input_size_warning

    running = (int(image_size[1]), int(image_size[0]))
    trained = (int(meta['input_size'][0]), int(meta['input_size'][1]))
    if running == trained:
        return
    problem = input_size_problem(meta['name'], running, getattr(model, 'min_input_side', 1))
    if problem:
        raise ConfigError(f'data.image_size={list(image_size)}: {problem}; evaluate at its training size '
                          f'{trained[1]}x{trained[0]} (leave data.image_size out)')
    logging.getLogger('surround_depth.evaluate').warning(input_size_warning(meta['name'], trained, running))


def run_evaluation(model_path: str | Path, *, config: str | Path | None = None, overrides: list[str] = (),
                   dataset: str | None = None, split: str = 'val', baseline: str | Path | None = None,
                   out_dir: str | Path | None = None, samples: int | None = None, batch_size: int = 1,
                   device: str = 'auto', pictures: int = 2, latency_runs: int = 5, consistency: bool = True,
                   progress: bool = True) -> dict:
    """Evaluate ``model_path`` and write the report; returns the result dict (also in ``results.json``)."""
    from surround_depth_train.models.modelfile import load_model

    model_path = Path(model_path)
    if split not in ('val', 'test', 'train'):
        raise ConfigError(f'--split {split}: choose val, test or train')
    if samples is not None and samples < 1:
        raise ConfigError(f'--samples {samples}: evaluate at least one camera set (or leave --samples out for all)')
    for option, value, lowest in (('--batch-size', batch_size, 1), ('--pictures', pictures, 0),
                                  ('--latency-runs', latency_runs, 1)):
        if value < lowest:
            raise ConfigError(f'{option} {value}: must be at least {lowest}')
    if device.startswith('cuda') and not torch.cuda.is_available():
        raise ConfigError(f'--device {device}: this machine has no CUDA device; use --device cpu (or auto)')
    bad = [o for o in overrides if not o.startswith('data.')]
    if bad:
        raise ConfigError(f'overrides {bad}: evaluation takes data.* overrides only (e.g. data.val_samples=32 '
                          f'data.root=/data/nuscenes)')
    overrides = list(overrides) + ([f'data.dataset={dataset}'] if dataset else [])
    base = load_config(TrainConfig, config, overrides)
    model, meta = load_model(model_path)
    if config is None and not any(o.startswith('data.image_size=') for o in overrides):
        h, w = meta['input_size']
        base.data.image_size = (int(w), int(h))
    _check_input_size(model, meta, base.data.image_size)
    baseline_obj = _load_baseline(Path(baseline)) if baseline else None
    out = check_output_dir(Path(out_dir) if out_dir else model_path.parent / f'eval_{base.data.dataset}_{split}',
                           '--out')
    try:
        ds = build_dataset(base.data, split)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    dev = torch.device('cuda' if device == 'auto' and torch.cuda.is_available() else
                       ('cpu' if device == 'auto' else device))
    run = evaluate_model(model, ds, device=dev, batch_size=batch_size, num_workers=base.data.num_workers,
                         max_samples=samples, pictures=pictures, out_dir=out, latency_runs=latency_runs,
                         consistency=consistency, progress=progress)
    result = {
        'model': {'path': str(model_path), 'name': meta['name'], 'kwargs': meta['kwargs'],
                  'parameters': run.pop('parameters'), 'input_size': meta['input_size']},
        'dataset': {'name': base.data.dataset, 'split': split, 'samples': run.pop('samples'),
                    'image_size': list(base.data.image_size), 'gt_resolution': run.pop('gt_resolution'),
                    'min_depth': float(ds.min_depth), 'max_depth': float(ds.max_depth),
                    'cameras': list(ds.camera_names)},
        **run,
    }
    if baseline_obj is not None:
        from surround_depth_train.evaluation.report import baseline_metrics
        from surround_depth_train.metrics import delta_t

        base_mean, _ = baseline_metrics(baseline_obj, 'lidar')
        mean = result['lidar']['mean']
        result['baseline'] = {'path': str(baseline), 'name': baseline_obj.get('model', {}).get('name'),
                              'delta_t': None if base_mean is None or mean is None else delta_t(mean, base_mean)}
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / 'results.json', result)
    with atomic_write(out / 'results.md', 'w') as f:
        f.write(render_markdown(result, baseline_obj))
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=prog('surround_depth_train.evaluate'), description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--model', required=True, type=Path, help='model file (a run\'s model.pt or a checkpoint)')
    parser.add_argument('--config', type=Path, help='a training YAML whose data section describes the dataset')
    parser.add_argument('--dataset', help='surroundsim, nuscenes or ddad (default: the config\'s)')
    parser.add_argument('--split', default='val', help='val (default), test or train')
    parser.add_argument('--baseline', type=Path, help='results.json of the baseline, for Delta_T')
    parser.add_argument('--out', type=Path, help='output folder (default <model dir>/eval_<dataset>_<split>)')
    parser.add_argument('--samples', type=int, help='evaluate the first N camera sets only')
    parser.add_argument('--batch-size', type=int, default=1, help='camera sets per forward pass')
    parser.add_argument('--device', default='auto', help='auto (cuda when available), cpu, cuda, cuda:1 ...')
    parser.add_argument('--pictures', type=int, default=2, help='camera sets to draw (mosaic + bird\'s-eye view)')
    parser.add_argument('--latency-runs', type=int, default=5, help='forward passes timed for the latency median')
    parser.add_argument('--no-consistency', action='store_true', help='skip the cross-view consistency measure')
    parser.add_argument('overrides', nargs='*', help='data.key=value overrides, e.g. data.val_samples=32')
    args = parser.parse_intermixed_args(argv)  # overrides may come before and after the options
    from surround_depth_train.models.modelfile import ModelFileError

    try:
        result = run_evaluation(args.model, config=args.config, overrides=args.overrides, dataset=args.dataset,
                                split=args.split, baseline=args.baseline, out_dir=args.out, samples=args.samples,
                                batch_size=args.batch_size, device=args.device, pictures=args.pictures,
                                latency_runs=args.latency_runs, consistency=not args.no_consistency)
    except (ConfigError, ModelFileError, FileNotFoundError) as exc:
        print(f'error: {exc}', file=sys.stderr)
        return 2
    mean = result['lidar']['mean']
    out = args.out or args.model.parent / f'eval_{result["dataset"]["name"]}_{args.split}'
    line = 'no valid pixels' if mean is None else f'abs_rel {mean["abs_rel"]:.3f}  a1 {mean["a1"]:.3f}'
    print(f'[evaluate] {result["model"]["name"]} on {result["dataset"]["name"]}/{args.split}: {line}; '
          f'report in {out / "results.md"}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
