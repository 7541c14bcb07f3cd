"""Convert nuScenes, DDAD or SurroundSim to a rosbag2 that ``ros2 bag play`` replays into the node and RViz.

    python -m surround_depth_ros.convert nuscenes --root data/nuscenes --version v1.0-mini --scenes scene-0061 --out BAG
    python -m surround_depth_ros.convert ddad --root data/ddad/ddad_train_val --split val --scenes 000150 --out BAG
    python -m surround_depth_ros.convert surroundsim --frames 50 --out BAG
    common: [--storage mcap|sqlite3] [--depth] (LiDAR GT depth topics); nuScenes and DDAD: [--images compressed|raw]

Raw data at native resolution, in the topic layout of ``surround_depth_train.data.rosbag.topics``, every message at
its own sensor's stamp, TF and odometry at every sensor stamp (see ``surround_depth_ros.bag.scene``). Scenes follow one
another in the bag, each with its own odom origin. The rig (cameras and LiDAR mount) of the first scene is written
beside the bag's data as ``<BAG>/rig.yaml``; missing parent folders of ``--out`` are created. Broken files are skipped and counted; the bag is closed in every case,
so it opens and holds every message written before a failure. Exit status 2 with a one-line message on bad input.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from surround_depth_ros.bag.scene import write_scene
from surround_depth_ros.bag.writer import BagError, BagWriter
from surround_depth_train.command_line import prog
from surround_depth_train.config import ConfigError
from surround_depth_train.output_path import check_output_dir

__all__ = ['main', 'convert']


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog('surround_depth_ros.convert'), description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest='dataset', required=True)

    def common(p: argparse.ArgumentParser, images: str | None) -> None:
        p.add_argument('--out', required=True, type=Path, help='the bag directory to create')
        p.add_argument('--storage', choices=('mcap', 'sqlite3'), default='mcap')
        if images is None:  # SurroundSim renders raw pixels: there are no stored JPEGs to pass through
            p.set_defaults(images='raw')
        else:
            p.add_argument('--images', choices=('compressed', 'raw'), default=images,
                           help=f'/<cam>/image_raw/compressed (as stored) or /<cam>/image_raw (default {images})')
        p.add_argument('--depth', action='store_true', help='also write /<cam>/depth_gt/image (LiDAR GT, 32FC1)')

    n = sub.add_parser('nuscenes', help='nuScenes through the devkit')
    n.add_argument('--root', required=True, help='nuScenes folder (v1.0-*/, samples/, sweeps/, maps/)')
    n.add_argument('--version', default='v1.0-mini')
    n.add_argument('--split', default=None, help='train / val / a devkit split (default: every scene)')
    n.add_argument('--scenes', nargs='*', default=None, help='scene names, e.g. scene-0061')
    n.add_argument('--keyframes-only', action='store_true', help='2 Hz key frames only (default: every sweep)')
    common(n, 'compressed')
    d = sub.add_parser('ddad', help='DDAD in the DGP layout')
    d.add_argument('--root', required=True, help='the folder of ddad.json')
    d.add_argument('--split', default='val', choices=('train', 'val'))
    d.add_argument('--scenes', nargs='*', default=None, help='scene folders, e.g. 000150')
    d.add_argument('--depth-root', default=None, help="SurroundDepth's preprocessed depth (for --depth)")
    common(d, 'raw')
    s = sub.add_parser('surroundsim', help='a procedural SurroundSim drive')
    s.add_argument('--frames', type=int, default=20)
    s.add_argument('--size', default='640x384', help='WIDTHxHEIGHT of the cameras')
    s.add_argument('--world', default=None, help='world YAML (config/surroundsim/*.yaml)')
    s.add_argument('--split', default='val', choices=('train', 'val', 'test'),
                   help='which streets (SurroundSim\'s splits have disjoint scene seeds; default val)')
    s.add_argument('--seed-offset', type=int, default=0)
    common(s, None)
    return parser


def _scenes(args: argparse.Namespace):
    """Yields ``(name, rig, events)`` per scene."""
    if args.dataset == 'nuscenes':
        from surround_depth_ros.bag.nuscenes import NuScenesScenes
        from surround_depth_train.data.nuscenes import open_nuscenes

        source = NuScenesScenes(open_nuscenes(args.root, args.version), split=args.split, scenes=args.scenes)
        for name in source.names:
            yield name, source.rig(name), source.events(name, keyframes_only=args.keyframes_only,
                                                        compressed=args.images == 'compressed', depth=args.depth)
    elif args.dataset == 'ddad':
        from surround_depth_ros.bag.ddad import DDADScenes

        source = DDADScenes(args.root, split=args.split, scenes=args.scenes, depth_root=args.depth_root)
        for name in source.names:
            yield name, source.rig(name), source.events(name, compressed=args.images == 'compressed',
                                                        depth=args.depth)
    else:
        from surround_depth_ros.bag.surroundsim import SurroundSimDrive

        if args.frames < 1:
            raise ConfigError(f'--frames {args.frames}: write at least one frame')
        try:
            w, h = (int(v) for v in args.size.lower().split('x'))
        except ValueError:
            raise ConfigError(f'--size {args.size!r}: expected WIDTHxHEIGHT, e.g. 640x384') from None
        drive = SurroundSimDrive(frames=args.frames, image_size=(w, h), world=args.world, split=args.split,
                                 seed_offset=args.seed_offset)
        yield drive.name, drive.rig(), drive.events(depth=args.depth)


def convert(args: argparse.Namespace) -> dict:
    """Run one conversion; returns ``{'counts': {topic: n}, 'skipped': n, 'problems': [...], 'scenes': [...]}``."""
    if args.out.exists():
        raise ConfigError(f'--out {args.out} already exists; choose a new --out path or remove the old bag')
    check_output_dir(args.out, '--out')
    scenes = _scenes(args)
    first = next(scenes)  # bad roots, versions and scene names fail here, before the bag exists
    summary = {'counts': {}, 'skipped': 0, 'problems': [], 'scenes': []}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with BagWriter(args.out, storage=args.storage) as writer:
        first[1].to_yaml(args.out / 'rig.yaml')  # written atomically: complete or absent
        try:
            for name, rig, events in [first, *scenes]:
                stats = write_scene(writer, rig, events, progress=name, total=len(events), depth=args.depth)
                summary['skipped'] += stats.skipped
                summary['problems'] += stats.problems
                summary['scenes'].append(name)
        finally:
            summary['counts'] = dict(writer.counts)
    return summary


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        summary = convert(args)
    except (ConfigError, BagError) as exc:
        print(f'error: {exc}', file=sys.stderr)
        return 2
    total = sum(summary['counts'].values())
    print(f'[convert] wrote {total} messages on {len(summary["counts"])} topics from {len(summary["scenes"])} '
          f'scene(s) to {args.out} ({args.storage}); rig in {args.out / "rig.yaml"}')
    if summary['skipped']:
        print(f'[convert] skipped {summary["skipped"]} broken message(s); first: {summary["problems"][0]}',
              file=sys.stderr)
    return 0


if __name__ == '__main__':
    sys.exit(main())
