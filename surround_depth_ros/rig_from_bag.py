"""Write the rig of a recorded bag: ``python -m surround_depth_ros.rig_from_bag BAG --out rig.yaml [--topic-map F]``.

Each camera's ``K``, size and distortion come from its first ``camera_info``, its mount ``base_link <- optical`` from
``/tf_static`` (or sensor transforms on ``/tf``), the LiDAR's mount from the frame of its clouds likewise; cameras
in the topic map's order (default: every ``/<cam>/camera_info`` in the bag). The file is what the node's
``rig_file`` and the training configs take. Exit status 2 with one line on bad input; the file is written
atomically (complete or absent).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from surround_depth_train.command_line import prog
from surround_depth_train.output_path import check_output_file

__all__ = ['main', 'rig_from_bag']


def rig_from_bag(bag: str | Path, topic_map=None):
    """The :class:`~surround_depth_train.geometry.rig.CameraRig` of ``bag`` (module docstring)."""
    from surround_depth_train.data.rosbag.reader import BagSource

    with BagSource(bag, topic_map) as source:
        ctx = source.read_context(lidar=False)
        return source.rig(ctx)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=prog('surround_depth_ros.rig_from_bag'), description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('bag', type=Path)
    parser.add_argument('--out', required=True, type=Path, help='the rig YAML to write')
    parser.add_argument('--topic-map', type=Path, help='YAML topic map for bags in other layouts')
    args = parser.parse_args(argv)
    from surround_depth_train.data.rosbag.reader import BagInputError
    from surround_depth_train.data.rosbag.topic_map import load_topic_map
    from surround_depth_train.config import ConfigError

    try:
        check_output_file(args.out, '--out')
        rig = rig_from_bag(args.bag, load_topic_map(args.topic_map))
        args.out.parent.mkdir(parents=True, exist_ok=True)
        rig.to_yaml(args.out)
    except (BagInputError, ConfigError) as exc:
        print(f'error: {exc}', file=sys.stderr)
        return 2
    lidar = f'; LiDAR {rig.lidar.frame_id}' if rig.lidar is not None else '; no LiDAR in the bag'
    print(f'[rig_from_bag] {len(rig)} cameras {rig.names}{lidar} -> {args.out}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
