"""Load Depth Anything checkpoints into :class:`DepthAnythingMetric`, refusing the wrong architecture.

Layouts accepted (optionally under a ``model`` or ``state_dict`` key, optionally with ``module.`` prefixes):

- ``metric``: the official ``depth_anything_metric_depth_{outdoor,indoor}.pt`` (ZoeDepth around the DPT):
  ``core.core.pretrained.*`` / ``core.core.depth_head.*`` -> ``pretrained.*`` / ``depth_head.*``, and the head's
  ``conv2``, ``seed_bin_regressor``, ``seed_projector``, ``projectors.i``, ``attractors.i``,
  ``conditional_log_binomial`` -> ``bins.*``;
- ``relative``: ``depth_anything_vit{s,b,l}14.pth`` (``pretrained.*``, ``depth_head.*``): encoder and DPT load, the
  bins head keeps its fresh initialisation (reported as ``fresh``);
- ``native``: this package's own names (``pretrained.*``, ``depth_head.*``, ``bins.*``).

The architecture (ViT width and depth, DPT widths) is read from the tensor shapes and must equal the model's;
otherwise :class:`CheckpointError` says which variant the checkpoint looks like.
"""
from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass, field
from typing import Any, Mapping

import torch
from torch import Tensor

from surround_depth_train.models.teacher.depth_anything import ENCODERS, DepthAnythingMetric, EncoderSpec

__all__ = ['CheckpointError', 'CheckpointInfo', 'LoadReport', 'read_checkpoint', 'unwrap_state_dict',
           'to_native_keys', 'official_metric_key', 'detect_architecture', 'load_depth_anything']

log = logging.getLogger(__name__)

OFFICIAL_CORE_PREFIX = 'core.core.'
CORE_PREFIXES = ('pretrained.', 'depth_head.')
BINS_PREFIX = 'bins.'
_BLOCK_RE = re.compile(r'^pretrained\.blocks\.(\d+)\.')


class CheckpointError(ValueError):
    """A checkpoint that cannot be loaded into the model: wrong architecture, layout or keys."""


@dataclass(frozen=True)
class CheckpointInfo:
    """What a checkpoint holds, read from its key names and tensor shapes."""

    layout: str  # 'metric', 'relative' or 'native'
    spec: EncoderSpec
    variant: str  # 'vits', 'vitb', 'vitl', 'tiny' or 'custom'

    def describe(self) -> str:
        return f'{self.variant} ({self.spec.describe()})'


@dataclass
class LoadReport:
    """Outcome of :func:`load_depth_anything`; keys are in the model's (native) names."""

    layout: str
    variant: str
    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)     # model keys the checkpoint lacks (not counting fresh)
    unexpected: list[str] = field(default_factory=list)  # checkpoint keys the model lacks
    fresh: list[str] = field(default_factory=list)       # keys left at their initialisation by design

    @property
    def ok(self) -> bool:
        return not self.missing and not self.unexpected

    def __str__(self) -> str:
        lines = [f'{self.layout} checkpoint, {self.variant}: {len(self.loaded)} tensors match the model']
        if self.fresh:
            lines.append(f'{len(self.fresh)} freshly initialised (the bins head): {_preview(self.fresh)}')
        if self.missing:
            lines.append(f'{len(self.missing)} missing: {_preview(self.missing)}')
        if self.unexpected:
            lines.append(f'{len(self.unexpected)} unexpected: {_preview(self.unexpected)}')
        return '; '.join(lines)


def _preview(keys: list[str], n: int = 6) -> str:
    shown = ', '.join(keys[:n])
    return shown + (f', ... ({len(keys) - n} more)' if len(keys) > n else '')


def read_checkpoint(path: str | os.PathLike) -> dict[str, Tensor]:
    """``torch.load`` a checkpoint file (``weights_only=True``) and return its flat state dict."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f'checkpoint {path!r} does not exist; pass the path of a Depth Anything .pt/.pth '
                                'file (e.g. depth_anything_metric_depth_outdoor.pt)')
    try:
        obj = torch.load(path, map_location='cpu', weights_only=True)
    except Exception as exc:  # unpickling errors come in many types
        raise CheckpointError(f'cannot read checkpoint {path!r} as a weights-only torch file: {exc}') from exc
    return unwrap_state_dict(obj, source=path)


def unwrap_state_dict(obj: Any, source: str = 'checkpoint') -> dict[str, Tensor]:
    """Take the state dict out of a ``model``/``state_dict`` wrapper and strip DataParallel ``module.`` prefixes."""
    for wrapper in ('model', 'state_dict'):
        if isinstance(obj, Mapping) and isinstance(obj.get(wrapper), Mapping):
            obj = obj[wrapper]
    if not isinstance(obj, Mapping) or not obj:
        raise CheckpointError(f'{source} holds no state dict (got {type(obj).__name__}); expected a mapping of '
                              'tensor names, optionally under a "model" key')
    state = {}
    for key, value in obj.items():
        if not isinstance(value, Tensor):
            raise CheckpointError(f'{source}: entry {key!r} is a {type(value).__name__}, not a tensor')
        state[key[len('module.'):] if key.startswith('module.') else key] = value
    return state


def official_metric_key(native_key: str) -> str:
    """The official metric checkpoint's name for one of our state-dict keys."""
    if native_key.startswith(BINS_PREFIX):
        return native_key[len(BINS_PREFIX):]
    return OFFICIAL_CORE_PREFIX + native_key


def to_native_keys(state: Mapping[str, Tensor]) -> tuple[dict[str, Tensor], str]:
    """Rename an unwrapped state dict to our names; returns it and its layout."""
    if any(k.startswith(OFFICIAL_CORE_PREFIX) for k in state):
        native = {}
        for key, value in state.items():
            native[key[len(OFFICIAL_CORE_PREFIX):] if key.startswith(OFFICIAL_CORE_PREFIX)
                   else BINS_PREFIX + key] = value
        return native, 'metric'
    if any(k.startswith(BINS_PREFIX) for k in state):
        return dict(state), 'native'
    if any(k.startswith(CORE_PREFIXES) for k in state):
        return dict(state), 'relative'
    raise CheckpointError('not a Depth Anything checkpoint: no keys start with "core.core." (metric), '
                          f'"pretrained."/"depth_head." (relative) or "bins."; first keys: {_preview(list(state))}')


def _spec_of(state: Mapping[str, Tensor]) -> EncoderSpec | None:
    try:
        embed_dim = state['pretrained.patch_embed.proj.weight'].shape[0]
        features = state['depth_head.scratch.layer1_rn.weight'].shape[0]
        out_channels = tuple(state[f'depth_head.projects.{i}.weight'].shape[0] for i in range(4))
    except KeyError:
        return None
    blocks = {int(m.group(1)) for k in state if (m := _BLOCK_RE.match(k))}
    depth = max(blocks) + 1 if blocks else 0
    heads = next((s.num_heads for s in ENCODERS.values() if s.embed_dim == embed_dim), 0)
    return EncoderSpec(embed_dim, depth, heads, features, out_channels)


def _variant_of(spec: EncoderSpec) -> str:
    for name, known in ENCODERS.items():
        if (known.embed_dim, known.depth, known.features, known.out_channels) == \
                (spec.embed_dim, spec.depth, spec.features, spec.out_channels):
            return name
    return 'custom'


def detect_architecture(state: Mapping[str, Tensor]) -> CheckpointInfo:
    """Layout and ViT/DPT widths of a (wrapped or unwrapped) state dict."""
    native, layout = to_native_keys(unwrap_state_dict(state))
    spec = _spec_of(native)
    if spec is None:
        raise CheckpointError(f'{layout} checkpoint lacks the tensors that fix its architecture '
                              '(pretrained.patch_embed.proj.weight, depth_head.scratch.layer1_rn.weight, '
                              'depth_head.projects.0-3.weight)')
    return CheckpointInfo(layout=layout, spec=spec, variant=_variant_of(spec))


def load_depth_anything(model: DepthAnythingMetric, source: str | os.PathLike | Mapping[str, Any], *,
                        strict: bool = True) -> LoadReport:
    """Load a metric, relative or native checkpoint (a path or an in-memory dict) into ``model``.

    Args:
        model: the teacher to fill.
        source: checkpoint path or an already loaded object.
        strict: raise on missing or unexpected keys (a relative checkpoint's absent head is not "missing").

    Raises:
        CheckpointError: the architecture differs (the message names the variant the checkpoint looks like), a
            tensor's shape differs, or (``strict``) keys are missing or unexpected.
    """
    name = os.fspath(source) if isinstance(source, (str, os.PathLike)) else 'checkpoint'
    raw = read_checkpoint(source) if isinstance(source, (str, os.PathLike)) else unwrap_state_dict(source)
    native, layout = to_native_keys(raw)
    info = detect_architecture(native)
    mine = model.spec
    if (info.spec.embed_dim, info.spec.depth, info.spec.features, info.spec.out_channels) != \
            (mine.embed_dim, mine.depth, mine.features, mine.out_channels):
        raise CheckpointError(
            f'{name} looks like {info.describe()}, but the model is {model.encoder_name} ({mine.describe()}); '
            f'build the {info.variant} teacher for this checkpoint, or pass a {model.encoder_name} checkpoint')

    expected = model.state_dict()
    fresh = sorted(k for k in expected if k.startswith(BINS_PREFIX)) if layout == 'relative' else []
    missing = sorted(k for k in expected if k not in native and k not in fresh)
    unexpected = sorted(k for k in native if k not in expected)
    mismatched = [f'{k}: checkpoint {tuple(v.shape)} vs model {tuple(expected[k].shape)}'
                  for k, v in native.items() if k in expected and v.shape != expected[k].shape]
    if mismatched:
        raise CheckpointError(f'{name}: {len(mismatched)} tensor shapes differ from the model '
                              f'({_preview(mismatched)}); '
                              'build the model with the checkpoint\'s options (n_bins, bin_embedding_dim, '
                              'pretrain_size ...)')
    report = LoadReport(layout=layout, variant=info.variant, fresh=fresh, missing=missing, unexpected=unexpected,
                        loaded=sorted(k for k in native if k in expected))
    if strict and not report.ok:
        raise CheckpointError(f'{name}: {report}; pass strict=False to load the matching tensors anyway')
    model.load_state_dict({k: native[k] for k in report.loaded}, strict=False)
    log.info('%s: %s', name, report)
    return report

