"""Training entry point.

    python -m surround_depth_train.train --config config/train/<name>.yaml [key=value ...] [--resume auto|PATH]
        [--allow-config-change] [--overwrite] [--debug]
    torchrun --nproc_per_node 2 -m surround_depth_train.train --config ...      # DDP (gloo on CPU, NCCL on GPU)

Modes: ``mode=teacher`` fine-tunes the teacher (``loss.teacher_target=lidar|dense``); ``mode=student`` trains a
student, a baseline when every distillation weight is 0, otherwise with any combination of CKD, VRKD and the
Table III baselines. Outputs in ``out_dir``: ``config.yaml`` (resolved), ``checkpoints/last.pt`` (resumable),
``model.pt`` (the deployable model: weights, model info, training rig; no optimiser state), ``val_metrics.json``,
``val_history.json`` and ``val_depth.png``, and TensorBoard logs in ``tb/``.

A mistake in the config, the data or the checkpoint to resume ends in one ``error: ...`` line and exit status 2
(``--debug`` shows the traceback instead), before anything is written. An ``out_dir`` that holds a run's outputs is
not trained into again without ``--resume`` (continue it) or ``--overwrite`` (start over: its outputs are removed).
"""
from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import torch

from surround_depth_train.command_line import prog
from surround_depth_train.config import ConfigError, from_mapping, load_config, save_config, to_mapping
from surround_depth_train.data.schema import NUM_CAMERAS, SampleError, validate_sample
from surround_depth_train.distill import DistillationTask, describe_features, pair_features, probe
from surround_depth_train.losses import DistillationWeights
from surround_depth_train.output_path import check_output_dir
from surround_depth_train.training.builders import (build_augmentation, build_dataset, build_model,
                                                    build_optimizer, build_scheduler, build_teacher,
                                                    check_config, dataset_identity, encoder_of)
from surround_depth_train.training.checkpoint import config_differences, read_resume_checkpoint
from surround_depth_train.training.config import TrainConfig
from surround_depth_train.training.distributed import init_distributed
from surround_depth_train.training.hooks import CheckpointHook, TensorBoardHook, ValidationHook
from surround_depth_train.training.teacher_cache import TeacherCache, expected_cache_bytes, teacher_cache_key
from surround_depth_train.training.trainer import NonFiniteLossError, Trainer, write_json

__all__ = ['main', 'build_trainer', 'check_resume', 'check_out_dir']

#: What a run writes in its out_dir (``--overwrite`` removes them; ``config.yaml`` is rewritten anyway and a teacher
#: cache is keyed by what it holds, so both stay).
RUN_OUTPUTS = ('model.pt', 'checkpoints/last.pt', 'result.json', 'val_metrics.json', 'val_depth.png',
               'val_history.json', 'tb')


def _weights(cfg: TrainConfig) -> DistillationWeights:
    """The loss weights of the run: fine-tuning the teacher has no distillation term."""
    return DistillationWeights(**{name: getattr(cfg.loss, name) if cfg.mode == 'student' or name == 'sup' else 0.0
                                  for name, _ in DistillationWeights().items()})


def _resume_path(cfg: TrainConfig, resume: str) -> Path:
    return Path(cfg.out_dir) / 'checkpoints' / 'last.pt' if resume == 'auto' else Path(resume)


def check_resume(cfg: TrainConfig, resume: str, allow_config_change: bool = False) -> tuple[Path, dict]:
    """Read the checkpoint to resume and compare its saved config with ``cfg``, before anything is built.

    Returns:
        ``(path, checkpoint)``.

    Raises:
        ConfigError: the checkpoint is missing, empty, truncated or foreign, or its config differs from ``cfg`` in a
            key that changes the trajectory (unless ``allow_config_change``; then a warning says the run is no
            longer an exact continuation).
    """
    path = _resume_path(cfg, resume)
    data = read_resume_checkpoint(path)
    try:
        saved = to_mapping(from_mapping(TrainConfig, data['config']))
    except ConfigError as exc:
        raise ConfigError(f'--resume: the config saved in {path} does not fit this version ({exc}); resume with '
                          f'the version that wrote it, or start a new run') from None
    diffs = config_differences(saved, to_mapping(cfg))
    if diffs and not allow_config_change:
        raise ConfigError(f'--resume: the config differs from the one {path} was trained with in '
                          f'{"; ".join(diffs)}; an exact resume needs the same values (the run\'s config.yaml), or '
                          f'pass --allow-config-change to continue anyway (no longer an exact resume)')
    if diffs:
        print(f'warning: resuming {path} with a changed config ({"; ".join(diffs)}): the run is no longer an '
              f'exact continuation of the original', file=sys.stderr)
    return path, data


def check_out_dir(cfg: TrainConfig, resume: str | None, overwrite: bool) -> None:
    """Refuse an ``out_dir`` that cannot be written, and one that holds a run's model or checkpoint unless the run
    resumes it or ``overwrite`` starts over; before anything is built."""
    out = check_output_dir(cfg.out_dir, 'out_dir')
    if resume is not None or overwrite:
        return
    previous = [name for name in ('model.pt', 'checkpoints/last.pt') if (out / name).is_file()]
    if previous:
        raise ConfigError(f'out_dir: {out} holds the outputs of a run ({", ".join(previous)}); pass --resume to '
                          f'continue it, --overwrite to start over in it (its outputs are removed), or set out_dir '
                          f'to a new folder')


def _remove_previous_outputs(out: Path) -> None:
    for name in RUN_OUTPUTS:
        path = out / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


def _feature_pairs(cfg: TrainConfig, model, teacher, s_out, t_out) -> list[tuple[int, int]]:
    size = tuple(cfg.data.image_size)
    student_feats, teacher_feats = describe_features(model, s_out, size), describe_features(teacher, t_out, size)
    try:
        return pair_features(student_feats, teacher_feats, cfg.loss.feature_pairs)
    except ValueError as exc:
        raise ConfigError(f'loss.feature_pairs: {exc}') from None


def _teacher_cache(cfg: TrainConfig, task: DistillationTask, teacher_kwargs: dict, t_out, samples: int,
                   is_main: bool) -> TeacherCache:
    fields = task.teacher_fields
    key = teacher_cache_key(cfg.teacher.name, teacher_kwargs, cfg.teacher.checkpoint,
                            dataset_identity(cfg.data, 'train'), cfg.data.image_size, fields, task.feature_pairs)
    root = Path(cfg.teacher.cache_dir or Path(cfg.out_dir) / 'teacher_cache')
    t_out.features = [t_out.features[j] for _, j in task.feature_pairs]
    size = expected_cache_bytes(t_out, samples, NUM_CAMERAS, fields)
    existing = root if root.exists() else next((p for p in root.parents if p.exists()), Path('.'))
    free = shutil.disk_usage(existing).free
    if size > free:
        raise ConfigError(f'teacher.cache: the cache of {", ".join(fields)} for {samples} samples would take '
                          f'{size / 1e9:.2f} GB but {existing} has {free / 1e9:.2f} GB free; set '
                          f'teacher.cache_dir to a larger disk, lower data.image_size or data.train_samples, or '
                          f'set teacher.cache=false')
    if is_main:
        print(f'[train] teacher cache: {", ".join(fields)} (fp16) for {samples} samples x {NUM_CAMERAS} cameras '
              f'at {cfg.data.image_size[0]}x{cfg.data.image_size[1]}: {size / 1e9:.2f} GB in {root / key}',
              flush=True)
    return TeacherCache(root, key, fields)


def build_trainer(cfg: TrainConfig, resume: str | None = None, allow_config_change: bool = False,
                  overwrite: bool = False) -> Trainer:
    """Everything a run needs, with every input check done before the first expensive step; ``overwrite`` removes
    the outputs of a previous run in ``out_dir`` once every check has passed."""
    check_config(cfg)
    resumed = check_resume(cfg, resume, allow_config_change) if resume else None
    try:
        ctx = init_distributed(cfg.device)
    except RuntimeError as exc:
        raise ConfigError(f'device: {exc}') from None
    torch.manual_seed(cfg.seed)
    train_set = build_dataset(cfg.data, 'train')
    val_set = build_dataset(cfg.data, 'val')
    try:  # one sample against the schema (six cameras in cyclic order, keys, shapes) before any training work
        validate_sample(train_set[0], NUM_CAMERAS, tuple(cfg.data.image_size))
    except SampleError as exc:
        raise ConfigError(f'the {cfg.data.dataset} dataset yields samples training cannot use: {exc}') from None
    sets_per_step = cfg.batch_size * ctx.world_size
    if len(train_set) < sets_per_step:
        raise ConfigError(f'the {cfg.data.dataset} train split has {len(train_set)} samples, fewer than the '
                          f'{sets_per_step} camera sets of one step (batch_size={cfg.batch_size} x '
                          f'{ctx.world_size} processes), so an epoch has no full batch; lower batch_size or use '
                          f'more training data')
    if len(val_set) == 0:
        raise ConfigError(f'the {cfg.data.dataset} val split is empty; name its scenes (data.val_scenes) or '
                          f'samples (data.val_samples)')
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
    weights = _weights(cfg)
    pairs, fit_channels, t_out = [], None, None
    if teacher is not None:
        size = tuple(cfg.data.image_size)
        s_out, t_out = probe(model, size), probe(teacher, size)
        if (cfg.loss.ckd > 0 or cfg.loss.vrkd > 0) and s_out.probs is not None and t_out.probs is not None \
                and s_out.probs.shape[1] != t_out.probs.shape[1]:
            ks, kt = s_out.probs.shape[1], t_out.probs.shape[1]
            raise ConfigError(f'the student has {ks} bins and the teacher {kt}; CKD and VRKD pair bins one to one: '
                              f'set model.kwargs.bins.n_bins={kt} or teacher.kwargs.n_bins={ks}')
        if weights.features:
            pairs = _feature_pairs(cfg, model, teacher, s_out, t_out)
            fit_channels = ([s_out.features[i].shape[1] for i, _ in pairs],
                            [t_out.features[j].shape[1] for _, j in pairs])
    try:
        task = DistillationTask(model, weights=weights, min_depth=min_depth, max_depth=max_depth,
                                teacher=teacher, depth_loss=cfg.loss.depth_loss,
                                vrkd_reduction=cfg.loss.vrkd_reduction,
                                target='depth_dense' if cfg.mode == 'teacher' and cfg.loss.teacher_target == 'dense'
                                else 'depth', feature_pairs=pairs, fitnets_channels=fit_channels,
                                ckd_mask=cfg.loss.ckd_mask).to(ctx.device)
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
    optimizer = build_optimizer(task.student_side, encoder_of(task.student), cfg.optim)
    batches = len(train_set) // (cfg.batch_size * ctx.world_size)
    scheduler = build_scheduler(optimizer, cfg.optim, batches * cfg.epochs)
    cache = None
    if cfg.teacher.cache:
        cache = _teacher_cache(cfg, task, teacher_kwargs, t_out, len(train_set), ctx.is_main)
    out = Path(cfg.out_dir)
    if overwrite and ctx.is_main and resumed is None:
        _remove_previous_outputs(out)
    hooks = []
    tb = None
    if ctx.is_main and cfg.tensorboard:
        tb = TensorBoardHook(out / 'tb', cfg.log_every)
        hooks.append(tb)
    hooks += [ValidationHook(cfg.val_every, out, tb), CheckpointHook(cfg.checkpoint_every)]
    w, h = cfg.data.image_size
    trainer = Trainer(task=task, ctx=ctx, model_name=model_name, model_kwargs=model_kwargs, input_size=(h, w),
                      train_set=train_set, val_set=val_set, optimizer=optimizer, scheduler=scheduler, out_dir=out,
                      epochs=cfg.epochs, batch_size=cfg.batch_size, seed=cfg.seed, precision=cfg.precision,
                      grad_clip=cfg.optim.grad_clip, max_nonfinite=cfg.max_nonfinite, freeze_bn=cfg.model.freeze_bn,
                      num_workers=cfg.data.num_workers, stop_after_steps=cfg.stop_after_steps,
                      augment=build_augmentation(cfg.data), teacher_cache=cache, hooks=hooks,
                      camera_names=list(train_set.camera_names), config=to_mapping(cfg))
    if resumed is not None:
        trainer.resume(*resumed)
    if ctx.is_main:
        save_config(cfg, out / 'config.yaml')
    return trainer


def peak_rss_gb() -> float:
    """The largest resident set size (GB) of this process and of the children it waited for (loader workers)."""
    import resource

    return max(resource.getrusage(who).ru_maxrss for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)) \
        * 1024 / 1e9


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=prog('surround_depth_train.train'), description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--config', type=Path, help='YAML config (config/train/*.yaml)')
    parser.add_argument('--resume', nargs='?', const='auto', default=None,
                        help='continue from out_dir/checkpoints/last.pt (or the given checkpoint); the config must '
                             'match the one it was trained with in every key that changes the trajectory')
    parser.add_argument('--allow-config-change', action='store_true',
                        help='with --resume: continue although the config changed (no longer an exact resume)')
    parser.add_argument('--overwrite', action='store_true',
                        help='train into an out_dir that holds a previous run, removing its outputs')
    parser.add_argument('--debug', action='store_true', help='show the traceback of an error')
    parser.add_argument('overrides', nargs='*', help='key=value overrides, e.g. epochs=1 loss.ckd=0')
    args = parser.parse_args(argv)
    if args.resume is not None and '=' in args.resume and not Path(args.resume).exists():
        # `--resume key=value ...`: argparse took the first override as the path
        args.overrides.insert(0, args.resume)
        args.resume = 'auto'
    try:
        cfg = load_config(TrainConfig, args.config, args.overrides)
        check_out_dir(cfg, args.resume, args.overwrite)
        trainer = build_trainer(cfg, args.resume, args.allow_config_change, args.overwrite)
        trainer.fit()
    except (ConfigError, NonFiniteLossError) as exc:
        if args.debug:
            raise
        print(f'error: {exc}', file=sys.stderr)
        return 2
    if trainer.ctx.is_main:
        state = trainer.state
        result = {'global_step': state.global_step, 'epoch': state.epoch, 'nonfinite_steps': state.nonfinite_total,
                  'stopped_early': trainer.stopped_early, 'val': trainer.last_val,
                  'wall_s': trainer.wall_s,  # every resumed part added up
                  'peak_rss_gb': peak_rss_gb()}  # this process (the last part of a resumed run) and its workers
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
