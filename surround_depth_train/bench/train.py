"""Training throughput: the student alone, with CKD + VRKD (teacher every step), and with the teacher cache.

    python -m surround_depth_train.bench train [--steps 8] [--size 160x96] [--batch 2] [--teacher NAME]

Prints camera sets per second (median step time) and the share of step time spent producing the teacher's
outputs (its forward, or reading the cache), all measured side by side in one run.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from surround_depth_train.config import from_mapping
from surround_depth_train.training.config import TrainConfig

__all__ = ['main', 'measure']


def measure(overrides: dict, steps: int, warmup: int = 2) -> dict:
    from surround_depth_train.train import build_trainer

    cfg = from_mapping(TrainConfig, overrides)
    trainer = build_trainer(cfg)
    teacher_time = [0.0]
    task = trainer.task
    if task.teacher is not None:
        inner = task.teacher_outputs

        def timed_teacher(images):
            t0 = time.perf_counter()
            out = inner(images)
            teacher_time[0] += time.perf_counter() - t0
            return out

        task.teacher_outputs = timed_teacher
        if trainer.teacher_cache is not None:
            cache_get = trainer.teacher_cache.get

            def timed_get(*args, **kwargs):
                t0 = time.perf_counter()
                before = teacher_time[0]
                out = cache_get(*args, **kwargs)
                # the teacher's own forward (cache misses) is already counted inside
                teacher_time[0] = before + (time.perf_counter() - t0)
                return out

            trainer.teacher_cache.get = timed_get
    task.train()
    step_times, teacher_shares = [], []
    epoch = 0
    done = 0
    while done < warmup + steps:
        for batch in trainer._loader(epoch):
            teacher_time[0] = 0.0
            t0 = time.perf_counter()
            trainer.train_step(batch)
            dt = time.perf_counter() - t0
            if done >= warmup:
                step_times.append(dt)
                teacher_shares.append(teacher_time[0] / dt)
            done += 1
            if done >= warmup + steps:
                break
        epoch += 1
    med = statistics.median(step_times)
    return {'step_s': med, 'sets_per_s': cfg.batch_size / med, 'teacher_share': statistics.median(teacher_shares)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog='python -m surround_depth_train.bench train')
    parser.add_argument('--steps', type=int, default=6)
    parser.add_argument('--size', default='160x96', help='network input WxH')
    parser.add_argument('--batch', type=int, default=1, help='camera sets per step')
    parser.add_argument('--student', default='monodepth2_mb')
    parser.add_argument('--teacher', default='depth_anything_vits_metric')
    args = parser.parse_args(argv)
    w, h = (int(v) for v in args.size.split('x'))
    with tempfile.TemporaryDirectory() as tmp:
        samples = (args.steps + 4) * args.batch
        base = {'out_dir': str(Path(tmp) / 'run'), 'batch_size': args.batch, 'tensorboard': False,
                'data': {'image_size': [w, h], 'train_samples': samples, 'val_samples': 1,
                         'cache_dir': str(Path(tmp) / 'render_cache')},
                'model': {'name': args.student}, 'teacher': {'name': args.teacher}}
        rows = []
        plain = measure(dict(base, loss={'ckd': 0.0, 'vrkd': 0.0}), args.steps)
        rows.append(('student, L_sup only', plain))
        kd = measure(dict(base, loss={'ckd': 0.1, 'vrkd': 1.0}), args.steps)
        rows.append(('student + CKD + VRKD (teacher forward)', kd))
        cached_cfg = dict(base, loss={'ckd': 0.1, 'vrkd': 1.0},
                          teacher=dict(base['teacher'], cache=True, cache_dir=str(Path(tmp) / 'tcache')))
        measure(cached_cfg, args.steps + 2, warmup=0)  # fills the cache for every sample used below
        cached = measure(cached_cfg, args.steps)
        rows.append(('student + CKD + VRKD (teacher cache)', cached))
    print(f'training throughput on {torch.get_num_threads()} CPU threads, {args.student} at {w}x{h}, '
          f'{args.batch} camera set(s) x 6 cameras per step, teacher {args.teacher}; median of {args.steps} steps')
    print(f'{"configuration":42s} {"step [s]":>9s} {"sets/s":>8s} {"vs plain":>9s} {"teacher share":>14s}')
    for name, r in rows:
        print(f'{name:42s} {r["step_s"]:9.3f} {r["sets_per_s"]:8.3f} {plain["step_s"] / r["step_s"]:8.2f}x '
              f'{100 * r["teacher_share"]:13.1f}%')
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
