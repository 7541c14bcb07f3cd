"""Every Table III and Table V configuration, one short epoch each, with the real students and the ViT-S teacher.

    python -m surround_depth_train.bench.table_runs [--size 96 64] [--samples 2] [--students monodepth2_mb ...]

Table III compares the feature- and output-level baselines (KD, FitNets, AT, SP) with the paper's terms; Table V
ablates them (MB, MB + CKD, MB + VRKD, MB + CKD + VRKD). Each configuration trains each "+ MB" student for one
short epoch on SurroundSim against a randomly initialised Depth Anything ViT-S teacher at a small input size and
prints the mean of each loss term it logged, so a reader sees every combination run end to end with finite
losses. It checks that the machinery runs, not the paper's numbers (no weights, a few steps); it times nothing.
"""
from __future__ import annotations

import argparse
import math
import sys
import tempfile
from pathlib import Path

from surround_depth_train.command_line import prog
from surround_depth_train.losses import DistillationWeights

__all__ = ['CONFIGURATIONS', 'main']

#: Table III / V rows -> loss weights (the baselines at weight 1, CKD 0.1 and VRKD 1 as the paper).
CONFIGURATIONS: dict[str, dict[str, float]] = {
    'KD': {'kd': 1.0},
    'FitNets': {'fitnets': 1.0},
    'AT': {'at': 1.0},
    'SP': {'sp': 1.0},
    'MB': {},
    'MB + CKD': {'ckd': 0.1},
    'MB + VRKD': {'vrkd': 1.0},
    'MB + CKD + VRKD': {'ckd': 0.1, 'vrkd': 1.0},
}
TERMS = tuple(name for name, _ in DistillationWeights().items())


def run_one(student: str, weights: dict[str, float], *, size: tuple[int, int], samples: int, out: Path,
            render_cache: Path) -> tuple[int, dict[str, float]]:
    """Train ``student`` one epoch with ``weights``; returns (steps, mean of each logged term)."""
    from surround_depth_train.config import from_mapping
    from surround_depth_train.train import build_trainer
    from surround_depth_train.training.config import TrainConfig
    from surround_depth_train.training.trainer import Hook

    loss = {'ckd': 0.0, 'vrkd': 0.0, **weights}
    cfg = from_mapping(TrainConfig, {
        'mode': 'student', 'out_dir': str(out), 'epochs': 1, 'batch_size': 1, 'seed': 0, 'tensorboard': False,
        'data': {'image_size': list(size), 'train_samples': samples, 'val_samples': 1,
                 'cache_dir': str(render_cache)},
        'model': {'name': student},
        'teacher': {'name': 'depth_anything_vits_metric', 'kwargs': {'input_size': [56, 84]}},
        'loss': loss, 'optim': {'lr': 1e-4, 'scheduler': 'constant'},
    })

    class Record(Hook):
        def __init__(self):
            self.logs: list[dict[str, float]] = []

        def on_step_end(self, trainer, logs):
            self.logs.append(logs)

    trainer = build_trainer(cfg)
    record = Record()
    trainer.hooks.insert(0, record)
    trainer.fit()
    means = {}
    for term in ('loss', *TERMS):
        values = [logs[term] for logs in record.logs if term in logs]
        if values:
            means[term] = sum(values) / len(values)
    return len(record.logs), means


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=prog('surround_depth_train.bench.table_runs'), description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--size', type=int, nargs=2, default=(96, 64), metavar=('W', 'H'))
    parser.add_argument('--samples', type=int, default=2,
                        help='SurroundSim training samples = steps (one camera set of six images per step)')
    parser.add_argument('--students', nargs='+', default=['monodepth2_mb', 'hrdepth_mb', 'monovit_mb'])
    parser.add_argument('--configs', nargs='+', default=list(CONFIGURATIONS), choices=list(CONFIGURATIONS))
    args = parser.parse_args(argv)
    header = ['configuration', 'student', 'steps', 'loss', *TERMS]
    print('| ' + ' | '.join(header) + ' |')
    print('|' + '---|' * len(header), flush=True)
    failed = 0
    with tempfile.TemporaryDirectory() as tmp:
        for config in args.configs:
            for student in args.students:
                out = Path(tmp) / f'{config}_{student}'.replace(' ', '').replace('+', '_')
                steps, means = run_one(student, CONFIGURATIONS[config], size=tuple(args.size),
                                       samples=args.samples, out=out, render_cache=Path(tmp) / 'render_cache')
                finite = steps > 0 and all(math.isfinite(v) for v in means.values())
                failed += not finite
                cells = [config, student, str(steps)] + [f'{means[t]:.4g}' if t in means else '-'
                                                         for t in ('loss', *TERMS)]
                print('| ' + ' | '.join(cells) + ' |' + ('' if finite else '  <- NOT FINITE'), flush=True)
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
