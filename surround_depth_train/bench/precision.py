"""Reduced precision on the CPU, side by side in one run: fp32 torch (as deployed), bf16 torch, fp32 and int8 ONNX
Runtime, each with its latency, its speed against fp32 torch and its accuracy on the SurroundSim test split.

    python -m surround_depth_train.bench precision
        [--models monodepth2_mb=runs/experiments/distillation/mb_ckd_vrkd_s0/model.pt,light=docs/results/...]
        [--size 640x384] [--batch 6] [--repeats 5] [--threads N] [--eval-samples 24]
        [--calibration-samples 8] [--calibration-method minmax] [--bins-downsample 2] [data.key=value ...]

For each ``label=model_file``:

- **latency** at ``--size`` on one ``batch x 3 x H x W`` camera set (random pixels: latency does not depend on
  them), the four paths alternating (median of ``--repeats``): fp32 torch as the engine runs it
  (``depth_only``, ``inference_mode``, MetricBins' banded path); bf16 torch as the engine runs it
  (:class:`~surround_depth_train.models.reduced_precision.Bf16Model`); the fp32 ONNX export and the int8 export
  (:mod:`surround_depth_train.export.int8`, calibrated on SurroundSim train camera sets at that size) in
  :class:`~surround_depth_train.export.runtime.OnnxDepthModel`. ``speed`` = fp32 torch median / the path's median.
- **accuracy** on the SurroundSim test split at the model file's own input size (the size it was trained at: a
  network sees a 4x larger image as a different scene), through ``evaluation.runner.evaluate_model``, the same
  LiDAR metrics as every evaluation: AbsRel, delta < 1.25 and the AbsRel change relative to fp32 torch. The ONNX
  paths are exported (and the int8 one calibrated) again at that size when it differs from ``--size``; the paths
  are then timed at that size too (``own-size sets/s``: what the node runs for larger cameras by default).
- the same four paths with the MetricBins head at ``1 / --bins-downsample`` resolution (``fp32 torch, bins 1/2``
  ...; :func:`~surround_depth_train.models.bins.set_bins_downsample`, ``export --bins-downsample``); 1 leaves them
  out, and a model without a MetricBins head gets a note instead.

The verdicts take, per model, the fastest path whose AbsRel is at most 2 % worse than fp32 torch's (a smaller
AbsRel is no loss of accuracy). bf16 is timed even where the CPU has no native bf16 (the row then says ``emulated``: the engine refuses it there).
Targets (issue 22): the fastest path for Monodepth2 + MB at least 2x fp32 torch with AbsRel within 2 % of fp32; the
light student at least 10 camera sets per second. The default data overrides are the experiment's evaluation
(``data.world=config/surroundsim/suburb.yaml data.test_samples=24``); ``data.*`` arguments replace them.
"""
from __future__ import annotations

import argparse
import copy
import statistics
import sys
import tempfile
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from surround_depth_train.bench.models import _interleaved, _size

__all__ = ['main', 'PATHS', 'OnnxAsModule', 'DEFAULT_MODELS', 'DEFAULT_DATA']

PATHS = ('fp32 torch', 'bf16 torch', 'fp32 onnxruntime', 'int8 onnxruntime')
DEFAULT_MODELS = ('monodepth2_mb=runs/experiments/distillation/mb_ckd_vrkd_s0/model.pt,'
                  'light=docs/results/surroundsim_models/distilled.pt')
DEFAULT_DATA = ('data.world=config/surroundsim/suburb.yaml', 'data.test_samples=24')
SPEED_TARGET = 2.0        # fastest path vs fp32 torch, Monodepth2 + MB
ABS_REL_TARGET = 0.02     # its relative AbsRel change
LIGHT_SETS_PER_S = 10.0   # the light student, fastest path


class OnnxAsModule(nn.Module):
    """An :class:`~surround_depth_train.export.runtime.OnnxDepthModel` called like a student
    (``images, depth_only=True`` -> an object with ``depth``), so the evaluation runner takes it."""

    def __init__(self, runtime: Any):
        super().__init__()
        self.runtime = runtime

    def forward(self, images: torch.Tensor, depth_only: bool = True, confidence: bool = False) -> Any:
        from surround_depth_train.models.output import DepthOutput

        depth, conf = self.runtime.forward(images.float().contiguous(), confidence=confidence)
        return DepthOutput(depth=depth, confidence=conf)


@dataclass
class _Row:
    label: str
    path: str
    ms: float | None = None
    metrics: dict[str, float] | None = None
    own_ms: float | None = None  # latency at the model's own input size, where that is not the timed size
    notes: list[str] = field(default_factory=list)


def _latency(paths: dict[str, nn.Module | str], batch: int, size_hw: tuple[int, int], repeats: int,
             ) -> dict[str, list[float]]:
    """Seconds per camera set of every path that has a module, interleaved (see ``bench models``)."""
    images = torch.rand(batch, 3, *size_hw, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        return _interleaved({name: partial(module, images, depth_only=True)
                             for name, module in paths.items() if not isinstance(module, str)}, repeats)


def _parse_models(text: str) -> list[tuple[str, Path]]:
    pairs = []
    for item in (t.strip() for t in text.split(',') if t.strip()):
        label, sep, path = item.partition('=')
        if not sep or not label or not path:
            raise ValueError(f'--models entry {item!r}: give LABEL=MODEL_FILE (e.g. light=docs/results/'
                             f'surroundsim_models/distilled.pt)')
        pairs.append((label, Path(path)))
    if not pairs:
        raise ValueError('--models is empty: give LABEL=MODEL_FILE[,...]')
    return pairs


def _paths(model: nn.Module, meta: dict, size_hw: tuple[int, int], overrides: list[str], tmp: Path, *,
           batch: int, threads: int, calibration_samples: int, method: str, tag: str,
           log: Callable[[str], None], int8_tolerance: float = 0.05, bins_downsample: int = 1,
           ) -> dict[str, nn.Module | str]:
    """The four paths as modules at ``size_hw`` (ONNX exports written under ``tmp``), and with ``bins_downsample``
    > 1 the same four with the MetricBins head at that factor (named ``path + ', bins 1/N'``). Where the int8 export
    refuses (its depth further than ``int8_tolerance`` from fp32 on a held-out camera set), that int8 path is the
    reason instead of a module."""
    from surround_depth_train.export.calibration import calibration_from_dataset
    from surround_depth_train.models.bins import set_bins_downsample
    from surround_depth_train.models.modelfile import save_model

    model_file = save_model(tmp / f'{tag}.pt', model, name=meta['name'], kwargs=meta['kwargs'],
                            input_size=size_hw)
    calibration = calibration_from_dataset(overrides, input_size=size_hw, samples=calibration_samples,
                                           check_samples=1)
    paths: dict[str, nn.Module | str] = {}
    for factor in sorted({1, bins_downsample}):
        torch_model = model if factor == 1 else set_bins_downsample(copy.deepcopy(model), factor)
        suffix = '' if factor == 1 else f', bins 1/{factor}'
        found = _four_paths(torch_model, model_file, tmp / f'{tag}_{factor}', calibration, batch=batch,
                            threads=threads, method=method, log=log, int8_tolerance=int8_tolerance,
                            bins_downsample=factor)
        paths.update({name + suffix: module for name, module in found.items()})
    return paths


def _four_paths(model: nn.Module, model_file: Path, stem: Path, calibration: Any, *, batch: int, threads: int,
                method: str, log: Callable[[str], None], int8_tolerance: float, bins_downsample: int,
                ) -> dict[str, nn.Module | str]:
    from surround_depth_train.export.int8 import export_int8
    from surround_depth_train.export.onnx_export import ExportError, export_onnx
    from surround_depth_train.export.runtime import OnnxDepthModel
    from surround_depth_train.models.reduced_precision import Bf16Model

    fp32_onnx = export_onnx(model_file, stem.with_suffix('.onnx'), max_batch=batch, log=log,
                            bins_downsample=bins_downsample).onnx_path
    try:
        int8 = OnnxAsModule(OnnxDepthModel(export_int8(
            model_file, stem.with_suffix('.int8.onnx'), calibration, max_batch=batch, method=method,
            int8_tolerance=int8_tolerance, bins_downsample=bins_downsample, log=log).onnx_path, threads=threads))
    except ExportError as exc:
        int8 = f'int8 export refused: {str(exc).split(";")[0]}'
    return {
        'fp32 torch': model,
        'bf16 torch': Bf16Model(copy.deepcopy(model), 'cpu'),
        'fp32 onnxruntime': OnnxAsModule(OnnxDepthModel(fp32_onnx, threads=threads)),
        'int8 onnxruntime': int8,
    }


def _accuracy(paths: dict[str, nn.Module], overrides: list[str], size_hw: tuple[int, int], samples: int | None,
              ) -> dict[str, dict[str, float]]:
    from surround_depth_train.config import load_config
    from surround_depth_train.evaluation.runner import evaluate_model
    from surround_depth_train.training.builders import build_dataset
    from surround_depth_train.training.config import TrainConfig

    height, width = size_hw
    config = load_config(TrainConfig, None, list(overrides) + [f'data.image_size=[{width},{height}]'])
    dataset = build_dataset(config.data, 'test')
    out = {}
    for name, module in paths.items():
        if isinstance(module, str):  # refused: no graph to evaluate
            continue
        result = evaluate_model(module, dataset, max_samples=samples, pictures=0, latency_runs=1,
                                consistency=False, progress=False)
        out[name] = result['lidar']['mean']
    return out


def main(argv: list[str] | None = None) -> int:
    from surround_depth_train.command_line import prog
    from surround_depth_train.config import ConfigError
    from surround_depth_train.export.int8 import CALIBRATION_METHODS
    from surround_depth_train.export.onnx_export import ExportError
    from surround_depth_train.models.bins import BINS_DOWNSAMPLES, MetricBins
    from surround_depth_train.models.modelfile import ModelFileError, load_model
    from surround_depth_train.models.reduced_precision import native_bf16

    parser = argparse.ArgumentParser(prog=prog('surround_depth_train.bench.precision'),
                                     description='CPU latency and test-split accuracy of fp32 / bf16 torch and '
                                                 'fp32 / int8 ONNX Runtime, side by side.')
    parser.add_argument('--models', default=DEFAULT_MODELS, help='comma-separated LABEL=MODEL_FILE')
    parser.add_argument('--size', type=_size, default=(640, 384), help='timed input WIDTHxHEIGHT (default 640x384)')
    parser.add_argument('--batch', type=int, default=6, help='images per camera set (default 6)')
    parser.add_argument('--repeats', type=int, default=5, help='timed runs per path (median reported)')
    parser.add_argument('--threads', type=int, default=None, help='intra-op threads (default: torch default)')
    parser.add_argument('--eval-samples', type=int, default=None,
                        help='test camera sets to evaluate (default: all of data.test_samples)')
    parser.add_argument('--calibration-samples', type=int, default=8, help='int8 calibration camera sets')
    parser.add_argument('--calibration-method', default='minmax', choices=CALIBRATION_METHODS)
    parser.add_argument('--bins-downsample', type=int, default=2, choices=BINS_DOWNSAMPLES,
                        help='also run the four paths with the MetricBins head at 1/N resolution (default 2; 1: not)')
    parser.add_argument('overrides', nargs='*', metavar='data.key=value',
                        help=f'the SurroundSim data (default: {" ".join(DEFAULT_DATA)})')
    args = parser.parse_args(argv)
    if args.repeats < 1 or args.batch < 1 or args.calibration_samples < 1 or \
            (args.eval_samples is not None and args.eval_samples < 1):
        parser.error('--repeats, --batch, --calibration-samples and --eval-samples must be at least 1')
    bad = [o for o in args.overrides if not o.startswith('data.') or o.startswith('data.image_size=')]
    if bad:
        parser.error(f'{bad[0]}: give data.* overrides (the sizes are --size and the model file\'s)')
    try:
        models = _parse_models(args.models)
    except ValueError as exc:
        parser.error(str(exc))
    missing = [f'{label}={path}' for label, path in models if not path.is_file()]
    if missing and args.models == DEFAULT_MODELS and len(missing) < len(models):
        # the default Monodepth2 + MB file exists only after the experiment ran: benchmark what is there
        print(f'[bench precision] skipped (no model file yet): {", ".join(missing)}; train it with python -m '
              f'surround_depth_train.experiment config/experiments/distillation.yaml', flush=True)
        models = [(label, path) for label, path in models if path.is_file()]
        missing = []
    if missing:
        print(f'error: no model file for {", ".join(missing)}; train it (Monodepth2 + MB: python -m '
              f'surround_depth_train.experiment config/experiments/distillation.yaml) or pass --models '
              f'LABEL=MODEL_FILE', file=sys.stderr)
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    threads = torch.get_num_threads()
    overrides = list(args.overrides) or list(DEFAULT_DATA)
    width, height = args.size
    import onnxruntime

    bf16_flag = native_bf16()
    print(f'CPU, torch {torch.__version__} and onnxruntime {onnxruntime.__version__} with {threads} intra-op threads; '
          f'native bf16: {bf16_flag or "none (bf16 emulated: the engine refuses it here)"}; latency on '
          f'{args.batch}x3x{height}x{width}, median of {args.repeats}; accuracy on the SurroundSim test split at each '
          f'model\'s input size ({" ".join(overrides)})', flush=True)
    log = partial(print, file=sys.stderr)
    results: list[tuple[str, str, list[_Row]]] = []
    try:
        with tempfile.TemporaryDirectory(prefix='bench_precision_') as tmp_name:
            tmp = Path(tmp_name)
            for label, path in models:
                model, meta = load_model(path)
                model.eval()
                eval_hw = (int(meta['input_size'][0]), int(meta['input_size'][1]))
                has_metric_bins = any(isinstance(m, MetricBins) for m in model.modules())
                # The test split's camera sets go through the ONNX graphs in one batch of six.
                kwargs = dict(batch=max(args.batch, 6), threads=threads, calibration_samples=args.calibration_samples,
                              method=args.calibration_method, log=log,
                              bins_downsample=args.bins_downsample if has_metric_bins else 1)
                # latency does not depend on the depth's accuracy: the timed int8 graph is kept whatever its
                # difference to fp32 (a model trained at another size sees 640 x 384 as another scene); accuracy
                # is measured at the model's own size, where the export's check applies
                timed = _paths(model, meta, (height, width), overrides, tmp, tag=f'{label}_time',
                               int8_tolerance=float('inf'), **kwargs)
                times = _latency(timed, args.batch, (height, width), args.repeats)
                own_times = None
                if eval_hw == (height, width):
                    evaluated = timed
                else:
                    evaluated = _paths(model, meta, eval_hw, overrides, tmp, tag=f'{label}_eval', **kwargs)
                    # what the node runs by default: camera images resized to the model's own input size
                    own_times = _latency(evaluated, args.batch, eval_hw, args.repeats)
                with torch.inference_mode():
                    metrics = _accuracy(evaluated, overrides, eval_hw, args.eval_samples)
                rows = [_Row(label, name, 1000 * statistics.median(times[name]), metrics.get(name),
                             own_ms=None if own_times is None or name not in own_times else
                             1000 * statistics.median(own_times[name])) for name in timed]
                for row in rows:
                    if isinstance(evaluated[row.path], str):
                        row.notes.append(evaluated[row.path])
                    if row.path.startswith('bf16') and bf16_flag is None:
                        row.notes.append('emulated')
                if not has_metric_bins and args.bins_downsample != 1:
                    rows[0].notes.append('no MetricBins head: no bins 1/N rows')
                results.append((label, f'{meta["name"]} at {eval_hw[1]}x{eval_hw[0]}', rows))
                del timed, evaluated
    except (ExportError, ModelFileError, ConfigError, ValueError) as exc:
        print(f'error: {exc}', file=sys.stderr)
        return 2
    print(_table(results, args.batch))
    print(_verdicts(results))
    return 0


def _change(row: _Row, base: _Row) -> float | None:
    """``row``'s AbsRel relative to ``base``'s (0.01 = 1 % worse), None without both."""
    if not (row.metrics and base.metrics):
        return None
    return row.metrics['abs_rel'] / base.metrics['abs_rel'] - 1


def _table(results: list[tuple[str, str, list[_Row]]], batch: int) -> str:
    own = any(row.own_ms is not None for _, _, rows in results for row in rows)
    width = max([22] + [len(r.path) + (len(', '.join(r.notes)) + 3 if r.notes else 0)
                        for _, _, rows in results for r in rows])
    lines = [f'\n{"model":<16s} {"path":<{width}s} {"ms/set":>9s} {"sets/s":>7s} {"speed":>7s} {"AbsRel":>8s} '
             f'{"d<1.25":>7s} {"dAbsRel":>8s}' + (f' {"own-size sets/s":>16s}' if own else '')]
    for label, evaluated_as, rows in results:
        base = rows[0]
        for row in rows:
            m = row.metrics
            change = _change(row, base)
            path = row.path + (' (' + ', '.join(row.notes) + ')' if row.notes else '')
            lines.append(f'{label:<16s} {path:<{width}s} {row.ms:>9.1f} {1000 / row.ms:>7.2f} {base.ms / row.ms:>6.2f}x '
                         f'{m["abs_rel"] if m else float("nan"):>8.4f} {m["a1"] if m else float("nan"):>7.4f} '
                         f'{"" if change is None else f"{100 * change:+7.2f}%":>8s}'
                         + (f' {1000 / row.own_ms if row.own_ms else float("nan"):>16.2f}' if own else ''))
        lines.append(f'{"":<16s} (accuracy: {evaluated_as}; latency: {batch} images per set)')
    lines.append('speed = fp32 torch ms / path ms; dAbsRel = AbsRel change relative to fp32 torch; bins 1/N = the '
                 'MetricBins head at 1/N resolution, depth upsampled')
    if own:
        lines.append('own-size sets/s = the same paths at the model\'s own input size (what the node runs for '
                     'larger cameras unless input_size overrides it)')
    return '\n'.join(lines)


def _verdicts(results: list[tuple[str, str, list[_Row]]]) -> str:
    """Per model, the fastest path whose AbsRel is at most :data:`ABS_REL_TARGET` worse than fp32 torch's (a
    smaller AbsRel is no loss of accuracy), against the issue's targets."""
    lines = []
    for label, _, rows in results:
        base = rows[0]
        usable = [r for r in rows[1:] if not r.notes and (c := _change(r, base)) is not None and c <= ABS_REL_TARGET]
        if not usable:
            lines.append(f'  {label}: no path within {100 * ABS_REL_TARGET:g} % of fp32 torch\'s AbsRel: MISSED')
            continue
        best = min(usable, key=lambda r: r.ms)
        change = _change(best, base)
        within = f'AbsRel {100 * change:+.2f} %'
        if label.startswith('monodepth2'):
            speed = base.ms / best.ms
            lines.append(f'  {label}: fastest path within {100 * ABS_REL_TARGET:g} % of fp32 AbsRel: {best.path} at '
                         f'{speed:.2f}x fp32 torch, {within} (target >= {SPEED_TARGET:g}x): '
                         f'{"met" if speed >= SPEED_TARGET else "MISSED"}')
        else:
            rate = 1000 / best.ms
            own = '' if best.own_ms is None else f'; at its own input size {1000 / best.own_ms:.2f} sets/s'
            lines.append(f'  {label}: fastest path within {100 * ABS_REL_TARGET:g} % of fp32 AbsRel: {best.path} at '
                         f'{rate:.2f} sets/s, {within} (target >= {LIGHT_SETS_PER_S:g} for the light student at the '
                         f'timed size): {"met" if rate >= LIGHT_SETS_PER_S else "MISSED"}{own}')
    return '\n'.join(lines)


if __name__ == '__main__':
    sys.exit(main())
