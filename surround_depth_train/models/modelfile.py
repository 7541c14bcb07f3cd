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
``head``           ``None`` or ``{'type': 'metric_bins'|'adabins'|'localbins', 'n_bins': K, 'bin_centers_type': ...}``
``training_rig``   (version 2) ``None`` or, per camera of the training rig in rig order,
                   ``{'name': str, 'K': 3x3 list, 'width': int, 'height': int}`` with ``K`` at the network
                   input size (``width, height == input_size[1], input_size[0]``)
``state_dict``     the model's state dict
=================  ==============================================================================

Metric depth depends on the focal length the network was trained with, so training records its rig's ``K``
(:func:`describe_training_rig`) and the node compares each camera's ``K`` with it. Version-1 files (no
``training_rig``) still load: :func:`read_model_file` gives them ``training_rig = None`` (the focal-length check is
then unavailable) and keeps their ``format_version``. :class:`ModelInfo` is what a deployment needs to know about
a file (input size, depth range, head, rig, teacher or not) without building the model.

A training checkpoint is the same dict with more keys (``optimizer``, ``scheduler``, ``scaler``, ``rng``,
``epoch``, ``step``, ...), given as ``extra`` to :func:`save_model`; they must be tensors and plain types too.
:func:`load_model` accepts both and rebuilds the model from the file alone.
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
from torch import nn

from surround_depth_train.atomic import atomic_write
from surround_depth_train.geometry.camera import check_intrinsics
from surround_depth_train.geometry.rig import CameraRig
from surround_depth_train.models.registry import create_model, is_registered, is_teacher, list_models

__all__ = ['MODEL_FORMAT_VERSION', 'MODEL_FILE_FORMAT', 'save_model', 'load_model', 'read_model_file',
           'describe_training_rig', 'ModelInfo', 'ModelFileError', 'write_compact_copy', 'is_onnx_file']

MODEL_FILE_FORMAT = 'surround_depth_model'
MODEL_FORMAT_VERSION = 2
RESERVED_KEYS = ('format', 'format_version', 'name', 'kwargs', 'input_size', 'normalisation', 'depth_range',
                 'head', 'training_rig', 'state_dict')
#: Keys each format version must have (version 2 added ``training_rig``).
REQUIRED_KEYS = {1: tuple(k for k in RESERVED_KEYS if k != 'training_rig'), 2: RESERVED_KEYS}
TRAINING_CAMERA_KEYS = ('name', 'K', 'width', 'height')
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
    info: dict[str, Any] = {'type': str(getattr(head, 'head_type', 'metric_bins'))}  # or adabins / localbins
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


def describe_training_rig(rig: CameraRig | Sequence[Mapping[str, Any]] | None, input_size: Sequence[int]
                          ) -> list[dict[str, Any]] | None:
    """The ``training_rig`` entry for a model that runs at ``input_size`` ``(height, width)``.

    A :class:`CameraRig` (at any resolution) is resized to the input size; a list of
    ``{'name', 'K', 'width', 'height'}`` must already be at it. ``None`` stays ``None``.

    Raises:
        ValueError: an entry that is not a camera at the input size, a bad ``K``, duplicate names, an empty rig.
    """
    if rig is None:
        return None
    height, width = int(input_size[0]), int(input_size[1])
    if isinstance(rig, CameraRig):
        rig = [{'name': c.name, 'K': c.K.tolist(), 'width': c.width, 'height': c.height}
               for c in rig.resized(width, height)]
    if isinstance(rig, (str, bytes, Mapping)) or not isinstance(rig, Sequence) or not rig:
        raise ValueError(f'training_rig must be a CameraRig, a non-empty list of {{name, K, width, height}} per '
                         f'camera, or None; got {type(rig).__name__}')
    cameras = []
    for i, cam in enumerate(rig):
        where = f'training_rig[{i}]'
        if not isinstance(cam, Mapping) or set(cam) != set(TRAINING_CAMERA_KEYS):
            keys = sorted(cam) if isinstance(cam, Mapping) else type(cam).__name__
            raise ValueError(f'{where}: expected a dict with exactly the keys {list(TRAINING_CAMERA_KEYS)}, got '
                             f'{keys}')
        if not isinstance(cam['name'], str) or not cam['name']:
            raise ValueError(f'{where}: name must be a non-empty string, got {cam["name"]!r}')
        if (cam['width'], cam['height']) != (width, height) or isinstance(cam['width'], bool):
            raise ValueError(f'{where} ({cam["name"]}): K is for {cam["width"]}x{cam["height"]} images but the '
                             f'network input is {width}x{height}; resize it first (pass the CameraRig to have it '
                             f'resized, or Camera.resized(width, height))')
        try:
            K = check_intrinsics(cam['K'], f'{where} ({cam["name"]}): K')
        except (TypeError, ValueError) as exc:
            raise ValueError(str(exc)) from None
        cameras.append({'name': cam['name'], 'K': [[float(v) for v in row] for row in K.tolist()],
                        'width': width, 'height': height})
    names = [c['name'] for c in cameras]
    if len(set(names)) != len(names):
        raise ValueError(f'training_rig: camera names must be unique, got {names}')
    return cameras


def save_model(path: str | os.PathLike, model: nn.Module, *, name: str, kwargs: dict, input_size: tuple[int, int],
               extra: dict | None = None, training_rig: CameraRig | Sequence[Mapping[str, Any]] | None = None
               ) -> Path:
    """Write ``model`` as a model file (atomically), or a training checkpoint when ``extra`` holds training state.

    Args:
        path: output file.
        model: the model; its ``state_dict`` is saved.
        name: its registry name; ``create_model(name, **kwargs)`` must rebuild it.
        kwargs: constructor kwargs (plain types).
        input_size: ``(height, width)``.
        extra: more top-level keys (optimizer, scheduler, rng, epoch, step, ...): tensors and plain types.
        training_rig: the rig the model was trained on: a :class:`CameraRig` (resized to ``input_size`` here) or
            the list :func:`describe_training_rig` makes; ``None`` when unknown (the node then cannot check focal
            lengths).
    """
    if not is_registered(name):
        raise ModelFileError(f'{name!r} is not a registered model; known: {", ".join(list_models())}')
    kwargs = {k: v for k, v in dict(kwargs).items() if k != 'pretrained'}
    _check_plain(kwargs, 'kwargs', allow_tensors=False)
    if len(input_size) != 2 or not all(isinstance(v, int) and v > 0 for v in input_size):
        raise ValueError(f'input_size must be (height, width) positive ints, got {input_size!r}')
    rig = describe_training_rig(training_rig, input_size)
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
        'training_rig': rig,
        'state_dict': {k: v.detach().cpu() for k, v in model.state_dict().items()},
        **extra,
    }
    path = Path(path)
    with atomic_write(path, 'wb') as f:
        torch.save(obj, f)
    return path


def is_onnx_file(path: str | os.PathLike) -> bool:
    """An ONNX export (named ``.onnx``, or a protobuf ``ModelProto``: its first field, ``ir_version``, is tag 0x08;
    torch files start with a zip or pickle header)."""
    path = Path(path)
    if path.suffix.lower() == '.onnx':
        return True
    with open(path, 'rb') as f:
        return f.read(1) == b'\x08'


def read_model_file(path: str | os.PathLike, map_location: str | torch.device = 'cpu') -> dict[str, Any]:
    """The model file's dict (``weights_only=True``), checked for format and version; a version-1 file gets
    ``training_rig = None``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f'no model file at {path}')
    if is_onnx_file(path):
        raise ModelFileError(f'{path} is an ONNX export, not a model file; pass the model.pt it was exported '
                             f'from, or run the export with ONNX Runtime where the tool offers it '
                             f'(evaluate_bag --backend onnxruntime, the node\'s backend:=onnxruntime)')
    try:
        obj = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # unpickling errors come in many types, with many lines
        first = next((line.strip() for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
        raise ModelFileError(f'{path} does not load with torch.load(weights_only=True) ({first}); it is not a '
                             f'model file: pass the model.pt of a training run (or write one with '
                             f'surround_depth_train.models.save_model)') from exc
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
    if version < 1:
        raise ModelFileError(f'{path} has model file format version {version!r}; versions start at 1: the file is '
                             f'damaged, re-export it')
    missing = [k for k in REQUIRED_KEYS[version] if k not in obj]
    if missing:
        raise ModelFileError(f'{path} is a damaged model file: missing keys {missing}; re-export it')
    if version == 1:
        obj['training_rig'] = None  # written before training recorded its rig
    try:
        obj['training_rig'] = describe_training_rig(obj['training_rig'], obj['input_size'])
    except (TypeError, ValueError) as exc:
        raise ModelFileError(f'{path} is a damaged model file: {exc}') from None
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


def write_compact_copy(src: str | os.PathLike, dst: str | os.PathLike,
                       dtype: torch.dtype | None = torch.float16) -> Path:
    """Write ``src`` (a model file or training checkpoint) as a model file whose floating-point weights are stored
    in ``dtype`` (half the bytes for float16), e.g. to ship a trained student; ``dtype=None`` keeps them as they
    are (``dst`` may be ``src``: the file is replaced atomically).

    Training state (optimiser, scheduler, RNG, ...) is left out. :func:`load_model` builds the model in float32 as
    always and ``load_state_dict`` casts the stored weights up, so the copy deploys like the original; its outputs
    differ only by the rounding of the weights. Non-floating buffers (e.g. BatchNorm's counters) stay as they are.
    """
    if dtype is not None and not dtype.is_floating_point:
        raise ValueError(f'dtype must be a floating-point dtype, got {dtype}')
    obj = read_model_file(src)
    out = {k: obj[k] for k in RESERVED_KEYS}
    out['state_dict'] = {k: v.to(dtype) if dtype is not None and v.is_floating_point() else v
                         for k, v in obj['state_dict'].items()}
    dst = Path(dst)
    with atomic_write(dst, 'wb') as f:
        torch.save(out, f)
    return dst


@dataclass(frozen=True)
class ModelInfo:
    """What a deployment needs to know about a model file, read without building the model.

    Attributes:
        name: registry name.
        kwargs: constructor kwargs.
        input_size: ``(height, width)`` the model was trained at / runs at.
        depth_range: ``(min_depth, max_depth)`` metres.
        normalisation: ``{'mean': [..], 'std': [..]}`` applied inside the model, or None.
        head: ``None`` (plain student: no bins, no confidence) or the head's description.
        training_rig: per training camera ``{'name', 'K' (3x3 list at input_size), 'width', 'height'}``, or None
            (a version-1 file, or a model saved without its rig: focal-length checks are unavailable).
        format_version: the file's format version.
        is_teacher: a registered teacher (:func:`~surround_depth_train.models.registry.is_teacher`).
        fully_convolutional: runs at other input sizes than ``input_size``: the students (sides above their
            ``min_input_side``); not the teachers (their ViT runs at its recorded size, sides multiples of 14).
        has_confidence: the model has bins, so ``forward(..., confidence=True)`` returns a confidence map.
    """

    name: str
    kwargs: dict[str, Any]
    input_size: tuple[int, int]
    depth_range: tuple[float, float]
    normalisation: dict[str, list[float]] | None
    head: dict[str, Any] | None
    training_rig: list[dict[str, Any]] | None
    format_version: int
    is_teacher: bool
    fully_convolutional: bool
    has_confidence: bool

    @classmethod
    def from_file_dict(cls, obj: Mapping[str, Any]) -> 'ModelInfo':
        """From :func:`read_model_file`'s dict, :func:`load_model`'s metadata or :meth:`to_dict` (e.g. stored in
        an exported file's metadata); ``is_teacher`` and ``fully_convolutional`` come from the registry."""
        missing = [k for k in REQUIRED_KEYS[1] if k not in obj and k not in ('format', 'state_dict')]
        if missing:
            raise ModelFileError(f'model metadata lacks {missing}; read the file with read_model_file')
        name = str(obj['name'])
        input_size = (int(obj['input_size'][0]), int(obj['input_size'][1]))
        teacher = is_teacher(name)
        return cls(name=name, kwargs=dict(obj['kwargs']), input_size=input_size,
                   depth_range=(float(obj['depth_range'][0]), float(obj['depth_range'][1])),
                   normalisation=obj['normalisation'], head=obj['head'],
                   training_rig=describe_training_rig(obj.get('training_rig'), input_size),
                   format_version=int(obj['format_version']), is_teacher=teacher, fully_convolutional=not teacher,
                   has_confidence=obj['head'] is not None)

    @classmethod
    def read(cls, path: str | os.PathLike) -> 'ModelInfo':
        """:meth:`from_file_dict` of the file at ``path``."""
        return cls.from_file_dict(read_model_file(path))

    def to_dict(self) -> dict[str, Any]:
        """Plain types only (JSON-serialisable), e.g. for an exported model's metadata."""
        out = asdict(self)
        out['input_size'], out['depth_range'] = list(self.input_size), list(self.depth_range)
        return out
