"""SurroundSim command line.

    python -m surround_depth_train.data.surroundsim sheet --out DIR [--seed S] [--frames N] [--world YAML]
    python -m surround_depth_train.data.surroundsim rig --out config/rigs/surroundsim.yaml

``sheet`` renders frames ``0..N-1`` of one scene and writes per frame a contact sheet PNG (row 1: the six images;
row 2: dense depth; row 3: LiDAR depth over the images, ego-motion compensated) plus the rig YAML.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from tqdm import tqdm

from surround_depth_train.command_line import prog
from surround_depth_train.data.surroundsim.dataset import MAX_DEPTH, MIN_DEPTH, payload_to_sample, render_sample
from surround_depth_train.data.surroundsim.rig import surroundsim_rig
from surround_depth_train.data.surroundsim.world import generate_world, load_world_config
from surround_depth_train.visualize import colorize_depth, label, mosaic, overlay_sparse_depth, save_png

__all__ = ['contact_sheet', 'main']


def contact_sheet(payload: dict[str, np.ndarray], names: list[str]) -> np.ndarray:
    """Three rows of six tiles: images, dense depth, LiDAR depth overlaid (uint8 RGB)."""
    n, h, w = payload['image'].shape[:3]
    sparse = np.zeros(n * h * w, np.float32)
    sparse[payload['sparse_index']] = payload['sparse_value']
    sparse = sparse.reshape(n, h, w)
    radius = 1 if w >= 320 else 0
    rows = [
        [label(payload['image'][i], f'{names[i]}  t={payload["stamps"][i]:.3f}s') for i in range(n)],
        [label(colorize_depth(payload['depth_dense'][i], MIN_DEPTH, MAX_DEPTH), 'dense depth') for i in range(n)],
        [label(overlay_sparse_depth(payload['image'][i] // 2, sparse[i], MIN_DEPTH, MAX_DEPTH, radius),
               f'lidar {int((sparse[i] > 0).sum())} px') for i in range(n)],
    ]
    return mosaic(rows)


def _sheet(args: argparse.Namespace) -> int:
    out = Path(args.out)
    config = load_world_config(args.world)
    width, height = args.size
    rig = surroundsim_rig(width, height)
    world = generate_world(config, args.seed)
    rig.to_yaml(out / 'surroundsim_rig.yaml')
    for frame in tqdm(range(args.frames), desc='rendering', unit='frame'):
        payload = render_sample(world, rig, frame)
        payload_to_sample(payload, rig)  # the schema view must build from what we render
        path = out / f'sheet_seed{args.seed}_frame{frame:03d}.png'
        save_png(path, contact_sheet(payload, rig.names))
        tqdm.write(f'wrote {path}')
    print(f'wrote {args.frames} contact sheet(s) and {out / "surroundsim_rig.yaml"}')
    return 0


def _rig(args: argparse.Namespace) -> int:
    width, height = args.size
    surroundsim_rig(width, height).to_yaml(args.out)
    print(f'wrote {args.out}')
    return 0


def _size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split('x'))
    except ValueError:
        raise argparse.ArgumentTypeError(f'expected WIDTHxHEIGHT such as 640x384, got {text!r}') from None
    if w < 8 or h < 8:
        raise argparse.ArgumentTypeError(f'image size must be at least 8x8, got {text!r}')
    return w, h


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=prog('surround_depth_train.data.surroundsim'),
                                     description='SurroundSim: render contact sheets, write the rig YAML.')
    sub = parser.add_subparsers(dest='command', required=True)
    p = sub.add_parser('sheet', help='render a short sequence and write contact sheet PNGs + the rig YAML')
    p.add_argument('--out', required=True, help='output directory')
    p.add_argument('--seed', type=int, default=0, help='scene seed')
    p.add_argument('--frames', type=int, default=3, help='number of 10 Hz frames')
    p.add_argument('--world', default=None, help='world YAML (config/surroundsim/*.yaml); default settings if unset')
    p.add_argument('--size', type=_size, default=(640, 384), help='image size WIDTHxHEIGHT (default 640x384)')
    p.set_defaults(func=_sheet)
    r = sub.add_parser('rig', help='write the SurroundSim rig YAML')
    r.add_argument('--out', default='config/rigs/surroundsim.yaml')
    r.add_argument('--size', type=_size, default=(640, 384))
    r.set_defaults(func=_rig)
    args = parser.parse_args(argv)
    if getattr(args, 'frames', 1) < 1:
        parser.error('--frames must be >= 1')
    return args.func(args)


if __name__ == '__main__':
    sys.exit(main())
