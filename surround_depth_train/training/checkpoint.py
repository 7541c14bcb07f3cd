"""Training checkpoints: the model file format plus optimiser, scheduler, scaler, RNG and progress state.

A training checkpoint is a model file (see :mod:`surround_depth_train.models.modelfile`) with extra keys, so
evaluation, export and the node load it like any model file. Everything in it is a tensor or a plain type, so it
loads with ``torch.load(weights_only=True)``; it is written atomically (temp file + rename), so a crash while
saving leaves the previous checkpoint intact.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from surround_depth_train.models.modelfile import read_model_file, save_model
from surround_depth_train.training.rng import capture_rng_state

__all__ = ['save_training_checkpoint', 'load_training_state']


def save_training_checkpoint(path: str | Path, *, model: torch.nn.Module, name: str, kwargs: dict,
                             input_size: tuple[int, int], optimizer: torch.optim.Optimizer, scheduler: Any,
                             scaler: Any, epoch: int, batch_in_epoch: int, global_step: int, nonfinite: int,
                             aux_state: dict | None, config: dict) -> None:
    """Write a resumable checkpoint atomically. ``epoch``/``batch_in_epoch`` point at the next batch to train."""
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
    save_model(path, model, name=name, kwargs=kwargs, input_size=input_size, extra=extra)


def load_training_state(path: str | Path) -> dict[str, Any]:
    """Read a training checkpoint (``weights_only=True``) and check it holds the training keys."""
    data = read_model_file(path)
    missing = [k for k in ('optimizer', 'rng', 'epoch', 'batch_in_epoch', 'global_step') if k not in data]
    if missing:
        raise ValueError(f'{path} is a model file but not a training checkpoint (missing {missing}); '
                         f'to start from its weights, set model.kwargs.pretrained or train without --resume')
    return data
