"""Evaluate a depth model on a recorded bag against the bag's own LiDAR, through the node's code path.

    python -m surround_depth_ros.evaluate_bag BAG --model runs/kd/model.pt [--out DIR] [--topic-map map.yaml]
        [--samples N] [--pictures 2] [--baseline results.json] [--backend torch|onnxruntime] [--device cpu]
        [--input-size H W] [--precision fp32|bf16|int8] [--bins-downsample 1|2|4] [--min-depth 0.5]
        [--max-depth 80] [--max-lidar-gap 0.15] [--mask-files a.png ...] [--allow-teacher]

Reads images, camera_info, LiDAR, TF and odometry from the bag with ``rosbags`` (no ROS install needed), groups the
cameras with the node's synchroniser on the bag's stamps, runs the node's pipeline (``FrameDecoder`` +
``DepthPipeline``), projects each LiDAR sweep into the cameras at their stamps (ego motion compensated) and writes
``results.json`` (with one record per scored image), ``results.md`` (Table I per camera and over the rig) and
``pictures/`` to ``--out`` (default ``<model dir>/eval_bag_<bag name>``). Bags in other layouts: ``--topic-map``
(``surround_depth_train/data/rosbag/topic_map.py``). ``--precision`` and ``--bins-downsample`` evaluate the
configuration the node deploys (an ``.onnx`` is evaluated as exported: int8, bins at 1/N). Exit status 2 with one
line on bad input.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from surround_depth_train.command_line import prog
from surround_depth_train.output_path import check_output_dir

__all__ = ['main']


def _check_numbers(args: argparse.Namespace) -> None:
    from surround_depth_train.config import ConfigError

    if not 0 < args.min_depth < args.max_depth:
        raise ConfigError(f'--min-depth {args.min_depth:g} --max-depth {args.max_depth:g}: the depth range must '
                          f'satisfy 0 < min < max (e.g. 0.5 and 80)')
    if args.pictures < 0 or not args.max_lidar_gap > 0:
        bad = f'--pictures {args.pictures}' if args.pictures < 0 else f'--max-lidar-gap {args.max_lidar_gap:g}'
        raise ConfigError(f'{bad}: must be at least 0 pictures and a positive gap in seconds (defaults 2 and 0.15)')


def _check_model(path: Path, backend: str, allow_teacher: bool) -> None:
    """Refuse, before the bag is read, a model the backend cannot run and a teacher without --allow-teacher."""
    from surround_depth_train.config import ConfigError
    from surround_depth_train.models.modelfile import ModelInfo, is_onnx_file

    if not path.is_file():
        raise ConfigError(f'--model: no file at {path}; pass a model.pt (or an .onnx export with --backend '
                          f'onnxruntime)')
    onnx = is_onnx_file(path)
    if onnx and backend == 'torch':
        raise ConfigError(f'--model {path} is an ONNX export; add --backend onnxruntime to evaluate it')
    if not onnx and backend == 'onnxruntime':
        raise ConfigError(f'--model {path} is not an ONNX export; leave --backend out to evaluate a model file with '
                          f'torch, or export it first (python -m surround_depth_train.export)')
    if onnx:
        from surround_depth_train.export.sidecar import read_sidecar

        try:  # the backend refuses a missing or stale sidecar itself, with its own message
            info = ModelInfo.from_file_dict(read_sidecar(path, verify_hash=False)['model'])
        except (ValueError, KeyError, TypeError):
            return
    else:
        info = ModelInfo.read(path)
    if info.is_teacher and not allow_teacher:
        raise ConfigError(f'--model {path} holds the teacher {info.name}, tens of times slower than a student; '
                          f'evaluate a distilled student, or pass --allow-teacher to evaluate it anyway')


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=prog('surround_depth_ros.evaluate_bag'), description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('bag', type=Path, help='a rosbag2 folder (or .mcap / .db3 file)')
    parser.add_argument('--model', required=True, type=Path, help='a model file (model.pt) or an exported .onnx')
    parser.add_argument('--out', type=Path, help='output folder (default <model dir>/eval_bag_<bag name>)')
    parser.add_argument('--topic-map', type=Path, help='YAML topic map for bags in other layouts')
    parser.add_argument('--samples', type=int, help='evaluate the first N camera sets only')
    parser.add_argument('--pictures', type=int, default=2, help='camera sets to draw (mosaic + bird\'s-eye view)')
    parser.add_argument('--baseline', type=Path, help='results.json of a baseline (Delta_T)')
    parser.add_argument('--backend', default='torch', choices=('torch', 'onnxruntime'))
    parser.add_argument('--device', default='cpu', help='cpu, cuda, cuda:N or auto (torch backend)')
    parser.add_argument('--input-size', type=int, nargs=2, metavar=('H', 'W'), help='network input override')
    parser.add_argument('--precision', choices=('fp32', 'fp16', 'bf16', 'int8'),
                        help='as the node runs it (default: fp32; an .onnx: as exported)')
    parser.add_argument('--bins-downsample', type=int, choices=(1, 2, 4),
                        help='MetricBins depth at 1/N resolution, upsampled (default: 1; an .onnx: as exported)')
    parser.add_argument('--min-depth', type=float, default=0.5)
    parser.add_argument('--max-depth', type=float, default=80.0)
    parser.add_argument('--max-lidar-gap', type=float, default=0.15,
                        help='seconds a LiDAR sweep may precede an image it is scored against')
    parser.add_argument('--mask-files', nargs='*', default=None,
                        help='per camera ego-body mask images in the bag\'s camera order (white = keep)')
    parser.add_argument('--allow-teacher', action='store_true',
                        help='evaluate a teacher model (tens of times slower than a student)')
    args = parser.parse_args(argv)
    from surround_depth_ros.bag.evaluation import evaluate_bag, write_report
    from surround_depth_train.data.rosbag.reader import BagInputError
    from surround_depth_train.data.rosbag.topic_map import load_topic_map
    from surround_depth_ros.engine import EngineError
    from surround_depth_train.data.rosbag.messages import InputError
    from surround_depth_train.config import ConfigError

    if args.samples is not None and args.samples < 1:
        print(f'error: --samples {args.samples}: evaluate at least one camera set', file=sys.stderr)
        return 2
    try:
        _check_numbers(args)
        _check_model(args.model, args.backend, args.allow_teacher)
        out = check_output_dir(args.out or args.model.parent / f'eval_bag_{args.bag.name}', '--out')
        topic_map = load_topic_map(args.topic_map)
        if args.mask_files is not None:
            topic_map.mask_files = list(args.mask_files)
        baseline = None
        if args.baseline is not None:
            if not args.baseline.is_file():
                raise ConfigError(f'--baseline: no file at {args.baseline}; pass the results.json of an evaluation')
            baseline = json.loads(args.baseline.read_text())
        result, pictures = evaluate_bag(args.bag, args.model, topic_map=topic_map, device=args.device,
                                        backend=args.backend, input_size=args.input_size, samples=args.samples,
                                        pictures=args.pictures, min_depth=args.min_depth, max_depth=args.max_depth,
                                        max_lidar_gap=args.max_lidar_gap, allow_teacher=args.allow_teacher,
                                        precision=args.precision, bins_downsample=args.bins_downsample)
        if baseline is not None:
            from surround_depth_train.evaluation.report import baseline_metrics
            from surround_depth_train.metrics import delta_t

            base_mean, _ = baseline_metrics(baseline, 'lidar')
            mean = result['lidar']['mean']
            result['baseline'] = {'path': str(args.baseline), 'name': baseline.get('model', {}).get('name'),
                                  'delta_t': None if None in (base_mean, mean) else delta_t(mean, base_mean)}
        md = write_report(out, result, pictures, baseline)
    except (BagInputError, ConfigError, EngineError, InputError, ValueError) as exc:
        print(f'error: {exc}', file=sys.stderr)
        return 2
    mean = result['lidar']['mean']
    line = 'no valid pixels' if mean is None else f'abs_rel {mean["abs_rel"]:.4f}  a1 {mean["a1"]:.3f}'
    print(f'[evaluate_bag] {result["model"]["name"]} on {args.bag} ({result["bag"]["sets"]} sets): {line}; '
          f'report in {md}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
