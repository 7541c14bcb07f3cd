"""Initialise students from weights users already have; nothing is downloaded.

Accepted sources (``pretrained=`` of every student factory):

- a directory holding the public depth checkpoints ``encoder.pth`` (+ ``depth.pth``): Monodepth2, HR-Depth or
  MonoViT (the paper's KITTI initialisation);
- a single file: an ImageNet backbone (timm or torchvision ResNet-18 state dict, MPViT ``{'model': ...}``) or one
  of the ``encoder.pth`` files above.

Key layouts mapped onto our modules:

- Monodepth2 / HR-Depth ``encoder.pth``: ``encoder.<torchvision resnet key>`` (+ ``height``, ``width``,
  ``use_stereo``) -> ``encoder.body.<key>``; ``encoder.fc.*`` is unused.
- ImageNet ResNet (timm / torchvision): ``<key>`` -> ``encoder.body.<key>``; ``fc.*`` unused.
- Monodepth2 ``depth.pth``: ``decoder.<i>.conv.conv.*`` with ``i = 2 (4 - level) + j`` for ``upconv(level, j)``,
  ``decoder.<10 + s>.conv.*`` for ``dispconv(s)`` -> ``decoder.convs.upconv_<level>_<j>...``,
  ``decoder.convs.dispconv_<s>...``.
- HR-Depth / MonoViT ``depth.pth``: ``convs.<name>.*`` -> ``decoder.convs.<name>.*``; the ``decoder.<i>.*`` keys
  are aliases of the same tensors.
- MPViT / MonoViT encoder: ``<key>`` -> ``encoder.<key>``; ``cls_head.*`` unused; the shared position encodings
  repeated under every block (``MHCA_layers.<k>.cpe``, ``.crpe``, ``factoratt_crpe.crpe``) are aliases.

Every file is read with ``torch.load(..., weights_only=True)``. The result is a :class:`LoadReport` of what was
loaded, what stayed freshly initialised, and which checkpoint keys were not used; it is logged and kept on the
model as ``model.load_report``.
"""
from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import Tensor, nn

__all__ = ['LoadReport', 'load_pretrained', 'read_checkpoint', 'map_checkpoint', 'FAMILIES']

log = logging.getLogger(__name__)

FAMILIES = ('monodepth2', 'hrdepth', 'monovit', 'timm')
ENCODER_FILE = 'encoder.pth'
DECODER_FILE = 'depth.pth'
METADATA_KEYS = ('height', 'width', 'use_stereo')
MPVIT_ALIAS = re.compile(r'\.MHCA_layers\.\d+\.(cpe|crpe)\.|\.factoratt_crpe\.crpe\.')


@dataclass
class LoadReport:
    """What a pretrained load did. Names are our state-dict keys except ``unused`` (the checkpoint's)."""

    sources: list[str] = field(default_factory=list)
    loaded: list[str] = field(default_factory=list)
    initialised: list[str] = field(default_factory=list)
    unused: list[str] = field(default_factory=list)
    aliases: list[str] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)
    loaded_parameters: int = 0
    initialised_parameters: int = 0

    def summary(self) -> str:
        groups: dict[str, int] = {}
        for name in self.initialised:
            top = '.'.join(name.split('.')[:2])
            groups[top] = groups.get(top, 0) + 1
        fresh = ', '.join(f'{k} ({v})' for k, v in sorted(groups.items())) or 'nothing'
        return (f'loaded {len(self.loaded)} tensors ({self.loaded_parameters:,} parameters) from '
                f'{", ".join(self.sources)}; freshly initialised {self.initialised_parameters:,} parameters: '
                f'{fresh}; {len(self.unused)} checkpoint keys unused'
                + (f' ({", ".join(self.unused[:4])}{", ..." if len(self.unused) > 4 else ""})' if self.unused else '')
                + (f'; {len(self.aliases)} aliases of shared tensors skipped' if self.aliases else '')
                + (f'; checkpoint metadata {self.metadata}' if self.metadata else ''))


def read_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """A flat dict of tensors (and plain metadata) from a checkpoint file, read with ``weights_only=True``.

    Unwraps ``{'model': ...}`` / ``{'state_dict': ...}`` and strips a ``module.`` prefix (DataParallel).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f'no checkpoint file at {path}')
    try:
        obj = torch.load(path, map_location='cpu', weights_only=True)
    except Exception as exc:  # unpickling errors come in many types
        raise ValueError(f'{path} is not a checkpoint that loads with torch.load(weights_only=True): {exc}. '
                         f'Re-save it as a plain state dict of tensors') from exc
    for key in ('model', 'state_dict'):
        if isinstance(obj, Mapping) and key in obj and isinstance(obj[key], Mapping):
            obj = obj[key]
    if not isinstance(obj, Mapping):
        raise ValueError(f'{path} holds a {type(obj).__name__}, not a state dict')
    return {(k[len('module.'):] if k.startswith('module.') else k): v for k, v in obj.items()}


def _monodepth2_decoder_key(key: str, levels: int = 5) -> str | None:
    m = re.fullmatch(r'decoder\.(\d+)\.(.+)', key)
    if not m:
        return None
    idx, rest = int(m.group(1)), m.group(2)
    if idx < 2 * levels:
        level, j = levels - 1 - idx // 2, idx % 2
        return f'decoder.convs.upconv_{level}_{j}.{rest}'
    return f'decoder.convs.dispconv_{idx - 2 * levels}.{rest}'


def map_checkpoint(state: Mapping[str, Any], family: str, part: str
                   ) -> tuple[dict[str, Tensor], list[str], list[str], dict[str, Any]]:
    """Map a checkpoint's keys onto a student of ``family``.

    Args:
        state: the checkpoint's flat dict.
        family: one of :data:`FAMILIES`.
        part: ``'encoder'`` (an ``encoder.pth`` or an ImageNet backbone) or ``'decoder'`` (a ``depth.pth``).

    Returns:
        ``(mapped, unused_keys, alias_keys, metadata)``; aliases are second names of tensors mapped under their
        first name.
    """
    if family not in FAMILIES:
        raise ValueError(f'unknown family {family!r}; expected one of {FAMILIES}')
    mapped: dict[str, Tensor] = {}
    unused: list[str] = []
    aliases: list[str] = []
    metadata: dict[str, Any] = {}
    for key, value in state.items():
        if not torch.is_tensor(value) or key in METADATA_KEYS:
            metadata[key] = value.item() if torch.is_tensor(value) and value.numel() == 1 else value
            continue
        target = None
        if part == 'encoder' and family == 'monovit':
            if MPVIT_ALIAS.search(key):
                aliases.append(key)
                continue
            if not key.startswith('cls_head.'):
                target = f'encoder.{key}'
        elif part == 'encoder':
            inner = key[len('encoder.'):] if key.startswith('encoder.') else key
            if not inner.startswith(('fc.', 'classifier.', 'head.')):
                target = f'encoder.body.{inner}'
        elif family in ('monodepth2', 'timm'):
            target = _monodepth2_decoder_key(key)
        elif key.startswith('convs.'):
            target = f'decoder.{key}'
        elif re.fullmatch(r'decoder\.\d+\..+', key):
            aliases.append(key)  # HR-Depth/MonoViT list every conv again as decoder.<i>
            continue
        if target is None:
            unused.append(key)
        else:
            mapped[target] = value
    return mapped, unused, aliases, metadata


def _apply(model: nn.Module, mapped: Mapping[str, Tensor], source: str) -> list[str]:
    own = model.state_dict()
    bad = [f'{k}: checkpoint {tuple(v.shape)} vs model {tuple(own[k].shape)}'
           for k, v in mapped.items() if k in own and tuple(v.shape) != tuple(own[k].shape)]
    if bad:
        raise ValueError(f'{source} does not fit this model (shape mismatch in {len(bad)} tensors, e.g. '
                         f'{bad[0]}); check that the checkpoint is for the same architecture')
    usable = {k: v for k, v in mapped.items() if k in own}
    model.load_state_dict(usable, strict=False)
    return sorted(usable)


def load_pretrained(model: nn.Module, path: str | os.PathLike, *, family: str) -> LoadReport:
    """Load local pretrained weights into a student (see the module docstring for the layouts).

    Raises:
        FileNotFoundError: ``path`` does not exist, or a directory without ``encoder.pth``.
        ValueError: unreadable file, shape mismatch, or nothing in the file matches the model.
    """
    path = Path(path)
    if path.is_dir():
        files = [(path / ENCODER_FILE, 'encoder')]
        if not files[0][0].is_file():
            raise FileNotFoundError(f'{path} has no {ENCODER_FILE}: give a folder with the public {ENCODER_FILE} '
                                    f'and {DECODER_FILE}, or an ImageNet backbone file')
        if (path / DECODER_FILE).is_file():
            files.append((path / DECODER_FILE, 'decoder'))
    elif path.is_file():
        files = [(path, 'encoder')]
    else:
        raise FileNotFoundError(f'pretrained weights not found at {path}')

    report = LoadReport()
    loaded: set[str] = set()
    for file, part in files:
        mapped, unused, aliases, metadata = map_checkpoint(read_checkpoint(file), family, part)
        names = _apply(model, mapped, str(file))
        if not names:
            raise ValueError(f'nothing in {file} matches the {family} {part} (keys like {unused[:3]}); pass a '
                             f'{family} checkpoint or an ImageNet backbone for it')
        loaded.update(names)
        report.sources.append(str(file))
        report.unused.extend(f'{file.name}:{k}' for k in unused + [k for k in mapped if k not in names])
        report.aliases.extend(f'{file.name}:{k}' for k in aliases)
        report.metadata.update(metadata)

    params = dict(model.named_parameters())
    buffers = {k for k, _ in model.named_buffers()}
    report.loaded = sorted(loaded)
    report.initialised = sorted(k for k in model.state_dict() if k not in loaded)
    report.loaded_parameters = sum(params[k].numel() for k in loaded if k in params)
    report.initialised_parameters = sum(p.numel() for k, p in params.items() if k not in loaded)
    report.initialised = [k for k in report.initialised if k in params or k in buffers]
    log.info('pretrained %s: %s', family, report.summary())
    model.load_report = report
    return report
