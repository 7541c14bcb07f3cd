"""Training checkpoints: the model file format plus optimiser, scheduler, scaler, RNG and progress state.

A training checkpoint is a model file (see :mod:`surround_depth_train.models.modelfile`) with extra keys, so
evaluation, export and the node load it like any model file. A run's ``checkpoints/last.pt`` is one; its
``model.pt`` is the deployable model file (weights, model info, training rig) without the training state
(``Trainer.save_model_file``). Everything in it is a tensor or a plain type, so it
loads with ``torch.load(weights_only=True)``; it is written atomically (temp file + rename), so a crash while
saving leaves the previous checkpoint intact.

``--resume`` promises the weights of an uninterrupted run, so the resolved config saved in the checkpoint is
compared with the current one before anything is built (:func:`config_differences`): every key that changes the
trajectory must match; :data:`RESUME_EXEMPT` keys (where outputs go, how often to log, validate and save, loader
workers, caches, device) may change.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import torch

from surround_depth_train.config import ConfigError
from surround_depth_train.models.modelfile import ModelFileError, read_model_file, save_model
from surround_depth_train.training.rng import capture_rng_state

__all__ = ['save_training_checkpoint', 'load_training_state', 'read_resume_checkpoint', 'config_differences',
           'RESUME_EXEMPT']

#: Config keys (last dotted component) a resumed run may change: they do not change the trajectory.
RESUME_EXEMPT = ('out_dir', 'stop_after_steps', '*_every', 'tensorboard', 'num_workers', 'cache_dir', 'device')
TRAINING_KEYS = ('optimizer', 'rng', 'epoch', 'batch_in_epoch', 'global_step', 'config')


def save_training_checkpoint(path: str | Path, *, model: torch.nn.Module, name: str, kwargs: dict,
                             input_size: tuple[int, int], optimizer: torch.optim.Optimizer, scheduler: Any,
                             scaler: Any, epoch: int, batch_in_epoch: int, global_step: int, nonfinite: int,
                             aux_state: dict | None, config: dict, training_rig: Any = None) -> None:
    """Write a resumable checkpoint atomically. ``epoch``/``batch_in_epoch`` point at the next batch to train.

    ``training_rig``: the training dataset's :class:`~surround_depth_train.geometry.rig.CameraRig` (or None),
    recorded at ``input_size`` so that the node can check its cameras' focal lengths against it.
    """
    extra = {
        'optimizer': optimizer.state_dict(),
        'scheduler': scheduler.state_dict() if scheduler is not None else None,
        'scaler': scaler.state_dict() if scaler is not None and scaler.is_enabled() else None,
        'rng': capture_rng_state(),
        'epoch': int(epoch), 'batch_in_epoch': int(batch_in_epoch), 'global_step': int(global_step),
        'nonfinite': int(nonfinite),
        'aux_state': aux_state or {},
        'config': config,
    }
    save_model(path, model, name=name, kwargs=kwargs, input_size=input_size, extra=extra, training_rig=training_rig)


def load_training_state(path: str | Path) -> dict[str, Any]:
    """Read a training checkpoint (``weights_only=True``) and check it holds the training keys."""
    data = read_model_file(path)
    missing = [k for k in TRAINING_KEYS if k not in data]
    if missing:
        raise ValueError(f'{path} is a model file but not a training checkpoint (missing {missing}); '
                         f'to start from its weights, set model.kwargs.pretrained or train without --resume')
    return data


def read_resume_checkpoint(path: str | Path) -> dict[str, Any]:
    """:func:`load_training_state` for ``--resume``: every way the file can be unusable is a one-line ConfigError."""
    path = Path(path)
    fix = 'start without --resume, or pass the checkpoints/last.pt of the run to continue'
    if not path.is_file():
        raise ConfigError(f'--resume: no checkpoint at {path}; {fix}')
    if path.stat().st_size == 0:
        raise ConfigError(f'--resume: {path} is empty (0 bytes), not a checkpoint; {fix}')
    try:
        return load_training_state(path)
    except ModelFileError as exc:
        cause = exc.__cause__
        if cause is not None:  # torch.load failed: truncated, or not a torch file at all
            text = str(cause).strip()
            first = text.splitlines()[0].split('. ')[0].rstrip('.') if text else type(cause).__name__
            raise ConfigError(f'--resume: {path} cannot be read as a checkpoint (truncated or not a torch file: '
                              f'{first}); {fix}') from None
        raise ConfigError(f'--resume: {path} is not a training checkpoint of this project '
                          f'({str(exc).splitlines()[0]}); {fix}') from None
    except ValueError as exc:
        raise ConfigError(f'--resume: {exc}') from None


def _flatten(mapping: Mapping[str, Any], prefix: str = '') -> dict[str, Any]:
    flat = {}
    for key, value in mapping.items():
        dotted = f'{prefix}{key}'
        if isinstance(value, Mapping):  # an empty mapping (no kwargs) has no leaves, like an absent one
            flat.update(_flatten(value, dotted + '.'))
        else:
            flat[dotted] = list(value) if isinstance(value, tuple) else value
    return flat


def _exempt(key: str) -> bool:
    last = key.rsplit('.', 1)[-1]
    return any(last.endswith(pattern[1:]) if pattern.startswith('*') else last == pattern
               for pattern in RESUME_EXEMPT)


def config_differences(saved: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """``'key: saved -> current'`` for every differing key that changes the trajectory (both resolved configs).

    Keys matched by :data:`RESUME_EXEMPT` (on their last dotted component) are left out.
    """
    a, b = _flatten(saved), _flatten(current)
    diffs = []
    for key in sorted(set(a) | set(b)):
        if _exempt(key):
            continue
        old, new = a.get(key, '<absent>'), b.get(key, '<absent>')
        if old != new:
            diffs.append(f'{key}: {old!r} -> {new!r}')
    return diffs
