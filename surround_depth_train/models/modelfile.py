"""The one model file format, used by training, evaluation, the ROS node and export.

A model file is a plain dict that loads with ``torch.load(path, weights_only=True)``:

=================  ==============================================================================
key                value
=================  ==============================================================================
``format``         ``'surround_depth_model'``
``format_version`` :data:`MODEL_FORMAT_VERSION` (int)
``name``           registry name, e.g. ``'monodepth2_mb'``
``kwargs``         constructor kwargs (plain types; ``pretrained`` is dropped: the weights are here)
``input_size``     ``[height, width]`` the model was trained / is meant to run at
``normalisation``  ``{'mean': [r, g, b], 'std': [r, g, b]}`` applied inside the model (for reference)
``depth_range``    ``[min_depth, max_depth]`` metres
``head``           ``None`` or ``{'type': 'metric_bins', 'n_bins': K, 'bin_centers_type': ...}``
``state_dict``     the model's state dict
=================  ==============================================================================

A training checkpoint is the same dict with more keys (``optimizer``, ``scheduler``, ``scaler``, ``rng``,
``epoch``, ``step``, ...), given as ``extra`` to :func:`save_model`; they must be tensors and plain types too.
:func:`load_model` accepts both and rebuilds the model from the file alone.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from surround_depth_train.atomic import atomic_write
from surround_depth_train.models.registry import create_model, is_registered, list_models

__all__ = ['MODEL_FORMAT_VERSION', 'MODEL_FILE_FORMAT', 'save_model', 'load_model', 'read_model_file',
           'ModelFileError']

MODEL_FILE_FORMAT = 'surround_depth_model'
MODEL_FORMAT_VERSION = 1
RESERVED_KEYS = ('format', 'format_version', 'name', 'kwargs', 'input_size', 'normalisation', 'depth_range',
                 'head', 'state_dict')
PLAIN_SCALARS = (type(None), bool, int, float, str)


class ModelFileError(ValueError):
    """A file is not a (readable, supported) model file; the message says what to do."""


def _check_plain(obj: Any, where: str, allow_tensors: bool) -> None:
    if isinstance(obj, PLAIN_SCALARS) or (allow_tensors and torch.is_tensor(obj)):
        return
    if isinstance(obj, (list, tuple)):
        for i, item in enumerate(obj):
            _check_plain(item, f'{where}[{i}]', allow_tensors)
        return
    if isinstance(obj, Mapping):
        for key, value in obj.items():
            if not isinstance(key, (str, int)):
                raise TypeError(f'{where}: key {key!r} is a {type(key).__name__}; use str or int keys')
            _check_plain(value, f'{where}[{key!r}]', allow_tensors)
        return
    kinds = 'tensors and plain types' if allow_tensors else 'plain types (None, bool, int, float, str, lists, dicts)'
    raise TypeError(f'{where} is a {type(obj).__name__}; a model file holds only {kinds} so that it loads with '
                    f'weights_only=True (convert numpy arrays with torch.from_numpy, objects to dicts)')


def _describe_head(model: nn.Module) -> dict[str, Any] | None:
    if not getattr(model, 'has_bins', False):
        return None
    head = getattr(model, 'metric_bins', None)
    info: dict[str, Any] = {'type': 'metric_bins'}
    if head is not None:
        info.update(n_bins=int(head.n_bins), bin_centers_type=str(head.bin_centers_type))
    return info


def _normalisation(model: nn.Module) -> dict[str, list[float]] | None:
    norm = getattr(model, 'normalisation', None)
    if norm is None:
        return None
    if isinstance(norm, Mapping):
        return {'mean': [float(v) for v in norm['mean']], 'std': [float(v) for v in norm['std']]}
    mean, std = norm
    return {'mean': [float(v) for v in mean], 'std': [float(v) for v in std]}


def save_model(path: str | os.PathLike, model: nn.Module, *, name: str, kwargs: dict, input_size: tuple[int, int],
               extra: dict | None = None) -> Path:
    """Write ``model`` as a model file (atomically), or a training checkpoint when ``extra`` holds training state.

    Args:
        path: output file.
        model: the model; its ``state_dict`` is saved.
        name: its registry name; ``create_model(name, **kwargs)`` must rebuild it.
        kwargs: constructor kwargs (plain types).
        input_size: ``(height, width)``.
        extra: more top-level keys (optimizer, scheduler, rng, epoch, step, ...): tensors and plain types.
    """
    if not is_registered(name):
        raise ModelFileError(f'{name!r} is not a registered model; known: {", ".join(list_models())}')
    kwargs = {k: v for k, v in dict(kwargs).items() if k != 'pretrained'}
    _check_plain(kwargs, 'kwargs', allow_tensors=False)
    if len(input_size) != 2 or not all(isinstance(v, int) and v > 0 for v in input_size):
        raise ValueError(f'input_size must be (height, width) positive ints, got {input_size!r}')
    extra = dict(extra or {})
    clash = sorted(set(extra) & set(RESERVED_KEYS))
    if clash:
        raise ValueError(f'extra keys {clash} collide with the model file keys {RESERVED_KEYS}; rename them')
    _check_plain(extra, 'extra', allow_tensors=True)
    obj = {
        'format': MODEL_FILE_FORMAT,
        'format_version': MODEL_FORMAT_VERSION,
        'name': name,
        'kwargs': kwargs,
        'input_size': [int(input_size[0]), int(input_size[1])],
        'normalisation': _normalisation(model),
        'depth_range': [float(model.min_depth), float(model.max_depth)],
        'head': _describe_head(model),
        'state_dict': {k: v.detach().cpu() for k, v in model.state_dict().items()},
        **extra,
    }
    path = Path(path)
    with atomic_write(path, 'wb') as f:
        torch.save(obj, f)
    return path


def read_model_file(path: str | os.PathLike, map_location: str | torch.device = 'cpu') -> dict[str, Any]:
    """The model file's dict (``weights_only=True``), checked for format and version."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f'no model file at {path}')
    try:
        obj = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # unpickling errors come in many types
        raise ModelFileError(f'{path} does not load with torch.load(weights_only=True) ({exc}); it is not a '
                             f'model file: write one with surround_depth_train.models.save_model') from exc
    if not isinstance(obj, dict) or obj.get('format') != MODEL_FILE_FORMAT:
        hint = ''
        if isinstance(obj, dict) and any(isinstance(k, str) and k.endswith('.weight') for k in obj):
            hint = (' It looks like a bare state dict: build the model with create_model(name, pretrained=path) '
                    'or create_model(name) + load_state_dict, then save_model.')
        raise ModelFileError(f'{path} is not a surround-depth model file (no format={MODEL_FILE_FORMAT!r} key).'
                             f'{hint}')
    version = obj.get('format_version')
    if not isinstance(version, int) or version > MODEL_FORMAT_VERSION:
        raise ModelFileError(f'{path} has model file format version {version!r}, newer than this code reads '
                             f'({MODEL_FORMAT_VERSION}); update surround_depth_train to load it')
    missing = [k for k in RESERVED_KEYS if k not in obj]
    if missing:
        raise ModelFileError(f'{path} is a damaged model file: missing keys {missing}; re-export it')
    return obj


def load_model(path: str | os.PathLike, map_location: str | torch.device = 'cpu') -> tuple[nn.Module, dict]:
    """Rebuild the model stored in a model file or training checkpoint.

    Returns:
        ``(model, metadata)``: the model in eval mode with the stored weights, and every key of the file except
        ``state_dict`` (training checkpoints keep their optimizer etc. there).
    """
    obj = read_model_file(path, map_location)
    name = obj['name']
    if not is_registered(name):
        raise ModelFileError(f'{path} holds model {name!r}, which is not registered here (known: '
                             f'{", ".join(list_models())}); for teacher models make sure '
                             f'surround_depth_train.models.teacher is importable')
    model = create_model(name, **obj['kwargs'])
    try:
        model.load_state_dict(obj['state_dict'], strict=True)
    except RuntimeError as exc:
        raise ModelFileError(f'{path}: the stored weights do not fit {name}(**{obj["kwargs"]}): {exc}') from exc
    model.to(map_location).eval()
    return model, {k: v for k, v in obj.items() if k != 'state_dict'}
