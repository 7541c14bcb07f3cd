"""Replay a rosbag2 through rclpy with its recorded timing and a ``/clock``, where ``ros2 bag play`` is not installed.

    python -m surround_depth_ros.replay BAG [--rate R] [--loop] [--topics /a /b ...] [--remap /from:=/to ...]
        [--no-clock] [--wait-for-subscribers SECONDS] [--delay SECONDS] [--quiet]

Every message goes out as its stored CDR bytes at its recording time (scaled by ``--rate``); before each message
whose time differs from the last, ``/clock`` (``rosgraph_msgs/Clock``) carries that time, so nodes with
``use_sim_time`` see the recorded clock (with ``--loop`` it jumps back to the start at every pass, as with
``ros2 bag play --loop``). Publishers offer the recorded QoS durability (``/tf_static`` transient local), reliable.
Topics whose message packages are not installed here (``tf2_msgs``: no wheel on the registry) are listed once and
skipped; ``/odom`` carries the ego motion. ``--wait-for-subscribers S`` waits up to S seconds until every topic has
a subscriber before starting, and ``--delay S`` S seconds more: DDS discovery is not symmetric, so a reader this
publisher has matched may need a moment to match it back, and drops what comes before. Exit status 2 with one line
on bad input. With a full ROS 2 install, ``ros2 bag play BAG --clock`` does the same.
"""
from __future__ import annotations

import argparse
import sys
import time

from surround_depth_train.command_line import prog

__all__ = ['main', 'replay']


def replay(path: str, *, rate: float = 1.0, loop: bool = False, topics: list[str] | None = None,
           remaps: dict[str, str] | None = None, clock: bool = True, wait_for_subscribers: float = 0.0,
           delay: float = 0.0, progress: bool = True, log=print, exit_on_hung_teardown: bool = False,
           ) -> dict[str, int]:
    """Replay ``path`` (module docstring); returns the messages published per (published) topic.
    ``exit_on_hung_teardown`` (the command line's choice): end the process when the DDS teardown hangs
    (:mod:`surround_depth_ros.teardown`)."""
    import rclpy
    from rclpy.duration import Duration
    from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
    from rosgraph_msgs.msg import Clock
    from tqdm import tqdm

    from surround_depth_ros.bag.playback import Playback
    from surround_depth_ros.teardown import TEARDOWN_SECONDS, bounded_teardown
    from surround_depth_train.data.rosbag.topics import CLOCK_TOPIC

    if not rate > 0:
        raise ValueError(f'--rate {rate}: the rate must be positive (1 = as recorded, 2 = twice as fast)')
    with Playback(path, topics, remaps) as bag:
        if bag.skipped:
            log('[replay] skipping topics whose message types are not installed here: ' +
                ', '.join(f'{t.name} ({t.msgtype})' for t in bag.skipped))
        if not bag.playable:
            raise ValueError(f'none of the selected topics of {path} can be published here (types not installed)')
        own_context = not rclpy.ok()
        if own_context:
            rclpy.init()
        node = rclpy.create_node('surround_depth_replay')
        finished = None
        try:
            pubs = {}
            for t in bag.playable:
                qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=max(t.depth, 100),
                                 reliability=ReliabilityPolicy.RELIABLE,
                                 durability=DurabilityPolicy.TRANSIENT_LOCAL if t.transient_local
                                 else DurabilityPolicy.VOLATILE)
                pubs[t.name] = node.create_publisher(t.cls, t.out_name, qos)
            clock_pub = node.create_publisher(Clock, CLOCK_TOPIC, 100) if clock else None
            if wait_for_subscribers > 0:
                _wait_for_subscribers(pubs, bag, wait_for_subscribers, log)
            if delay > 0:  # a subscriber matched by this writer may not yet have matched it back (DDS discovery)
                time.sleep(delay)
            counts = {bag.topics[name].out_name: 0 for name in pubs}
            passes = 0
            while True:
                passes += 1
                start_wall, first_ns, last_clock = time.monotonic(), None, None
                bar = tqdm(total=bag.count, desc=f'replay pass {passes}', unit='msg', disable=not progress,
                           leave=False)
                for topic, ns, raw in bag.messages():
                    first_ns = ns if first_ns is None else first_ns
                    delay = start_wall + (ns - first_ns) * 1e-9 / rate - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
                    if clock_pub is not None and ns != last_clock:
                        clock_pub.publish(Clock(clock=_time_msg(ns)))
                        last_clock = ns
                    pubs[topic].publish(raw)
                    counts[bag.topics[topic].out_name] += 1
                    bar.update(1)
                bar.close()
                if not loop:
                    break
            for pub in [*pubs.values(), *([clock_pub] if clock_pub else [])]:
                pub.wait_for_all_acked(Duration(seconds=5.0))  # reliable readers got everything
            finished = summary(counts, path)
            return counts
        finally:
            with bounded_teardown('replay', status=0 if finished else 1, final_words=finished,
                                  seconds=TEARDOWN_SECONDS if exit_on_hung_teardown else float('inf')):
                node.destroy_node()
                if own_context:
                    rclpy.try_shutdown()


def summary(counts: dict[str, int], path: str) -> str:
    """The line ``main`` prints after a replay."""
    return f'[replay] published {sum(counts.values())} messages on {len(counts)} topics from {path}'


def _time_msg(ns: int):
    from builtin_interfaces.msg import Time

    return Time(sec=int(ns // 1_000_000_000), nanosec=int(ns % 1_000_000_000))


def _wait_for_subscribers(pubs: dict, bag, timeout: float, log) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        waiting = [bag.topics[t].out_name for t, p in pubs.items() if p.get_subscription_count() == 0]
        if not waiting:
            return
        time.sleep(0.05)
    log(f'[replay] no subscriber after {timeout:g} s on {waiting}; replaying anyway')


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=prog('surround_depth_ros.replay'), description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('bag', help='a rosbag2 folder (or .mcap / .db3 file)')
    parser.add_argument('--rate', type=float, default=1.0, help='playback speed factor (default 1)')
    parser.add_argument('--loop', action='store_true', help='start again at the end, until interrupted')
    parser.add_argument('--topics', nargs='+', default=None, help='replay only these recorded topics')
    parser.add_argument('--remap', nargs='+', default=[], metavar='FROM:=TO', help='publish /from under /to')
    parser.add_argument('--no-clock', action='store_true', help='do not publish /clock')
    parser.add_argument('--wait-for-subscribers', type=float, default=0.0, metavar='SECONDS',
                        help='wait up to this long for a subscriber on every topic before starting')
    parser.add_argument('--delay', type=float, default=0.0, metavar='SECONDS',
                        help='wait this long after the subscribers are found (or at once) before playing')
    parser.add_argument('--quiet', action='store_true', help='no progress bar')
    args, ros_args = parser.parse_known_args(argv)
    if ros_args and ros_args[0] != '--ros-args':
        parser.error(f'unrecognised arguments: {" ".join(ros_args)}')
    from surround_depth_ros.bag.playback import parse_remaps
    from surround_depth_train.data.rosbag.reader import BagInputError

    try:
        counts = replay(args.bag, rate=args.rate, loop=args.loop, topics=args.topics,
                        remaps=parse_remaps(args.remap), clock=not args.no_clock,
                        wait_for_subscribers=args.wait_for_subscribers, delay=args.delay, progress=not args.quiet,
                        exit_on_hung_teardown=True)
    except (BagInputError, ValueError) as exc:
        print(f'error: {exc}', file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 0
    print(summary(counts, args.bag), flush=True)
    return 0


if __name__ == '__main__':
    sys.exit(main())
