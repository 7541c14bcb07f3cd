"""The end-to-end demo on built-in data: ``python -m surround_depth_train.demo --out outputs/demo``.

Stages (each writes pictures next to its numbers in ``--out``):

1. ``world``: SurroundSim renders a short 10 Hz sequence of one street; a contact sheet per frame shows the six
   images, dense depth and the ego-motion-compensated LiDAR depth (``world/sheet_*.png``).
2. ``cloud``: the dense depth of all six cameras of one frame lifted into one base_link cloud through the rig
   (``cloud_bev.png``), the cloud the ROS node publishes.
3. ``distill``: the paper's pipeline at toy scale on CPU: fine-tune the Depth Anything teacher on SurroundSim's
   dense depth, train the student (Monodepth2 + MetricBins) on LiDAR alone (baseline), and again with CKD + VRKD
   from the fine-tuned teacher; ``results.md`` holds the metrics of all three and ``Delta_T`` of the distilled
   student against the baseline; ``comparison.png`` shows the predictions side by side.

``--quick`` swaps in the tiny test models and a few steps (used by the test suite).
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

import surround_depth_train
from surround_depth_train.command_line import prog
from surround_depth_train.geometry import rig_depth_to_cloud
from surround_depth_train.metrics import METRIC_NAMES, delta_t
from surround_depth_train.visualize import colorize_depth, label, mosaic, save_png

__all__ = ['main', 'run_world_stage', 'run_cloud_stage', 'run_distill_stage']


def run_world_stage(out: Path, seed: int, frames: int, size: tuple[int, int]) -> None:
    from surround_depth_train.data.surroundsim.__main__ import main as surroundsim_main

    surroundsim_main(['sheet', '--out', str(out / 'world'), '--seed', str(seed), '--frames', str(frames),
                      '--size', f'{size[0]}x{size[1]}'])


def run_cloud_stage(out: Path, size: tuple[int, int]) -> int:
    from surround_depth_train.data.surroundsim import SurroundSimDataset

    ds = SurroundSimDataset('val', 1, size)
    sample = ds[0]
    depths = [d[0].numpy() for d in sample['depth_dense']]
    colors = [(im.permute(1, 2, 0).numpy() * 255).astype(np.uint8) for im in sample['image']]
    cloud = rig_depth_to_cloud(depths, ds.rig, masks=[m[0].numpy() for m in sample['self_mask']], stride=2,
                               colors=colors)
    _plot_bev(cloud, ds.rig.names, out / 'cloud_bev.png')
    return len(cloud['points'])


def _plot_bev(cloud: dict, names: list[str], path: Path) -> None:
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(13, 6.5), dpi=100)
    pts = cloud['points']
    near = np.linalg.norm(pts[:, :2], axis=1) < 60
    for i, name in enumerate(names):
        sel = (cloud['camera'] == i) & near
        axes[0].scatter(pts[sel, 0], pts[sel, 1], s=0.3, label=name)
    axes[0].legend(markerscale=12, loc='upper right', fontsize=8)
    axes[0].set_title('fused cloud by camera (base_link, top view)')
    axes[1].scatter(pts[near, 0], pts[near, 1], s=0.3, c=cloud['rgb'][near] / 255.0)
    axes[1].set_title('fused cloud in camera colours')
    for ax in axes:
        ax.set_aspect('equal')
        ax.set_xlim(-60, 60)
        ax.set_ylim(-60, 60)
        ax.set_xlabel('x forward [m]')
        ax.set_ylabel('y left [m]')
    tmp = path.with_name(f'.{path.name}.tmp.png')
    fig.savefig(tmp)
    plt.close(fig)
    os.replace(tmp, path)


def _run(overrides: dict):
    from surround_depth_train.config import from_mapping
    from surround_depth_train.train import build_trainer
    from surround_depth_train.training.config import TrainConfig

    trainer = build_trainer(from_mapping(TrainConfig, overrides))
    trainer.fit()
    return trainer


def _distill_configs(out: Path, quick: bool, scale: dict | None = None) -> tuple[dict, dict, dict]:
    scale = scale or {}
    data = {'image_size': [96, 64] if quick else [160, 96],
            'train_samples': scale.get('train_samples', 8 if quick else 48),
            'val_samples': scale.get('val_samples', 2 if quick else 8), 'cache_dir': str(out / 'render_cache')}
    teacher = ({'name': 'depth_anything_tiny_metric', 'kwargs': {'input_size': [42, 56], 'n_bins': 16}} if quick
               else {'name': 'depth_anything_vits_metric', 'kwargs': {'input_size': [98, 168]}})
    student = ({'name': 'tiny_student_mb', 'kwargs': {'bins': {'n_bins': 16}}} if quick
               else {'name': 'monodepth2_mb'})
    common = {'epochs': 1 if quick else 4, 'batch_size': 2, 'seed': 0, 'tensorboard': not quick, 'data': data,
              'optim': {'lr': 1e-3 if quick else 3e-4, 'encoder_lr_factor': 1.0 if quick else 0.3}}
    if 'student_epochs' in scale:
        common['epochs'] = scale['student_epochs']
    teacher_run = dict(common, mode='teacher', epochs=scale.get('teacher_epochs', common['epochs']),
                       out_dir=str(out / 'runs' / 'teacher'), teacher=teacher, loss={'teacher_target': 'dense'})
    baseline = dict(common, mode='student', out_dir=str(out / 'runs' / 'student_baseline'), model=student,
                    loss={'ckd': 0.0, 'vrkd': 0.0})
    distilled = dict(common, mode='student', out_dir=str(out / 'runs' / 'student_ckd_vrkd'), model=student,
                     teacher=dict(name=teacher['name'], checkpoint=str(out / 'runs' / 'teacher' / 'model.pt'),
                                  cache=True),
                     loss={'ckd': 0.1, 'vrkd': 1.0})
    return teacher_run, baseline, distilled


def run_distill_stage(out: Path, quick: bool, scale: dict | None = None) -> dict:
    """Teacher, baseline and distilled student; ``scale`` may set ``train_samples``, ``val_samples``,
    ``teacher_epochs`` and ``student_epochs`` (the whole-chain demo's time budget)."""
    teacher_cfg, baseline_cfg, distilled_cfg = _distill_configs(out, quick, scale)
    results = {}
    trainers = {}
    for name, cfg in (('teacher (fine-tuned)', teacher_cfg), ('student baseline', baseline_cfg),
                      ('student + CKD + VRKD', distilled_cfg)):
        print(f'[distill] training {name} -> {cfg["out_dir"]}', flush=True)
        trainer = _run(cfg)
        trainers[name] = trainer
        results[name] = trainer.last_val['mean']
    base = results['student baseline']
    lines = ['| model | ' + ' | '.join(METRIC_NAMES) + ' | Delta_T vs baseline (%) |',
             '|---' * (len(METRIC_NAMES) + 2) + '|']
    for name, m in results.items():
        dt = 'n/a' if name.startswith('teacher') else f'{delta_t(m, base):+.2f}'
        lines.append(f'| {name} | ' + ' | '.join(f'{m[k]:.3f}' for k in METRIC_NAMES) + f' | {dt} |')
    table = '\n'.join(lines)
    (out / 'results.md').write_text(
        f'# surround-depth demo on SurroundSim (validation split, LiDAR GT, scale-aware, no median scaling)\n\n'
        f'{table}\n\nConfigs: {", ".join(str(t.out_dir / "config.yaml") for t in trainers.values())}\n')
    _comparison_picture(trainers, out / 'comparison.png')
    return {'table': table, 'results': results}


def _comparison_picture(trainers: dict, path: Path) -> None:
    import torch

    val = next(iter(trainers.values())).val_set
    sample = val[0]
    lo, hi = val.min_depth, val.max_depth
    rows = [[(np.clip(im.permute(1, 2, 0).numpy(), 0, 1) * 255).astype(np.uint8) for im in sample['image']],
            [label(colorize_depth(d[0].numpy(), lo, hi), 'dense GT') for d in sample['depth_dense']]]
    for name, trainer in trainers.items():
        model = trainer.task.student.eval()
        with torch.no_grad():
            depth = model(sample['image'].to(trainer.ctx.device), depth_only=True).depth.float().cpu()
        rows.append([label(colorize_depth(d[0].numpy(), lo, hi), name) for d in depth])
    save_png(path, mosaic(rows))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog=prog('surround_depth_train.demo'),
        description='Run surround-depth end to end on built-in synthetic data (SurroundSim) and write pictures '
                    'and numbers.',
        epilog=f'surround_depth_train {surround_depth_train.__version__} from '
               f'{Path(surround_depth_train.__file__).parent}')
    parser.add_argument('--out', type=Path, default=Path('outputs/demo'), help='output folder')
    parser.add_argument('--seed', type=int, default=0, help='SurroundSim scene seed of the contact sheets')
    parser.add_argument('--frames', type=int, default=3, help='frames of the rendered sequence')
    parser.add_argument('--stages', default='world,cloud,distill', help='comma-separated subset to run')
    parser.add_argument('--quick', action='store_true', help='tiny models and few steps (smoke test)')
    args = parser.parse_args(argv)
    stages = {s.strip() for s in args.stages.split(',') if s.strip()}
    unknown = stages - {'world', 'cloud', 'distill'}
    if unknown:
        parser.error(f'unknown stage(s) {sorted(unknown)}; choose from world, cloud, distill')
    from surround_depth_train.config import ConfigError
    from surround_depth_train.output_path import check_output_dir

    try:
        if args.frames < 1:
            raise ConfigError(f'--frames {args.frames}: render at least one frame')
        check_output_dir(args.out, '--out')
    except ConfigError as exc:
        print(f'error: {exc}', file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    size = (160, 96) if args.quick else (640, 384)
    if 'world' in stages:
        run_world_stage(args.out, args.seed, args.frames, size)
    if 'cloud' in stages:
        n = run_cloud_stage(args.out, size)
        print(f'[cloud] fused {n} points from six cameras -> {args.out / "cloud_bev.png"}')
    if 'distill' in stages:
        summary = run_distill_stage(args.out, args.quick)
        print(summary['table'])
        print(f'[distill] wrote {args.out / "results.md"} and {args.out / "comparison.png"}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
