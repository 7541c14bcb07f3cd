"""Node benchmark: the engine's model time for a six-camera set beside the node's end-to-end time over DDS.

``python -m surround_depth_ros.bench [--models monodepth2_mb,tiny_student_mb] [--sets 12] [--size 640x384]``

For each model, in one run:

1. the engine alone in this process (``DepthEngine.predict`` on six camera images): the model time and the
   engine's whole call (upload, resize, forward, resize back, copy out), medians;
2. the node as deployed, a separate process over DDS: this process publishes six cameras and their CameraInfo as a
   steady stream a little slower than the node can go (no set is dropped), the node answers; its ``/diagnostics``
   give the medians of the model time, the processing time (set handed to the worker -> depth images and cloud
   published: decode, engine, cloud, serialisation) and the synchroniser's wait (newest image of a set in -> set
   proven best and handed over: message_filters' semantics hold a set until a later frame shows nothing better can
   come, about one frame period; it is latency, not work, and reported apart).

The overhead is the node's processing time minus the model time it contains, as a ratio of the model time and in
milliseconds; the target is at most 20 % of the Monodepth2 + MB model time. Both processes use the allocator
settings of :mod:`surround_depth_train.allocator`. Weights are random (no download): latency does not depend on
them.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from surround_depth_train.command_line import prog
from surround_depth_train.resources import resource_path

__all__ = ['main']

RIG = 'config/rigs/surroundsim.yaml'  # a package file (surround_depth_train.resources)



def _size(text: str) -> tuple[int, int]:
    try:
        width, height = (int(v) for v in text.lower().split('x'))
    except ValueError:
        raise argparse.ArgumentTypeError(f'size must be WIDTHxHEIGHT, e.g. 640x384; got {text!r}') from None
    return width, height


def _model_file(name: str, folder: Path, height: int, width: int) -> Path:
    import torch

    from surround_depth_train.models import create_model, save_model

    torch.manual_seed(0)
    path = folder / f'{name}.pt'
    save_model(path, create_model(name), name=name, kwargs={}, input_size=(height, width))
    return path


def _engine_times(path: Path, images: list[np.ndarray], K: np.ndarray, repeats: int) -> tuple[float, float]:
    from surround_depth_ros.engine import DepthEngine

    engine = DepthEngine(path, logger=lambda message: None)
    Ks = [K] * len(images)
    for _ in range(2):
        engine.predict(images, Ks)
    model, total = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        pred = engine.predict(images, Ks)
        total.append(1e3 * (time.perf_counter() - t0))
        model.append(pred.timings_ms['model'])
    return statistics.median(model), statistics.median(total)


def _node_times(path: Path, images: list[np.ndarray], K: np.ndarray, sets: int, period: float,
                domain: int) -> dict[str, float]:
    import rclpy
    import yaml
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
    from sensor_msgs.msg import CameraInfo, Image, PointCloud2

    from surround_depth_train.data.rosbag import topics
    from surround_depth_ros.messages import camera_messages
    from surround_depth_train.geometry.rig import CameraRig

    rig = CameraRig.from_yaml(resource_path(RIG))
    with tempfile.TemporaryDirectory() as tmp:
        params = Path(tmp) / 'params.yaml'
        params.write_text(yaml.safe_dump({'/**': {'ros__parameters': {
            'model_file': str(path), 'rig_file': str(resource_path(RIG)),
            'diagnostics_period': 0.5, 'timeout': max(1.0, 3 * period)}}}))
        env = dict(os.environ, ROS_DOMAIN_ID=str(domain), FASTDDS_BUILTIN_TRANSPORTS='LARGE_DATA')
        node = subprocess.Popen([sys.executable, '-m', 'surround_depth_ros.node', '--ros-args', '--params-file',
                                 str(params)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        context = rclpy.Context()
        rclpy.init(context=context, domain_id=domain)
        client = rclpy.create_node('surround_depth_bench', context=context)
        lock = threading.Lock()
        clouds, diagnostics = [], []
        reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        client.create_subscription(PointCloud2, topics.CLOUD_TOPIC, lambda m: clouds.append(m), reliable)
        client.create_subscription(DiagnosticArray, topics.DIAGNOSTICS_TOPIC, lambda m: diagnostics.append(m), 10)
        pubs = {c: (client.create_publisher(Image, topics.image_topic(c), qos_profile_sensor_data),
                    client.create_publisher(CameraInfo, topics.camera_info_topic(c), qos_profile_sensor_data))
                for c in rig.names}
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(client)
        spinner = threading.Thread(target=executor.spin, daemon=True)
        spinner.start()
        try:
            end = time.monotonic() + 180
            while not diagnostics and node.poll() is None and time.monotonic() < end:
                time.sleep(0.1)
            if node.poll() is not None or not diagnostics:
                raise RuntimeError(f'the node did not start: {node.stderr.read() if node.poll() is not None else ""}')
            stamp = time.time_ns()
            for k in range(sets + 3):  # three warm-up sets; the last set is proven by the timeout
                t0 = time.monotonic()
                for i, cam in enumerate(rig.names):
                    image, info = camera_messages(images[i], K, stamp + i * 7_000_000, f'{cam}_optical_frame')
                    pubs[cam][1].publish(info)
                    pubs[cam][0].publish(image)
                stamp += int(period * 1e9)
                time.sleep(max(0.0, period - (time.monotonic() - t0)))
            end = time.monotonic() + 60
            while len(clouds) < sets + 3 and time.monotonic() < end:
                time.sleep(0.1)
            time.sleep(1.5)  # one more diagnostics period covers the last set
            with lock:
                values = {}
                for status in diagnostics[-1].status:
                    if status.name.endswith(': pipeline'):
                        values = {kv.key: kv.value for kv in status.values}
            return {k: float(values[k]) for k in ('model_ms_median', 'processing_ms_median', 'sync_wait_ms_median',
                                                  'end_to_end_ms_median', 'dropped_sets', 'sets_published')}
        finally:
            executor.shutdown()
            client.destroy_node()
            rclpy.shutdown(context=context)
            node.terminate()
            try:
                node.wait(10)
            except subprocess.TimeoutExpired:
                node.kill()


def main(argv: list[str] | None = None) -> int:
    from surround_depth_train.allocator import describe_allocator, ensure_allocator_settings

    ensure_allocator_settings()  # the node process gets the same (it re-executes itself with them)
    os.environ.setdefault('FASTDDS_BUILTIN_TRANSPORTS', 'LARGE_DATA')  # both ends: large images over DDS
    parser = argparse.ArgumentParser(prog=prog('surround_depth_ros.bench'), description=__doc__.split('\n')[0])
    parser.add_argument('--models', default='monodepth2_mb,tiny_student_mb')
    parser.add_argument('--sets', type=int, default=12, help='camera sets timed through the node')
    parser.add_argument('--repeats', type=int, default=7, help='timed engine calls')
    parser.add_argument('--size', type=_size, default=(640, 384), help='camera and network size WIDTHxHEIGHT')
    parser.add_argument('--domain', type=int, default=97, help='ROS_DOMAIN_ID of the benchmark')
    parser.add_argument('--period-factor', type=float, default=1.5,
                        help='stream period as a multiple of the engine call (above 1: no set is dropped)')
    args = parser.parse_args(argv)
    import torch

    width, height = args.size
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (height, width, 3), dtype=np.uint8) for _ in range(6)]
    f = width / 2 / np.tan(np.deg2rad(35.0))
    K = np.array([[f, 0.0, (width - 1) / 2], [0.0, f, (height - 1) / 2], [0.0, 0.0, 1.0]])
    print(f'CPU, {torch.get_num_threads()} threads, torch {torch.__version__}; six {width}x{height} cameras; '
          f'allocator: {describe_allocator()}', flush=True)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in [m for m in args.models.split(',') if m]:
            path = _model_file(name, Path(tmp), height, width)
            model_ms, engine_ms = _engine_times(path, images, K, args.repeats)
            print(f'{name}: engine alone {model_ms:.1f} ms model, {engine_ms:.1f} ms whole call; now the node...',
                  flush=True)
            period = max(0.1, args.period_factor * engine_ms / 1e3)
            node = _node_times(path, images, K, args.sets, period, args.domain)
            overhead = node['processing_ms_median'] - node['model_ms_median']
            rows.append((name, model_ms, engine_ms, node, overhead, period))
            print(f'{name}: engine model {model_ms:.1f} ms, engine call {engine_ms:.1f} ms; node model '
                  f'{node["model_ms_median"]:.1f} ms, processing {node["processing_ms_median"]:.1f} ms, sync wait '
                  f'{node["sync_wait_ms_median"]:.1f} ms (stream period {1e3 * period:.0f} ms), dropped '
                  f'{node["dropped_sets"]:.0f}', flush=True)
    print()
    print('| model | engine: model ms | engine: call ms | node: model ms | node: processing ms | overhead ms | '
          'overhead / model | node: sync wait ms | node: end to end ms |')
    print('|---|---:|---:|---:|---:|---:|---:|---:|---:|')
    for name, model_ms, engine_ms, node, overhead, _ in rows:
        print(f'| {name} | {model_ms:.1f} | {engine_ms:.1f} | {node["model_ms_median"]:.1f} | '
              f'{node["processing_ms_median"]:.1f} | {overhead:.1f} | {overhead / node["model_ms_median"]:.1%} | '
              f'{node["sync_wait_ms_median"]:.1f} | {node["end_to_end_ms_median"]:.1f} |')
    target = [r for r in rows if r[0] == 'monodepth2_mb']
    if target:
        name, _, _, node, overhead, _ = target[0]
        ratio = overhead / node['model_ms_median']
        print(f'\nnode overhead with {name}: {overhead:.1f} ms = {ratio:.1%} of its model time (target <= 20 %): '
              f'{"met" if ratio <= 0.2 else "NOT met"}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
