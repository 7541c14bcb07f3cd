"""Peak memory of every training command the README shows: each runs as its own process for a few steps.

    python -m surround_depth_train.bench memory [--steps 3] [--only teacher --only student_kd ...] [--json out.json]
        [--limit-gb 16] [key=value ...]

Each configuration is the README's command plus ``stop_after_steps=N`` into a temporary ``out_dir``; its peak
resident set size is the ``ru_maxrss`` that ``wait4`` reports for that process (the largest of it and the
children it waited for, e.g. loader workers). A distillation command whose ``teacher.checkpoint`` (a teacher run's
``model.pt``) does not exist yet runs with a randomly initialised teacher of the same architecture: the same
memory. Trailing ``key=value`` overrides go to every command (e.g. a smaller ``data.image_size`` for a smoke test).
The nuScenes / DDAD commands need their datasets and are not run here. Exit status 1 when a command fails or
needs more than ``--limit-gb``.
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from surround_depth_train.command_line import prog
from surround_depth_train.resources import resolve_path

__all__ = ['COMMANDS', 'measure', 'main']

#: The README's training commands (section "Training"): name -> the arguments after ``-m surround_depth_train.train``.
COMMANDS: dict[str, list[str]] = {
    'teacher': ['--config', 'config/train/surroundsim_teacher.yaml'],
    'student_baseline': ['--config', 'config/train/surroundsim_student_baseline.yaml'],
    'student_kd': ['--config', 'config/train/surroundsim_student_kd.yaml', 'epochs=2', 'loss.vrkd_reduction=pixel'],
}


def _teacher_checkpoint(args: list[str]) -> str | None:
    from surround_depth_train.config import load_config
    from surround_depth_train.training.config import TrainConfig

    cfg = load_config(TrainConfig, args[1], args[2:])
    return cfg.teacher.checkpoint if cfg.needs_teacher else None


def measure(args: list[str], *, steps: int, out_dir: Path, log: Path) -> dict:
    """Run ``train`` with ``args`` for ``steps`` steps; returns ``{'peak_rss_gb', 'wall_s', 'status', 'note'}``."""
    note = ''
    checkpoint = _teacher_checkpoint(args)
    if checkpoint and not Path(checkpoint).is_file():
        args = [*args, 'teacher.checkpoint=null']
        note = f'random teacher ({checkpoint} not there yet)'
    cmd = [sys.executable, '-m', 'surround_depth_train.train', *args, f'stop_after_steps={steps}',
           f'out_dir={out_dir}', 'tensorboard=false']
    start = time.perf_counter()
    with open(log, 'w') as f:
        f.write(f'$ {shlex.join(cmd)}\n')
        f.flush()
        proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, env=os.environ.copy())
        _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return {'peak_rss_gb': usage.ru_maxrss * 1024 / 1e9, 'wall_s': time.perf_counter() - start,
            'status': proc.returncode, 'note': note, 'command': shlex.join(['train', *args])}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=prog('surround_depth_train.bench') + ' memory', description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--steps', type=int, default=3, help='training steps per command (default 3)')
    parser.add_argument('--only', action='append', choices=sorted(COMMANDS), help='this command only (repeatable)')
    parser.add_argument('--limit-gb', type=float, default=16.0, help='flag commands above this peak (default 16)')
    parser.add_argument('--json', type=Path, help='also write the table as JSON')
    parser.add_argument('overrides', nargs='*', help='key=value overrides for every command')
    args = parser.parse_intermixed_args(argv)
    if args.steps < 1:
        print(f'error: --steps {args.steps}: run at least one step', file=sys.stderr)
        return 2
    names = args.only or list(COMMANDS)
    rows = {}
    with tempfile.TemporaryDirectory(prefix='bench_memory_') as tmp:
        for name in names:
            cmd = [COMMANDS[name][0], str(resolve_path(COMMANDS[name][1])), *COMMANDS[name][2:], *args.overrides]
            rows[name] = measure(cmd, steps=args.steps, out_dir=Path(tmp) / name, log=Path(tmp) / f'{name}.log')
            rows[name]['command'] = shlex.join(['train', *COMMANDS[name], *args.overrides])  # as the README has it
            if rows[name]['status'] != 0:
                tail = (Path(tmp) / f'{name}.log').read_text().splitlines()[-5:]
                rows[name]['note'] = (rows[name]['note'] + '; ' if rows[name]['note'] else '') + ' / '.join(tail)
            r = rows[name]
            print(f'{name:18s} peak RSS {r["peak_rss_gb"]:6.2f} GB  {r["wall_s"]:6.1f} s  exit {r["status"]}'
                  f'{"  " + r["note"] if r["note"] else ""}', flush=True)
    print(f'\n| command | peak RSS ({args.steps} steps) | fits {args.limit_gb:g} GB |\n|---|---|---|')
    for name, r in rows.items():
        fits = 'failed' if r['status'] else ('yes' if r['peak_rss_gb'] <= args.limit_gb else '**no**')
        print(f'| `{r["command"]}` | {r["peak_rss_gb"]:.2f} GB | {fits} |')
    if args.json is not None:
        args.json.write_text(json.dumps(rows, indent=2))
    return int(any(r['status'] or r['peak_rss_gb'] > args.limit_gb for r in rows.values()))


if __name__ == '__main__':
    sys.exit(main())
