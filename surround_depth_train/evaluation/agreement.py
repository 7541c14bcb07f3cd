"""How close students are to their teacher, next to how close each is to the LiDAR.

    python -m surround_depth_train.evaluation.agreement --teacher T.pt --students A.pt B.pt ... \\
        --config run/config.yaml [--split test] [--samples N] [data.key=value ...]

Distillation can only help a student by moving it towards the teacher. This measures both halves on one split:
for each model, AbsRel and δ<1.25 against the LiDAR (the evaluation's metric), and for each student the same two
metrics against the teacher's depth on every pixel inside the depth range and the ego mask (the teacher as ground
truth, computed in the same pass). A distilled student that is closer to the teacher than its undistilled twin but not
closer to the LiDAR has learnt what the teacher says without that helping; one that is no closer to the teacher has
not taken it in.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

import torch

from surround_depth_train.command_line import prog
from surround_depth_train.config import ConfigError, load_config
from surround_depth_train.data import schema as S
from surround_depth_train.metrics import MetricsAccumulator
from surround_depth_train.training.config import TrainConfig

__all__ = ['measure_agreement', 'main']


def measure_agreement(teacher: str | Path, students: Sequence[str | Path], *, config: str | Path,
                      overrides: Sequence[str] = (), split: str = 'test', samples: int | None = None,
                      progress: bool = True) -> dict[str, dict]:
    """``{model path: {'lidar': {abs_rel, a1}, 'teacher': {abs_rel, a1} or None}}`` (the teacher's own entry has
    ``'teacher': None``)."""
    from tqdm import tqdm

    from surround_depth_train.models.modelfile import load_model
    from surround_depth_train.training.builders import build_dataset

    cfg = load_config(TrainConfig, config, list(overrides))
    ds = build_dataset(cfg.data, split)
    count = len(ds) if samples is None else min(len(ds), samples)
    lo, hi = float(ds.min_depth), float(ds.max_depth)
    paths = [str(teacher)] + [str(s) for s in students]
    models = {p: load_model(p)[0].eval() for p in paths}
    names = list(ds.camera_names)
    to_lidar = {p: MetricsAccumulator(names) for p in paths}
    to_teacher = {p: MetricsAccumulator(names) for p in paths[1:]}
    with torch.no_grad():
        for i in tqdm(range(count), desc='agreement', unit='set', disable=not progress):
            sample = ds[i]
            images = sample[S.IMAGE]
            depth = {p: m(images, depth_only=True).depth.float() for p, m in models.items()}
            gt, mask = sample[S.DEPTH][None], sample[S.DEPTH_MASK][None]
            reference = depth[paths[0]][None]
            in_range = (reference > lo) & (reference < hi) & sample[S.SELF_MASK][None]
            for p in paths:
                to_lidar[p].add_batch(depth[p][None], gt, lo, hi, masks=mask)
                if p in to_teacher:
                    to_teacher[p].add_batch(depth[p][None], reference, lo, hi, masks=in_range)
    pick = ('abs_rel', 'a1')
    return {p: {'lidar': {k: to_lidar[p].summary()['mean'][k] for k in pick},
                'teacher': None if p not in to_teacher else {k: to_teacher[p].summary()['mean'][k] for k in pick}}
            for p in paths}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=prog('surround_depth_train.evaluation.agreement'), description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--teacher', required=True, help='the teacher\'s model file')
    parser.add_argument('--students', required=True, nargs='+', help='student model files')
    parser.add_argument('--config', required=True, help='a training YAML whose data section describes the split')
    parser.add_argument('--split', default='test')
    parser.add_argument('--samples', type=int, default=None, help='the first N camera sets only')
    parser.add_argument('overrides', nargs='*', help='data.key=value overrides')
    args = parser.parse_args(argv)
    bad = [o for o in args.overrides if not o.startswith('data.')]
    try:
        if bad:
            raise ConfigError(f'overrides {bad}: only data.* keys describe the data')
        result = measure_agreement(args.teacher, args.students, config=args.config, overrides=args.overrides,
                                   split=args.split, samples=args.samples)
    except (ConfigError, FileNotFoundError, ValueError) as exc:
        print(f'error: {exc}', file=sys.stderr)
        return 2
    print('| model | AbsRel vs LiDAR | δ<1.25 vs LiDAR | AbsRel vs teacher | δ<1.25 vs teacher |')
    print('|---|---:|---:|---:|---:|')
    for path, r in result.items():
        t = r['teacher'] or {}
        cells = [f'{t[k]:.4f}' if k in t else '-' for k in ('abs_rel', 'a1')]
        print(f'| {path} | {r["lidar"]["abs_rel"]:.4f} | {r["lidar"]["a1"]:.4f} | {cells[0]} | {cells[1]} |')
    return 0


if __name__ == '__main__':
    sys.exit(main())
