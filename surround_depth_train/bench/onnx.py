"""Six-camera set latency on CPU: PyTorch as deployed vs the ONNX Runtime export, side by side in one run.

    python -m surround_depth_train.bench onnx [--size 640x384] [--batch 6] [--repeats 5] [--threads N]
                                              [--models monodepth2_mb,tiny_student_mb] [--levels all,extended]
                                              [--confidence]

Each model (random weights: latency does not depend on them) is saved as a model file, exported with
``surround_depth_train.export`` (self-check included) at the benchmark's input size, and then run on the same
``batch x 3 x H x W`` camera set by

- torch as the node's torch backend runs it: ``depth_only=True`` (+ ``confidence``), ``inference_mode``, the bins
  head's banded CPU path;
- ONNX Runtime as the node's ONNX backend runs it: :class:`~surround_depth_train.export.runtime.OnnxDepthModel`
  (CPU provider, I/O bound once, sequential execution), once per graph optimisation level asked for.

The runs alternate, so a change of load on the machine hits all alike; the table gives median milliseconds per
camera set and the ratio ONNX Runtime / torch (the goal: at most 1). Both use the same number of intra-op threads
(``--threads``, default torch's). fp16 is not offered: CPUs gain nothing from it in ONNX Runtime's kernels. The
node runs with the allocator settings of ``surround_depth_train.allocator``; set them in the environment for the
figures it sees (the header says which are in effect).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from functools import partial
from pathlib import Path

import torch
from tqdm import tqdm

from surround_depth_train.command_line import prog
from surround_depth_train.allocator import ALLOCATOR_SETTINGS, allocator_settings_in_effect, describe_allocator
from surround_depth_train.bench.models import _interleaved, _size
from surround_depth_train.export.onnx_export import export_onnx
from surround_depth_train.export.runtime import OPTIMIZATION_LEVELS, OnnxDepthModel
from surround_depth_train.models.modelfile import save_model
from surround_depth_train.models.registry import create_model, is_registered

__all__ = ['main']


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=prog('surround_depth_train.bench.onnx'),
                                     description='CPU latency of a camera set: torch (as deployed) vs ONNX Runtime.')
    parser.add_argument('--size', type=_size, default=(640, 384), help='input WIDTHxHEIGHT (default 640x384)')
    parser.add_argument('--batch', type=int, default=6, help='images per camera set (default 6)')
    parser.add_argument('--repeats', type=int, default=5, help='timed runs per backend (median reported)')
    parser.add_argument('--threads', type=int, default=None,
                        help='intra-op threads for both torch and ONNX Runtime (default: torch default)')
    parser.add_argument('--models', default='monodepth2_mb,tiny_student_mb', help='comma-separated model names')
    parser.add_argument('--levels', default='all',
                        help=f'comma-separated ONNX Runtime graph optimisation levels out of '
                             f'{",".join(OPTIMIZATION_LEVELS)} (default all)')
    parser.add_argument('--confidence', action='store_true', help='compute the confidence map too')
    args = parser.parse_args(argv)
    if args.repeats < 1 or args.batch < 1:
        parser.error('--repeats and --batch must be at least 1')
    models = [m.strip() for m in args.models.split(',') if m.strip()]
    unknown = [m for m in models if not is_registered(m)]
    if unknown:
        parser.error(f'unknown models {unknown}')
    levels = [v.strip() for v in args.levels.split(',') if v.strip()]
    bad = [v for v in levels if v not in OPTIMIZATION_LEVELS]
    if bad or not levels:
        parser.error(f'unknown optimisation levels {bad}; choose from {",".join(OPTIMIZATION_LEVELS)}')
    if args.threads:
        torch.set_num_threads(args.threads)
    threads = torch.get_num_threads()
    width, height = args.size
    import onnxruntime

    torch.manual_seed(0)
    images = torch.rand(args.batch, 3, height, width)
    print(f'CPU, torch {torch.__version__} with {threads} intra-op threads; onnxruntime {onnxruntime.__version__} '
          f'(CPUExecutionProvider, {threads} intra-op threads, sequential execution, graph optimisation '
          f'{"/".join(levels)}); input {args.batch}x3x{height}x{width}, confidence {args.confidence}, '
          f'{args.repeats} timed runs (median); allocator: {describe_allocator()}', flush=True)
    if not allocator_settings_in_effect():
        print('  note: the node runs with ' + ' '.join(f'{k}={v}' for k, v in ALLOCATOR_SETTINGS.items()) +
              '; set them for the figures it sees', flush=True)
    rows: list[tuple[str, dict[str, float]]] = []
    with tempfile.TemporaryDirectory(prefix='bench_onnx_') as tmp:
        for name in tqdm(models, desc='models', file=sys.stderr):
            model = create_model(name).eval()
            confidence = args.confidence and bool(getattr(model, 'has_bins', False))
            model_file = save_model(Path(tmp) / f'{name}.pt', model, name=name, kwargs={},
                                    input_size=(height, width))
            onnx_path = export_onnx(model_file, Path(tmp) / f'{name}.onnx', max_batch=args.batch,
                                    outputs=('depth', 'confidence') if confidence else ('depth',),
                                    log=lambda line: print(f'  [{name} export] {line}', file=sys.stderr)).onnx_path
            kwargs = {'depth_only': True, **({'confidence': True} if confidence else {})}
            runs = {'torch': partial(model, images, **kwargs)}
            for level in levels:
                runtime = OnnxDepthModel(onnx_path, threads=threads, optimization_level=level)
                runs[f'onnxruntime {level}'] = partial(runtime.forward, images, confidence=confidence)
            with torch.inference_mode():
                times = _interleaved(runs, args.repeats)
            rows.append((name, {k: 1000 * statistics.median(v) for k, v in times.items()}))
            del model, runs

    print(f'\n{"model":<22s} {"backend":<24s} {"ms/set":>10s} {"ms/image":>10s} {"vs torch":>9s}')
    for name, medians in rows:
        for backend, ms in medians.items():
            ratio = ms / medians['torch']
            print(f'{name:<22s} {backend:<24s} {ms:>10.1f} {ms / args.batch:>10.1f} {ratio:>8.2f}x')
    print('\nratio = ONNX Runtime median / torch median (goal: at most 1.00x, ONNX Runtime as fast as torch)')
    for name, medians in rows:
        best = min((k for k in medians if k != 'torch'), key=medians.get)
        ratio = medians[best] / medians['torch']
        print(f'  {name}: best ONNX Runtime setting "{best}" at {ratio:.2f}x torch: '
              f'{"met" if ratio <= 1.0 else "MISSED"}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
