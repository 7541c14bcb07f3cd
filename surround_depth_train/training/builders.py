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
           'build_scheduler', 'dataset_identity', 'check_config', 'encoder_of']

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
        root = Path(cfg.data.root)
        if not (root.exists() if cfg.data.dataset == 'rosbag' else root.is_dir()):
            raise ConfigError(f'data.root: {cfg.data.root!r} does not exist; pass the folder that holds the '
                              f'{cfg.data.dataset} dataset' + (' (a bag, or a folder of bags)'
                                                               if cfg.data.dataset == 'rosbag' else ''))
    if cfg.needs_teacher and cfg.teacher.checkpoint and not Path(cfg.teacher.checkpoint).is_file():
        raise ConfigError(f'teacher.checkpoint: {cfg.teacher.checkpoint!r} does not exist; pass a local '
                          f'Depth Anything checkpoint (or leave it empty for a randomly initialised teacher)')
    if cfg.teacher.cache and not cfg.needs_teacher:
        raise ConfigError(f'teacher.cache=true but no loss term reads the teacher (mode={cfg.mode}, every '
                          f'distillation weight 0); set teacher.cache=false')
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

        count = {'train': data.train_samples, 'val': data.val_samples,
                 'test': data.test_samples or data.val_samples}[split]
        from surround_depth_train.data.surroundsim.lidar import LidarConfig

        lidar = None if data.lidar_beams is None else LidarConfig(beams=data.lidar_beams)
        try:
            return SurroundSimDataset(split=split, num_samples=count, image_size=tuple(data.image_size),
                                      world=data.world, cache_dir=data.cache_dir, seed_offset=data.seed_offset,
                                      frames_per_scene=data.frames_per_scene, lidar=lidar)
        except ValueError as exc:
            raise ConfigError(f'data: {exc}') from None
    surroundsim_only = {'seed_offset': 0, 'frames_per_scene': 4, 'lidar_beams': None}
    changed = [k for k, v in surroundsim_only.items() if getattr(data, k) != v]
    if changed:
        raise ConfigError(f'data.{changed[0]} applies to SurroundSim only (data.dataset={data.dataset}); remove it')
    if data.dataset == 'rosbag':
        return _build_rosbag_dataset(data, split)
    return _build_real_dataset(data, split)


def _build_rosbag_dataset(data: DataConfig, split: str):
    """Bags as data, read by the code the node and the bag evaluators share (:mod:`surround_depth_train.data.rosbag`:
    rosbags, no rclpy, no import of ``surround_depth_ros``), so training runs where ROS 2 is not installed.
    ``data.train_scenes`` / ``val_scenes`` pick bags of a folder by name (None: every bag, in every split)."""
    if not data.root or not Path(data.root).exists():
        raise ConfigError(f'data.root: {data.root!r} does not exist; pass a bag or a folder of bags '
                          f'(python -m surround_depth_ros.convert writes one)')
    for key in ('masks', 'depth_root'):
        if getattr(data, key) is not None:
            raise ConfigError(f'data.{key} is a DDAD option; for bags give data.mask_files (one image per camera)')
    from surround_depth_train.data.rosbag.dataset import RosbagDataset
    from surround_depth_train.data.rosbag.reader import BagInputError
    from surround_depth_train.data.rosbag.topic_map import load_topic_map

    topic_map = load_topic_map(data.topic_map)
    if data.mask_files:
        topic_map.mask_files = list(data.mask_files)
    try:
        return RosbagDataset(data.root, bags=data.train_scenes if split == 'train' else data.val_scenes,
                             image_size=tuple(data.image_size), max_depth=data.max_depth or 80.0,
                             native_depth=data.native_depth and split != 'train', topic_map=topic_map)
    except (BagInputError, ValueError) as exc:
        raise ConfigError(str(exc)) from None


def _build_real_dataset(data: DataConfig, split: str):
    """nuScenes / DDAD: ``test`` is the official val split (neither test split has public GT)."""
    which = 'train' if split == 'train' else 'val'
    kwargs = dict(split=(data.train_split if which == 'train' else data.val_split) or which,
                  scenes=data.train_scenes if which == 'train' else data.val_scenes,
                  image_size=tuple(data.image_size), native_depth=data.native_depth and split != 'train')
    if data.max_depth is not None:
        kwargs['max_depth'] = data.max_depth
    if not data.root:
        raise ConfigError(f'data.root: the {data.dataset} dataset needs its root folder; pass '
                          f'data.root=/path/to/{data.dataset}')
    for key in ('masks', 'depth_root'):
        value = getattr(data, key)
        if value is not None and data.dataset != 'ddad':
            raise ConfigError(f'data.{key} is a DDAD option (SurroundDepth\'s files); remove it for {data.dataset}')
        if value is not None and not Path(value).is_dir():
            raise ConfigError(f'data.{key}: {value!r} does not exist; pass the folder of SurroundDepth\'s '
                              f'{"masks" if key == "masks" else "preprocessed depth"} or leave it empty')
    if data.dataset == 'nuscenes':
        from surround_depth_train.data.nuscenes import NuScenesDataset

        return NuScenesDataset(data.root, version=data.version, **kwargs)
    if data.dataset == 'ddad':
        from surround_depth_train.data.ddad import DDADDataset

        return DDADDataset(data.root, masks=data.masks, depth_root=data.depth_root, **kwargs)
    raise ConfigError(f'data.dataset={data.dataset!r}: unknown dataset; use surroundsim, nuscenes or ddad')


def dataset_identity(data: DataConfig, split: str) -> str:
    ident = f'{data.dataset}:{split}:{data.root}:{data.world}:{data.train_samples}:{data.val_samples}'
    if data.dataset != 'surroundsim':  # which samples a real dataset yields
        ident += (f':{data.version}:{data.train_split}:{data.val_split}:{data.train_scenes}:{data.val_scenes}'
                  f':{data.max_depth}:{data.masks}:{data.depth_root}')
    if data.dataset == 'rosbag':
        ident += f':{data.topic_map}:{data.mask_files}'
    return ident


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


def encoder_of(model: nn.Module) -> nn.Module:
    """The pretrained feature extractor of a depth model, found by module, not by parameter name.

    A student's ``encoder`` (ResNet-18, MPViT, any timm backbone) or the Depth Anything teacher's ViT
    (``pretrained``), whether the model is trained itself (``mode=teacher``) or sits inside a wrapper.
    """
    for attribute in ('encoder', 'pretrained'):
        module = getattr(model, attribute, None)
        if isinstance(module, nn.Module):
            return module
    raise ConfigError(f'cannot tell the encoder of {type(model).__name__}: optim.encoder_lr_factor needs a model '
                      f'with an `encoder` (students) or `pretrained` (Depth Anything ViT) module')


def build_optimizer(module: nn.Module, encoder: nn.Module, optim: OptimConfig) -> torch.optim.Optimizer:
    """AdamW over ``module``'s trainable parameters; those of ``encoder`` (one of its submodules, see
    :func:`encoder_of`) at ``lr * encoder_lr_factor`` (pretrained features move slowly), the rest at ``lr``."""
    in_encoder = {id(p) for p in encoder.parameters()}
    enc, rest = [], []
    for p in module.parameters():
        if p.requires_grad:
            (enc if id(p) in in_encoder else rest).append(p)
    if in_encoder and not enc and any(p.requires_grad for p in encoder.parameters()):
        raise ValueError('the encoder given to build_optimizer is not part of the module it optimises')
    groups = [g for g in ({'params': rest, 'lr': optim.lr, 'name': 'decoder_head'},
                          {'params': enc, 'lr': optim.lr * optim.encoder_lr_factor, 'name': 'encoder'})
              if g['params']]
    return torch.optim.AdamW(groups, lr=optim.lr, weight_decay=optim.weight_decay)


def build_scheduler(optimizer: torch.optim.Optimizer, optim: OptimConfig, total_steps: int):
    if optim.scheduler == 'constant':
        return torch.optim.lr_scheduler.ConstantLR(optimizer, factor=1.0, total_iters=0)
    return torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=[g['lr'] for g in optimizer.param_groups], total_steps=max(total_steps, 1),
        pct_start=optim.pct_start, div_factor=optim.div_factor, final_div_factor=optim.final_div_factor,
        cycle_momentum=True, base_momentum=0.85, max_momentum=0.95)
