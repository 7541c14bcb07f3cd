"""Training entry point.

    python -m surround_depth_train.train --config config/train/<name>.yaml [key=value ...] [--resume auto|PATH]
    torchrun --nproc_per_node 2 -m surround_depth_train.train --config ...      # DDP (gloo on CPU, NCCL on GPU)

Modes: ``mode=teacher`` fine-tunes the teacher (``loss.teacher_target=lidar|dense``); ``mode=student`` trains a
student, a baseline when every distillation weight is 0, otherwise with any combination of CKD, VRKD and the
Table III baselines. Outputs in ``out_dir``: ``config.yaml`` (resolved), ``checkpoints/last.pt`` (resumable),
``model.pt`` (final), ``val_metrics.json`` and ``val_depth.png``, and TensorBoard logs in ``tb/``.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from surround_depth_train.config import ConfigError, load_config, save_config
from surround_depth_train.data.schema import NUM_CAMERAS, SampleError, validate_sample
from surround_depth_train.distill import DistillationTask, probe
from surround_depth_train.losses import DistillationWeights
from surround_depth_train.training.builders import (build_augmentation, build_dataset, build_model,
                                                    build_optimizer, build_scheduler, build_teacher,
                                                    check_config, dataset_identity)
from surround_depth_train.training.config import TrainConfig
from surround_depth_train.training.distributed import init_distributed
from surround_depth_train.training.hooks import CheckpointHook, TensorBoardHook, ValidationHook
from surround_depth_train.training.teacher_cache import TeacherCache, teacher_cache_key
from surround_depth_train.training.trainer import NonFiniteLossError, Trainer, write_json

__all__ = ['main', 'build_trainer']


def _weights(cfg: TrainConfig) -> DistillationWeights:
    l = cfg.loss
    if cfg.mode == 'teacher':
        return DistillationWeights(sup=l.sup, ckd=0.0, vrkd=0.0)
    return DistillationWeights(sup=l.sup, ckd=l.ckd, vrkd=l.vrkd, kd=l.kd, fitnets=l.fitnets, at=l.at, sp=l.sp)


def build_trainer(cfg: TrainConfig, resume: str | None = None) -> Trainer:
    """Everything a run needs, with every input check done before the first expensive step."""
    check_config(cfg)
    ctx = init_distributed(cfg.device)
    torch.manual_seed(cfg.seed)
    train_set = build_dataset(cfg.data, 'train')
    val_set = build_dataset(cfg.data, 'val')
    try:  # one sample against the schema (six cameras in cyclic order, keys, shapes) before any training work
        validate_sample(train_set[0], NUM_CAMERAS, tuple(cfg.data.image_size))
    except SampleError as exc:
        raise ConfigError(f'the {cfg.data.dataset} dataset yields samples training cannot use: {exc}') from None
    min_depth, max_depth = train_set.min_depth, train_set.max_depth
    teacher, teacher_kwargs = None, {}
    if cfg.mode == 'teacher':
        model, model_kwargs = build_teacher(cfg.teacher, min_depth, max_depth)
        model_name = cfg.teacher.name
    else:
        model, model_kwargs = build_model(cfg.model, min_depth, max_depth)
        model_name = cfg.model.name
        if cfg.needs_teacher:
            teacher, teacher_kwargs = build_teacher(cfg.teacher, min_depth, max_depth)
    model.to(ctx.device)
    if teacher is not None:
        teacher.to(ctx.device)
    fit_channels = None
    if teacher is not None:
        size = tuple(cfg.data.image_size)
        s_out, t_out = probe(model, size), probe(teacher, size)
        if (cfg.loss.ckd > 0 or cfg.loss.vrkd > 0) and s_out.probs is not None and t_out.probs is not None \
                and s_out.probs.shape[1] != t_out.probs.shape[1]:
            ks, kt = s_out.probs.shape[1], t_out.probs.shape[1]
            raise ConfigError(f'the student has {ks} bins and the teacher {kt}; CKD and VRKD pair bins one to one: '
                              f'set model.kwargs.bins.n_bins={kt} or teacher.kwargs.n_bins={ks}')
        if cfg.loss.fitnets > 0:
            fit_channels = ([f.shape[1] for f in s_out.features], [f.shape[1] for f in t_out.features])
    try:
        task = DistillationTask(model, weights=_weights(cfg), min_depth=min_depth, max_depth=max_depth,
                                teacher=teacher, depth_loss=cfg.loss.depth_loss,
                                vrkd_reduction=cfg.loss.vrkd_reduction,
                                target='depth_dense' if cfg.mode == 'teacher' and cfg.loss.teacher_target == 'dense'
                                else 'depth', fitnets_channels=fit_channels).to(ctx.device)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    if ctx.enabled:
        from torch.nn.parallel import DistributedDataParallel as DDP

        if ctx.device.type == 'cuda' and not cfg.model.freeze_bn:
            task.student_side = torch.nn.SyncBatchNorm.convert_sync_batchnorm(task.student_side)
        # the students keep Monodepth2's multi-scale disparity convs (they count in the paper's parameter
        # totals) but train at one scale, so some parameters get no gradient
        task.runner = DDP(task.student_side, device_ids=[ctx.local_rank] if ctx.device.type == 'cuda' else None,
                          find_unused_parameters=True)
    optimizer = build_optimizer(task.student_side, cfg.optim)
    batches = len(train_set) // (cfg.batch_size * ctx.world_size)
    scheduler = build_scheduler(optimizer, cfg.optim, batches * cfg.epochs)
    cache = None
    if cfg.teacher.cache and teacher is not None:
        key = teacher_cache_key(cfg.teacher.name, teacher_kwargs, cfg.teacher.checkpoint,
                                dataset_identity(cfg.data, 'train'), cfg.data.image_size)
        cache = TeacherCache(cfg.teacher.cache_dir or Path(cfg.out_dir) / 'teacher_cache', key)
    out = Path(cfg.out_dir)
    hooks = []
    tb = None
    if ctx.is_main and cfg.tensorboard:
        tb = TensorBoardHook(out / 'tb', cfg.log_every)
        hooks.append(tb)
    hooks += [ValidationHook(cfg.val_every, out, tb), CheckpointHook(cfg.checkpoint_every)]
    trainer = Trainer(cfg=cfg, ctx=ctx, task=task, model_name=model_name, model_kwargs=model_kwargs,
                      train_set=train_set, val_set=val_set, augment=build_augmentation(cfg.data),
                      teacher_cache=cache, optimizer=optimizer, scheduler=scheduler, hooks=hooks,
                      camera_names=list(train_set.camera_names))
    if resume:
        path = out / 'checkpoints' / 'last.pt' if resume == 'auto' else Path(resume)
        if not path.is_file():
            raise ConfigError(f'--resume: no checkpoint at {path}; start without --resume or pass the '
                              f'checkpoints/last.pt of the run to continue')
        trainer.resume(path)
    if ctx.is_main:
        save_config(cfg, out / 'config.yaml')
    return trainer


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog='python -m surround_depth_train.train', description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--config', type=Path, help='YAML config (config/train/*.yaml)')
    parser.add_argument('--resume', nargs='?', const='auto', default=None,
                        help='continue from out_dir/checkpoints/last.pt (or the given checkpoint)')
    parser.add_argument('overrides', nargs='*', help='key=value overrides, e.g. epochs=1 loss.ckd=0')
    args = parser.parse_args(argv)
    if args.resume is not None and '=' in args.resume and not Path(args.resume).exists():
        # `--resume key=value ...`: argparse took the first override as the path
        args.overrides.insert(0, args.resume)
        args.resume = 'auto'
    try:
        cfg = load_config(TrainConfig, args.config, args.overrides)
        trainer = build_trainer(cfg, args.resume)
        trainer.fit()
    except (ConfigError, NonFiniteLossError) as exc:
        print(f'error: {exc}', file=sys.stderr)
        return 2
    if trainer.ctx.is_main:
        state = trainer.state
        result = {'global_step': state.global_step, 'epoch': state.epoch, 'nonfinite_steps': state.nonfinite_total,
                  'stopped_early': trainer.stopped_early, 'val': trainer.last_val}
        write_json(Path(cfg.out_dir) / 'result.json', result)
        print(f'[train] {"stopped" if trainer.stopped_early else "finished"} at step {state.global_step}; '
              f'outputs in {cfg.out_dir}')
    if trainer.ctx.enabled:
        import torch.distributed as dist
        dist.barrier()
        dist.destroy_process_group()
    return 0


if __name__ == '__main__':
    sys.exit(main())
