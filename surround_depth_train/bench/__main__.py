"""Dispatch ``python -m surround_depth_train.bench <name> [args]`` to ``surround_depth_train.bench.<name>``."""
from __future__ import annotations

import importlib
import sys

from surround_depth_train.command_line import prog

BENCHMARKS = {
    'render': 'SurroundSim rendering rate and per-stage times',
    'models': 'student / head / teacher latencies on CPU and the head cost ratio',
    'train': 'training throughput with and without distillation, teacher share of step time',
    'onnx': 'six-camera set latency on CPU: torch as deployed vs the ONNX Runtime export, and their ratio',
    'precision': 'fp32 / bf16 torch and fp32 / int8 ONNX Runtime on CPU: latency, speed and test-split accuracy',
    'memory': 'peak RSS of each README training command (a few steps each, one process each)',
}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ('-h', '--help') or (argv[0] not in BENCHMARKS and argv[0] != 'all'):
        print(f'usage: {prog("surround_depth_train.bench")} {{{"|".join(BENCHMARKS)}|all}} [args]')
        for name, what in BENCHMARKS.items():
            print(f'  {name:9s} {what}')
        return 0 if argv and argv[0] in ('-h', '--help') else 2
    names = list(BENCHMARKS) if argv[0] == 'all' else [argv[0]]
    code = 0
    for name in names:
        print(f'==== bench {name} ====', flush=True)
        module = importlib.import_module(f'surround_depth_train.bench.{name}')
        code |= int(module.main(argv[1:] if len(names) == 1 else []) or 0)
    return code


if __name__ == '__main__':
    sys.exit(main())
