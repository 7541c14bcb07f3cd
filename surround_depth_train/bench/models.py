"""Model latency benchmark on CPU: each student with and without MetricBins, and the Depth Anything teachers.

    python -m surround_depth_train.bench.models [--size 640x384] [--batch 6] [--repeats 3] [--threads N]
                                               [--models monodepth2,hrdepth,monovit] [--teachers vits,vitl]

Students run on ``batch x 3 x H x W`` (one six-camera set by default); the ViT-S teacher on the same input and the
ViT-L teacher on batch 1 (reported per image). Plain and "+ MB" runs of a student alternate, so a change of load
on the machine hits both alike; the table gives median milliseconds per camera set and per image, the head's
cost ratio, parameter counts and the targets:

- the head costs at most 1.5x the plain student (the paper's head costs 3.4x: 3.75 -> 12.77 ms);
- Monodepth2 + MB is at least 15x faster per image than the ViT-L teacher (paper: 11.1x).

Each "+ MB" student runs twice: as deployed (``depth_only=True``: depth alone, like the plain student and like
what the node publishes) and with the bin centers and probabilities written out at full resolution (what training
and distillation read, 2 x 64 extra channels per pixel). The targets are judged on the first; the second ratio is
printed beside it. A missed target is followed by a profile of where the "+ MB" model spends its time.

CPU latency here depends on the memory allocator as much as on the network: glibc returns large freed blocks to
the system, so every forward pass faults its activations in again. The header says which allocator settings
were in effect; ``MALLOC_MMAP_THRESHOLD_`` and ``MALLOC_TRIM_THRESHOLD_`` (or jemalloc/tcmalloc) remove those
faults.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from functools import partial
from typing import Callable

import torch
from torch import nn
from tqdm import tqdm

from surround_depth_train.command_line import prog
from surround_depth_train.allocator import describe_allocator
from surround_depth_train.models.bins import banded
from surround_depth_train.models.registry import create_model, is_registered

__all__ = ['main', 'time_model', 'profile_head']

HEAD_TARGET = 1.5
TEACHER_TARGET = 15.0
TEACHERS = {'vits': 'depth_anything_vits_metric', 'vitl': 'depth_anything_vitl_metric'}


def _size(text: str) -> tuple[int, int]:
    try:
        width, height = (int(v) for v in text.lower().split('x'))
    except ValueError:
        raise argparse.ArgumentTypeError(f'size must be WIDTHxHEIGHT, e.g. 640x384; got {text!r}') from None
    if width <= 0 or height <= 0:
        raise argparse.ArgumentTypeError(f'size must be positive, got {text!r}')
    return width, height


def _params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def time_model(fn: Callable[[], object], repeats: int, warmup: int = 1) -> list[float]:
    """Seconds of ``repeats`` calls of ``fn`` after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def _interleaved(fns: dict[str, Callable[[], object]], repeats: int) -> dict[str, list[float]]:
    for fn in fns.values():
        fn()  # warm-up
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return times


def profile_head(model: nn.Module, images: torch.Tensor, repeats: int = 1, depth_only: bool = True) -> str:
    """Where a student + MetricBins spends its time: encoder, decoder, each head stage, the full-resolution output
    (per forward, summed over the images of the batch), then the head's operators."""
    head = getattr(model, 'metric_bins', None)
    if head is None:
        return 'no MetricBins head to profile'
    parts: dict[str, float] = {}
    calls: dict[str, int] = {}

    def timed(name: str, fn: Callable) -> Callable:
        def wrapper(*args, **kwargs):
            t0 = time.perf_counter()
            out = fn(*args, **kwargs)
            key = name if name != 'head stage' else f'head stage {calls.get(name, 0) % len(head.projectors)}'
            calls[name] = calls.get(name, 0) + 1
            parts[key] = parts.get(key, 0.0) + time.perf_counter() - t0
            return out
        return wrapper

    refine_stage, output_run = banded._refine_stage, banded._OutputPass.run
    model.encoder.forward = timed('encoder', model.encoder.forward)
    model.decoder.forward = timed('decoder', model.decoder.forward)
    banded._refine_stage = timed('head stage', refine_stage)
    banded._OutputPass.run = timed('head full-res output (MLP, log-binomial, C upsampling, D)', output_run)
    try:
        with torch.inference_mode():
            model(images, depth_only=depth_only)  # warm-up
            parts.clear()
            calls.clear()
            total = time_model(lambda: model(images, depth_only=depth_only), repeats, warmup=0)
            per_forward = {name: seconds / repeats for name, seconds in parts.items()}
            inputs = _head_inputs(model, images)
            with torch.profiler.profile() as prof:
                model.metric_bins(*inputs, depth_only=depth_only)
    finally:
        del model.encoder.forward, model.decoder.forward
        banded._refine_stage, banded._OutputPass.run = refine_stage, output_run
    lines = [f'  total forward {1000 * statistics.median(total):8.1f} ms (depth_only={depth_only})']
    for name, seconds in per_forward.items():
        if name.startswith('head stage '):
            stage = int(name.rsplit(' ', 1)[1])
            name = f'{name} (attractors {head.attractors[stage].n_attractors:2d})'
        lines.append(f'  {name:<58s} {1000 * seconds:8.1f} ms')
    table = prof.key_averages().table(sort_by='self_cpu_time_total', row_limit=12)
    return '\n'.join(lines) + '\n  head operators (torch.profiler, one head forward):\n' + table


def _head_inputs(model: nn.Module, images: torch.Tensor) -> tuple:
    features = model.encoder((images - model.pixel_mean) / model.pixel_std)
    decoded = model.decoder(features, images.shape[-2:])
    return features[-1], decoded.features[:-1], decoded.features[-1], decoded.disparities[0]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=prog('surround_depth_train.bench.models'),
                                     description='CPU latency of the students (with and without MetricBins) and '
                                                 'the Depth Anything teachers.')
    parser.add_argument('--size', type=_size, default=(640, 384), help='input WIDTHxHEIGHT (default 640x384)')
    parser.add_argument('--batch', type=int, default=6, help='images per camera set (default 6)')
    parser.add_argument('--repeats', type=int, default=3, help='timed runs per model (median reported)')
    parser.add_argument('--threads', type=int, default=None, help='torch intra-op threads (default: torch default)')
    parser.add_argument('--models', default='monodepth2,hrdepth,monovit',
                        help='comma-separated student names (each is run plain and as NAME_mb)')
    parser.add_argument('--teachers', default='vits,vitl',
                        help="comma-separated teachers out of vits,vitl; '' for none")
    parser.add_argument('--profile', action='store_true', help='print the head profile even when targets are met')
    args = parser.parse_args(argv)
    if args.repeats < 1 or args.batch < 1:
        parser.error('--repeats and --batch must be at least 1')
    if args.threads:
        torch.set_num_threads(args.threads)
    width, height = args.size
    students = [m.strip() for m in args.models.split(',') if m.strip()]
    for name in students:
        for variant in (name, f'{name}_mb'):
            if not is_registered(variant):
                parser.error(f'unknown student {variant!r}; pass names that have a plain and an _mb variant')
    teachers = [t.strip() for t in args.teachers.split(',') if t.strip()]
    unknown = [t for t in teachers if t not in TEACHERS]
    if unknown:
        parser.error(f'unknown teachers {unknown}; choose from {sorted(TEACHERS)}')

    torch.manual_seed(0)
    images = torch.rand(args.batch, 3, height, width)
    print(f'CPU, {torch.get_num_threads()} threads, torch {torch.__version__}; input {args.batch}x3x{height}x{width}, '
          f'{args.repeats} timed runs per model (median), inference_mode, eval; '
          f'allocator: {describe_allocator()}', flush=True)
    rows: list[tuple[str, int, float, float, str]] = []  # name, params, ms/set, ms/image, note
    medians: dict[str, float] = {}
    mb_models: dict[str, nn.Module] = {}
    for name in tqdm(students, desc='students', file=sys.stderr):
        plain, with_head = create_model(name).eval(), create_model(f'{name}_mb').eval()
        runs = {name: partial(plain, images),
                f'{name}_mb': partial(with_head, images),
                f'{name}_mb depth only': partial(with_head, images, depth_only=True)}
        with torch.inference_mode():
            times = _interleaved(runs, args.repeats)
        notes = {f'{name}_mb': 'D, C and P at full resolution',
                 f'{name}_mb depth only': 'D alone, what the node publishes'}
        for variant in runs:
            med = statistics.median(times[variant])
            medians[variant] = med
            model = plain if variant == name else with_head
            rows.append((variant, _params(model), 1000 * med, 1000 * med / args.batch, notes.get(variant, '')))
        mb_models[name] = with_head
        del plain, runs  # free the plain student before the next one is built
    for key in tqdm(teachers, desc='teachers', file=sys.stderr):
        registry_name = TEACHERS[key]
        if not is_registered(registry_name):
            rows.append((registry_name, 0, float('nan'), float('nan'), 'not registered: skipped'))
            continue
        model = create_model(registry_name).eval()
        batch = images if key == 'vits' else images[:1]
        with torch.inference_mode():
            med = statistics.median(time_model(partial(model, batch), args.repeats))
        medians[registry_name] = med / len(batch)  # per image
        rows.append((registry_name, _params(model), 1000 * med if key == 'vits' else float('nan'),
                     1000 * med / len(batch), f'batch {len(batch)}'))
        del model

    print(f'\n{"model":<30s} {"params":>12s} {"ms/set":>10s} {"ms/image":>10s}  note')
    for name, params, per_set, per_image, note in rows:
        print(f'{name:<30s} {params:>12,d} {per_set:>10.1f} {per_image:>10.1f}  {note}')

    print('\ntargets (the head is judged as deployed: depth alone, like the plain student; the ratio with C and P '
          'written out at full resolution is shown beside it):')
    missed = []
    for name in students:
        ratio = medians[f'{name}_mb depth only'] / medians[name]
        full = medians[f'{name}_mb'] / medians[name]
        ok = ratio <= HEAD_TARGET
        print(f'  {name}: head cost {ratio:.2f}x the plain student (target <= {HEAD_TARGET}x, paper 3.4x for '
              f'Monodepth2): {"met" if ok else "MISSED"}; {full:.2f}x with C and P at full resolution')
        if not ok:
            missed.append(name)
    vitl = TEACHERS['vitl']
    if 'monodepth2' in students and vitl in medians:
        speedup = medians[vitl] / (medians['monodepth2_mb depth only'] / args.batch)
        ok = speedup >= TEACHER_TARGET
        print(f'  monodepth2_mb (depth only) is {speedup:.1f}x faster per image than the ViT-L teacher (target >= '
              f'{TEACHER_TARGET}x, paper 11.1x): {"met" if ok else "MISSED"}')
    else:
        print('  teacher speed-up: not measured (needs monodepth2 and the ViT-L teacher)')
    for name in (students if args.profile else missed):
        print(f'\nprofile of {name}_mb (one forward, {torch.get_num_threads()} threads):')
        print(profile_head(mb_models[name], images))
    return 0


if __name__ == '__main__':
    sys.exit(main())
