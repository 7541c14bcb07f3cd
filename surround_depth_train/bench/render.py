"""SurroundSim rendering benchmark: samples per second and per-stage times.

    python -m surround_depth_train.bench.render [--size 640x384] [--samples 5] [--threads N] [--world YAML]

Stages (median over the timed samples, after one warm-up sample): ``world`` (scene generation), ``ego`` (poses and
the transform buffer), ``cameras`` (six ray-cast images with dense depth, masks), ``lidar`` (the sweep),
``projection`` (LiDAR -> per-camera sparse depth with ego-motion compensation), ``schema`` (numpy payload ->
torch sample), ``total``.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch

from surround_depth_train.command_line import prog
from surround_depth_train.data.surroundsim.__main__ import _size
from surround_depth_train.data.surroundsim.dataset import payload_to_sample, render_sample
from surround_depth_train.data.surroundsim.rig import surroundsim_rig
from surround_depth_train.data.surroundsim.world import generate_world, load_world_config

__all__ = ['benchmark', 'main']

STAGES = ('world', 'ego', 'cameras', 'lidar', 'projection', 'schema', 'total')


def benchmark(size: tuple[int, int] = (640, 384), samples: int = 5, world: str | None = None,
              seed: int = 0) -> dict[str, float]:
    """Median seconds per stage over ``samples`` renders (distinct scenes) after one warm-up render."""
    config = load_world_config(world)
    rig = surroundsim_rig(*size)
    times: dict[str, list[float]] = {k: [] for k in STAGES}
    for i in range(samples + 1):
        t0 = time.perf_counter()
        w = generate_world(config, seed + i)
        t1 = time.perf_counter()
        stage: dict[str, float] = {}
        payload = render_sample(w, rig, frame=i % 10, timings=stage)
        t2 = time.perf_counter()
        payload_to_sample(payload, rig)
        t3 = time.perf_counter()
        if i == 0:
            continue  # warm-up
        stage.update(world=t1 - t0, schema=t3 - t2, total=t3 - t0)
        for k in STAGES:
            times[k].append(stage[k])
    return {k: statistics.median(v) for k, v in times.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=prog('surround_depth_train.bench.render'),
                                     description='Time SurroundSim rendering of six-camera samples.')
    parser.add_argument('--size', type=_size, default=(640, 384), help='image size WIDTHxHEIGHT (default 640x384)')
    parser.add_argument('--samples', type=int, default=5, help='timed samples (after one warm-up)')
    parser.add_argument('--threads', type=int, default=None, help='torch intra-op threads (default: torch default)')
    parser.add_argument('--world', default=None, help='world YAML (default settings if unset)')
    args = parser.parse_args(argv)
    if args.samples < 1:
        parser.error('--samples must be >= 1')
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    w, h = args.size
    print(f'SurroundSim render benchmark: 6 x {h} x {w}, {args.samples} samples, '
          f'{torch.get_num_threads()} torch thread(s)')
    med = benchmark(args.size, args.samples, args.world)
    for k in STAGES:
        print(f'  {k:<11s} {med[k] * 1000:9.1f} ms')
    print(f'samples/s: {1.0 / med["total"]:.2f}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
