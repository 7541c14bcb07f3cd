"""Evaluate a depth model on a recorded bag against the bag's own LiDAR, through the node's code path.

    python -m surround_depth_ros.evaluate_bag BAG --model runs/kd/model.pt [--out DIR] [--topic-map map.yaml]
        [--samples N] [--pictures 2] [--baseline results.json] [--backend torch|onnxruntime] [--device cpu]
        [--input-size H W] [--min-depth 0.5] [--max-depth 80] [--max-lidar-gap 0.15] [--mask-files a.png ...]

Reads images, camera_info, LiDAR, TF and odometry from the bag with ``rosbags`` (no ROS install needed), groups the
cameras with the node's synchroniser on the bag's stamps, runs the node's pipeline (``FrameDecoder`` +
``DepthPipeline``), projects each LiDAR sweep into the cameras at their stamps (ego motion compensated) and writes
``results.json`` (with one record per scored image), ``results.md`` (Table I per camera and over the rig) and
``pictures/`` to ``--out`` (default ``<model dir>/eval_bag_<bag name>``). Bags in other layouts: ``--topic-map``
(``surround_depth_train/data/rosbag/topic_map.py``). Exit status 2 with one line on bad input.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

__all__ = ['main']


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog='python -m surround_depth_ros.evaluate_bag', description=__doc__,
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
    parser.add_argument('--min-depth', type=float, default=0.5)
    parser.add_argument('--max-depth', type=float, default=80.0)
    parser.add_argument('--max-lidar-gap', type=float, default=0.15,
                        help='seconds a LiDAR sweep may precede an image it is scored against')
    parser.add_argument('--mask-files', nargs='*', default=None,
                        help='per camera ego-body mask images in the bag\'s camera order (white = keep)')
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
                                        max_lidar_gap=args.max_lidar_gap)
        if baseline is not None:
            from surround_depth_train.evaluation.report import baseline_metrics
            from surround_depth_train.metrics import delta_t

            base_mean, _ = baseline_metrics(baseline, 'lidar')
            mean = result['lidar']['mean']
            result['baseline'] = {'path': str(args.baseline), 'name': baseline.get('model', {}).get('name'),
                                  'delta_t': None if None in (base_mean, mean) else delta_t(mean, base_mean)}
        out = args.out or args.model.parent / f'eval_bag_{args.bag.name}'
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
