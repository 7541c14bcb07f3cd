"""Live evaluation: score a running surround_depth_node's published depth against a replayed bag's LiDAR.

    python -m surround_depth_ros.evaluate_live --rig BAG/rig.yaml --out DIR [--mask-files a.png ...]
        [--idle-timeout 10] [--first-timeout 120] [--max-duration 3600] [--min-depth 0.5] [--max-depth 80]
        [--max-lidar-gap 0.15]

Start it beside the node, then replay the bag (``python -m surround_depth_ros.replay BAG`` or ``ros2 bag play``).
It stops ``--idle-timeout`` seconds after the last depth image (or on Ctrl-C, or after ``--max-duration``) and
writes ``results.json`` (one record per scored image, comparable with ``evaluate_bag``'s), ``results.md`` (Table I,
the diagnostics seen, the node's latency) and ``pictures/bev_live.png``. Prints ``[evaluate_live] ready`` once its
subscriptions exist. When no depth image arrives within ``--first-timeout`` seconds (no node, another
``ROS_DOMAIN_ID``, a transport that drops large images) it writes nothing and exits with status 2 and one line.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from surround_depth_train.command_line import prog

__all__ = ['main']


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=prog('surround_depth_ros.evaluate_live'), description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--rig', required=True, type=Path, help="the node's rig file (with the lidar: mount)")
    parser.add_argument('--out', required=True, type=Path, help='output folder')
    parser.add_argument('--mask-files', nargs='*', default=None, help='per camera ego-body masks, rig order')
    parser.add_argument('--idle-timeout', type=float, default=10.0,
                        help='stop this many seconds after the last depth image')
    parser.add_argument('--first-timeout', type=float, default=120.0,
                        help='give up (exit status 2, nothing written) when no depth image arrives this long')
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
    from surround_depth_ros.teardown import bounded_teardown
    from surround_depth_train.geometry.rig import CameraRig, RigError

    from surround_depth_train.config import ConfigError
    from surround_depth_train.output_path import check_output_dir

    try:
        rig = CameraRig.from_yaml(args.rig)
        check_output_dir(args.out, '--out')
        if args.mask_files and len(args.mask_files) != len(rig):
            raise ConfigError(f'--mask-files: {len(args.mask_files)} given for the {len(rig)} cameras {rig.names}; '
                              f'give one ego-body mask image per camera, in this order')
        if not 0 < args.min_depth < args.max_depth:
            raise ConfigError(f'--min-depth {args.min_depth:g} --max-depth {args.max_depth:g}: the depth range '
                              f'must satisfy 0 < min < max (e.g. 0.5 and 80)')
        for option in ('idle_timeout', 'first_timeout', 'max_duration', 'max_lidar_gap'):
            if not getattr(args, option) > 0:
                raise ConfigError(f'--{option.replace("_", "-")} {getattr(args, option):g}: must be positive '
                                  f'(seconds)')
    except (RigError, ConfigError) as exc:
        print(f'error: {exc}', file=sys.stderr)
        return 2
    masks = dict(zip(rig.names, args.mask_files or []))
    rclpy.init(args=['--ros-args', *ros_args[1:]] if ros_args else None)
    node = LiveEvaluator(rig, min_depth=args.min_depth, max_depth=args.max_depth, masks=masks,
                         max_lidar_gap=args.max_lidar_gap)
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    start = time.monotonic()
    # ready once every depth image topic has a publisher, and a moment more for that publisher to match this
    # subscription back (DDS discovery is not symmetric: a node that publishes before it has matched this reader
    # sends its depth to nobody; seen as "no depth image arrived" in one test run of many)
    from sensor_msgs.msg import Image

    depth_topics = [s.topic_name for s in node.subscriptions if s.msg_type is Image]
    print(f'[evaluate_live] subscribed; waiting for the depth publishers ({len(depth_topics)} topics)', flush=True)
    def published() -> bool:
        return all(node.count_publishers(t) for t in depth_topics)

    while time.monotonic() - start < args.first_timeout and not published():
        executor.spin_once(timeout_sec=0.1)
    settle = time.monotonic() + (1.0 if published() else 0.0)
    while time.monotonic() < settle:
        executor.spin_once(timeout_sec=0.1)
    print('[evaluate_live] ready', flush=True)
    try:
        while time.monotonic() - start < args.max_duration:
            executor.spin_once(timeout_sec=0.1)
            last = node.last_output
            if last is not None and time.monotonic() - last > args.idle_timeout:
                break
            if last is None and time.monotonic() - start > args.first_timeout:
                break
    except KeyboardInterrupt:
        pass
    received = node.last_output is not None
    result = node.result() if received else None
    picture = node.cloud_picture
    if not received:
        cams = ', '.join(f'/{c}/depth/image' for c in rig.names[:2])
        print(f'error: no depth image arrived in {time.monotonic() - start:.0f} s ({cams}, ...); nothing written. '
              f'Start surround_depth_node with this rig and replay a bag, in the same ROS_DOMAIN_ID, with '
              f'FASTDDS_BUILTIN_TRANSPORTS=LARGE_DATA (the launch file sets it)', file=sys.stderr, flush=True)
        status = 2
    else:
        md = write_live_report(args.out, result, picture)
        mean = result['lidar']['mean']
        line = 'no depth image scored' if mean is None else f'abs_rel {mean["abs_rel"]:.4f}  a1 {mean["a1"]:.3f}'
        print(f'[evaluate_live] {len(result["frames"])} depth images scored: {line}; report in {md}', flush=True)
        status = 0
    with bounded_teardown('evaluate_live', status=status):  # everything is written and said before it
        node.destroy_node()
        rclpy.try_shutdown()
    return status


if __name__ == '__main__':
    sys.exit(main())
