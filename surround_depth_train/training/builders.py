"""Small builders from the typed config: datasets, augmentation, models, teacher, optimiser, scheduler.

Each reads the config and passes explicit keyword arguments; nothing below the builders sees a config object.
Every check that can fail on bad input runs here, before any expensive work.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from surround_depth_train.config import ConfigError
from surround_depth_train.models.registry import create_model, is_registered, list_models
from surround_depth_train.training.config import DataConfig, ModelConfig, OptimConfig, TeacherConfig

__all__ = ['build_dataset', 'build_augmentation', 'build_model', 'build_teacher', 'build_optimizer',
           'build_scheduler', 'dataset_identity', 'check_config']

SPLITS = ('train', 'val', 'test')


def check_config(cfg) -> None:
    """Refuse, before any work, what cannot run: unknown models, missing paths, cache with augmentation."""
    for what, name in (('model.name', cfg.model.name), ('teacher.name', cfg.teacher.name)):
        if (what == 'model.name' or cfg.needs_teacher) and not is_registered(name):
            raise ConfigError(f'{what}: unknown model {name!r}; known models: {", ".join(list_models())}')
    if cfg.data.dataset != 'surroundsim':
        if not cfg.data.root:
            raise ConfigError(f'data.root: the {cfg.data.dataset} dataset needs its root folder; '
                              f'pass data.root=/path/to/{cfg.data.dataset}')
        if not Path(cfg.data.root).is_dir():
            raise ConfigError(f'data.root: {cfg.data.root!r} does not exist; pass the folder that holds the '
                              f'{cfg.data.dataset} dataset')
    if cfg.needs_teacher and cfg.teacher.checkpoint and not Path(cfg.teacher.checkpoint).is_file():
        raise ConfigError(f'teacher.checkpoint: {cfg.teacher.checkpoint!r} does not exist; pass a local '
                          f'Depth Anything checkpoint (or leave it empty for a randomly initialised teacher)')
    if cfg.teacher.cache and (cfg.data.flip or cfg.data.color_jitter > 0):
        raise ConfigError('teacher.cache=true would hand the student teacher outputs computed on un-augmented '
                          'images while it sees augmented ones; set data.flip=false data.color_jitter=0, '
                          'or teacher.cache=false')
    if cfg.model.name.startswith('depth_anything') and cfg.mode == 'student':
        raise ConfigError('mode=student trains a student; to fine-tune the teacher use mode=teacher')
    w, h = cfg.data.image_size
    if w % 32 or h % 32 or min(w, h) < 64:
        raise ConfigError(f'data.image_size: {w}x{h} must be multiples of 32 and at least 64 for the students\' '
                          f'five-level encoders; e.g. 640x384, 640x352, 160x96')


def build_dataset(data: DataConfig, split: str):
    """The dataset of ``split`` at network resolution (unaugmented; augmentation runs in the training view)."""
    if split not in SPLITS:
        raise ValueError(f'split must be one of {SPLITS}, got {split!r}')
    if data.dataset == 'surroundsim':
        from surround_depth_train.data.surroundsim import SurroundSimDataset

        count = data.train_samples if split == 'train' else data.val_samples
        return SurroundSimDataset(split=split, num_samples=count, image_size=tuple(data.image_size),
                                  world=data.world, cache_dir=data.cache_dir)
    raise ConfigError(f'data.dataset={data.dataset!r}: the {data.dataset} loader is not part of this version yet; '
                      f'use data.dataset=surroundsim')


def dataset_identity(data: DataConfig, split: str) -> str:
    return f'{data.dataset}:{split}:{data.root}:{data.world}:{data.train_samples}:{data.val_samples}'


def build_augmentation(data: DataConfig) -> Callable[[dict, int], dict] | None:
    """``augment(sample, seed)``: the configured flip / colour jitter, drawn from ``seed`` only (exact resume)."""
    if not data.flip and data.color_jitter <= 0:
        return None
    from surround_depth_train.data.transforms import AugmentConfig, augment_sample

    config = AugmentConfig(flip_probability=0.5 if data.flip else 0.0, brightness=data.color_jitter,
                           contrast=data.color_jitter, saturation=data.color_jitter)

    def augment(sample: dict, seed: int) -> dict:
        return augment_sample(sample, config, torch.Generator().manual_seed(seed))

    return augment


def build_model(model: ModelConfig, min_depth: float, max_depth: float) -> tuple[nn.Module, dict[str, Any]]:
    """The trainable model and the kwargs that rebuild it (stored in checkpoints)."""
    kwargs = {'min_depth': min_depth, 'max_depth': max_depth, **model.kwargs}
    try:
        net = create_model(model.name, **kwargs)
    except ValueError as exc:
        raise ConfigError(f'model: {exc}') from None
    return net, kwargs


def build_teacher(teacher: TeacherConfig, min_depth: float, max_depth: float) -> tuple[nn.Module, dict[str, Any]]:
    """The teacher and the kwargs that rebuild it (without the checkpoint path: the weights travel in our files).

    ``teacher.checkpoint`` may be one of our model files (e.g. the ``model.pt`` of a ``mode=teacher`` run), an
    official Depth Anything metric checkpoint or a relative ``depth_anything_vit*14.pth`` backbone.
    """
    from surround_depth_train.models.modelfile import ModelFileError, load_model, read_model_file

    if teacher.checkpoint:
        try:
            read_model_file(teacher.checkpoint)
            ours = True
        except ModelFileError:
            ours = False
        if ours:
            net, meta = load_model(teacher.checkpoint)
            if meta['name'] != teacher.name:
                raise ConfigError(f'teacher.checkpoint {teacher.checkpoint!r} holds a {meta["name"]!r} model but '
                                  f'teacher.name is {teacher.name!r}; set teacher.name={meta["name"]}')
            return net, dict(meta['kwargs'])
    kwargs = {'min_depth': min_depth, 'max_depth': max_depth, **teacher.kwargs}
    try:
        net = create_model(teacher.name, **kwargs, **({'checkpoint': teacher.checkpoint} if teacher.checkpoint
                                                      else {}))
    except ValueError as exc:
        raise ConfigError(f'teacher: {exc}') from None
    return net, kwargs


def _is_encoder_param(name: str) -> bool:
    return name.startswith(('encoder.', 'student.encoder.', 'core.pretrained.', 'pretrained.')) or '.encoder.' in name


def build_optimizer(module: nn.Module, optim: OptimConfig) -> torch.optim.Optimizer:
    """AdamW with the encoder at ``lr * encoder_lr_factor`` (pretrained features move slowly)."""
    enc, rest = [], []
    for name, p in module.named_parameters():
        if p.requires_grad:
            (enc if _is_encoder_param(name) else rest).append(p)
    groups = [g for g in ({'params': rest, 'lr': optim.lr},
                          {'params': enc, 'lr': optim.lr * optim.encoder_lr_factor}) if g['params']]
    return torch.optim.AdamW(groups, lr=optim.lr, weight_decay=optim.weight_decay)


def build_scheduler(optimizer: torch.optim.Optimizer, optim: OptimConfig, total_steps: int):
    if optim.scheduler == 'constant':
        return torch.optim.lr_scheduler.ConstantLR(optimizer, factor=1.0, total_iters=0)
    return torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=[g['lr'] for g in optimizer.param_groups], total_steps=max(total_steps, 1),
        pct_start=optim.pct_start, div_factor=optim.div_factor, final_div_factor=optim.final_div_factor,
        cycle_momentum=True, base_momentum=0.85, max_momentum=0.95)
