"""Live evaluation: score a running surround_depth_node's published depth against a replayed bag's LiDAR.

    python -m surround_depth_ros.evaluate_live --rig BAG/rig.yaml --out DIR [--mask-files a.png ...]
        [--idle-timeout 10] [--max-duration 3600] [--min-depth 0.5] [--max-depth 80] [--max-lidar-gap 0.15]

Start it beside the node, then replay the bag (``python -m surround_depth_ros.replay BAG`` or ``ros2 bag play``).
It stops ``--idle-timeout`` seconds after the last depth image (or on Ctrl-C, or after ``--max-duration``) and
writes ``results.json`` (one record per scored image, comparable with ``evaluate_bag``'s), ``results.md`` (Table I,
the diagnostics seen, the node's latency) and ``pictures/bev_live.png``. Prints ``[evaluate_live] ready`` once its
subscriptions exist.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

__all__ = ['main']


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog='python -m surround_depth_ros.evaluate_live', description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--rig', required=True, type=Path, help="the node's rig file (with the lidar: mount)")
    parser.add_argument('--out', required=True, type=Path, help='output folder')
    parser.add_argument('--mask-files', nargs='*', default=None, help='per camera ego-body masks, rig order')
    parser.add_argument('--idle-timeout', type=float, default=10.0,
                        help='stop this many seconds after the last depth image')
    parser.add_argument('--max-duration', type=float, default=3600.0)
    parser.add_argument('--min-depth', type=float, default=0.5)
    parser.add_argument('--max-depth', type=float, default=80.0)
    parser.add_argument('--max-lidar-gap', type=float, default=0.15)
    args, ros_args = parser.parse_known_args(argv)
    if ros_args and ros_args[0] != '--ros-args':
        parser.error(f'unrecognised arguments: {" ".join(ros_args)}')
    import rclpy
    from rclpy.executors import SingleThreadedExecutor

    from surround_depth_ros.bag.live_evaluator import LiveEvaluator, write_live_report
    from surround_depth_train.geometry.rig import CameraRig, RigError

    try:
        rig = CameraRig.from_yaml(args.rig)
    except RigError as exc:
        print(f'error: {exc}', file=sys.stderr)
        return 2
    masks = dict(zip(rig.names, args.mask_files or []))
    rclpy.init(args=['--ros-args', *ros_args[1:]] if ros_args else None)
    node = LiveEvaluator(rig, min_depth=args.min_depth, max_depth=args.max_depth, masks=masks,
                         max_lidar_gap=args.max_lidar_gap)
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    print('[evaluate_live] ready', flush=True)
    start = time.monotonic()
    try:
        while time.monotonic() - start < args.max_duration:
            executor.spin_once(timeout_sec=0.1)
            last = node.last_output
            if last is not None and time.monotonic() - last > args.idle_timeout:
                break
    except KeyboardInterrupt:
        pass
    result = node.result()
    picture = node.cloud_picture
    node.destroy_node()
    rclpy.try_shutdown()
    md = write_live_report(args.out, result, picture)
    mean = result['lidar']['mean']
    line = 'no depth image scored' if mean is None else f'abs_rel {mean["abs_rel"]:.4f}  a1 {mean["a1"]:.3f}'
    print(f'[evaluate_live] {len(result["frames"])} depth images scored: {line}; report in {md}', flush=True)
    return 0


if __name__ == '__main__':
    sys.exit(main())
