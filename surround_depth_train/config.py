"""Typed configuration: dataclasses filled from YAML, with ``key=value`` command-line overrides.

Every run-level configuration in the project is a (nested) dataclass. This module turns mappings into those
dataclasses, refusing unknown keys and wrong types with a message that names the dotted key and the fix, and
turns them back into plain YAML so the resolved config can be saved next to a run's outputs.

Constructors of models, losses and datasets never take these objects: builders read the fields and pass explicit
keyword arguments.
"""
from __future__ import annotations

import dataclasses
import os
import re
import types
import typing
from pathlib import Path
from typing import Any, Mapping, Sequence, TypeVar

import yaml

from surround_depth_train.atomic import atomic_write
from surround_depth_train.resources import resolve_path

__all__ = ['ConfigError', 'YamlLoader', 'from_mapping', 'to_mapping', 'apply_overrides', 'load_config', 'save_config']

T = TypeVar('T')


class ConfigError(ValueError):
    """A configuration value or key is invalid; the message names the dotted key and how to fix it."""


class YamlLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that reads ``1e-3`` as a float, as YAML 1.2 and Python do (PyYAML follows YAML 1.1,
    where an exponent without a dot, the way people write learning rates, is a string)."""


YamlLoader.add_implicit_resolver('tag:yaml.org,2002:float',
                                 re.compile(r'^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$'),
                                 list('-+0123456789'))


def _field_types(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _coerce(value: Any, tp: Any, key: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if errors else f'{key}: cannot be None')
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(f'{key}: {value!r} is not one of {list(args)}')
        return value
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, Mapping):
            raise ConfigError(f'{key}: expected a mapping of {tp.__name__} fields, got {type(value).__name__}')
        return from_mapping(tp, value, prefix=key)
    if origin in (list, tuple, Sequence) or tp in (list, tuple):
        if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
            raise ConfigError(f'{key}: expected a list, got {value!r}')
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(args) != len(value):
                raise ConfigError(f'{key}: expected {len(args)} items, got {len(value)}')
            return tuple(_coerce(v, a, f'{key}[{i}]') for i, (v, a) in enumerate(zip(value, args)))
        inner = args[0] if args else Any
        items = [_coerce(v, inner, f'{key}[{i}]') for i, v in enumerate(value)]
        return tuple(items) if origin is tuple or tp is tuple else items
    if origin in (dict, Mapping) or tp is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f'{key}: expected a mapping, got {value!r}')
        vt = args[1] if len(args) == 2 else Any
        return {str(k): _coerce(v, vt, f'{key}.{k}') for k, v in value.items()}
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f'{key}: expected true/false, got {value!r}')
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f'{key}: expected an integer, got {value!r}')
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f'{key}: expected a number, got {value!r}')
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f'{key}: expected a string, got {value!r}')
        return value
    if tp is Path:
        if not isinstance(value, (str, os.PathLike)):
            raise ConfigError(f'{key}: expected a path, got {value!r}')
        return Path(value)
    return value


def from_mapping(cls: type[T], mapping: Mapping[str, Any] | None, prefix: str = '') -> T:
    """Build dataclass ``cls`` from a mapping, recursing into nested dataclasses.

    Raises:
        ConfigError: on an unknown key (listing the valid ones) or a value of the wrong type.
    """
    mapping = dict(mapping or {})
    types_ = _field_types(cls)
    unknown = sorted(set(mapping) - set(types_))
    if unknown:
        where = f' in {prefix}' if prefix else ''
        raise ConfigError(f'unknown config key(s) {", ".join(repr(prefix + "." + u if prefix else u) for u in unknown)}'
                          f'{where}; valid keys are: {", ".join(sorted(types_))}')
    kwargs = {}
    for name, value in mapping.items():
        key = f'{prefix}.{name}' if prefix else name
        kwargs[name] = _coerce(value, types_[name], key)
    try:
        return cls(**kwargs)
    except TypeError as exc:  # a required field without a default
        raise ConfigError(f'{prefix or cls.__name__}: {exc}') from None


def to_mapping(obj: Any) -> Any:
    """Turn a (nested) dataclass into plain YAML-safe types."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_mapping(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_mapping(v) for v in obj]
    if isinstance(obj, dict):
        return {str(k): to_mapping(v) for k, v in obj.items()}
    if isinstance(obj, Path):
        return str(obj)
    return obj


def apply_overrides(mapping: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Apply ``a.b.c=value`` overrides (values parsed as YAML scalars/lists) to a nested mapping, in place."""
    for item in overrides:
        if '=' not in item:
            raise ConfigError(f'override {item!r} is not of the form key=value (e.g. optim.lr=1e-4)')
        dotted, raw = item.split('=', 1)
        try:
            value = yaml.load(raw, Loader=YamlLoader) if raw != '' else ''
        except yaml.YAMLError as exc:
            problem = getattr(exc, 'problem', None) or str(exc).splitlines()[0]
            raise ConfigError(f'override {item!r}: the value is malformed YAML ({problem}); quote it or fix the '
                              f'brackets, e.g. {dotted}=[a,b]') from None
        node = mapping
        parts = dotted.strip().split('.')
        for part in parts[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise ConfigError(f'override {dotted!r}: {part!r} is not a section')
            node = child
        node[parts[-1]] = value
    return mapping


def load_config(cls: type[T], path: str | os.PathLike | None = None, overrides: Sequence[str] = ()) -> T:
    """Load ``cls`` from an optional YAML file plus overrides; defaults fill the rest. A relative ``path`` that is not
    under the working directory names a package file (``config/train/...`` works installed and from any folder)."""
    mapping: dict[str, Any] = {}
    if path is not None:
        path = resolve_path(path)
        if not path.is_file():
            raise ConfigError(f'config file {str(path)!r} does not exist; pass an existing YAML file '
                              f'(see config/ for examples)')
        try:
            with open(path) as f:
                loaded = yaml.load(f, Loader=YamlLoader)
        except yaml.YAMLError as exc:
            mark = getattr(exc, 'problem_mark', None) or getattr(exc, 'context_mark', None)
            where = f'{path}:{mark.line + 1}:{mark.column + 1}' if mark is not None else str(path)
            problem = getattr(exc, 'problem', None) or str(exc).splitlines()[0]
            context, opened = getattr(exc, 'context', None), getattr(exc, 'context_mark', None)
            if context and opened is not None and mark is not None and opened.line != mark.line:
                problem += f'; {context} started at line {opened.line + 1}'
            raise ConfigError(f'{where}: malformed YAML ({problem}); fix the file at that line') from None
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f'config file {str(path)!r} must hold a mapping at the top level')
        mapping = loaded or {}
    apply_overrides(mapping, overrides)
    return from_mapping(cls, mapping)


def save_config(obj: Any, path: str | os.PathLike) -> None:
    """Write the resolved config as YAML, atomically (temp file + rename)."""
    with atomic_write(path, 'w') as f:
        yaml.safe_dump(to_mapping(obj), f, sort_keys=False)
