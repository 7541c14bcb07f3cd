"""Model registry: every depth model is created by name, so model files only need to store the name and kwargs.

Built-in model modules register themselves on import; they are imported lazily on first use, so importing the
registry is cheap and the optional teacher package may be missing. Teachers are registered with ``teacher=True``
(:func:`is_teacher`): the ROS node refuses them unless asked, and they run only at their recorded input size.
"""
from __future__ import annotations

import importlib
import inspect
from typing import Any, Callable

from torch import nn

__all__ = ['register_model', 'create_model', 'list_models', 'is_registered', 'is_teacher']

BUILTIN_MODULES = ('surround_depth_train.models.students', 'surround_depth_train.models.teacher')

_FACTORIES: dict[str, Callable[..., nn.Module]] = {}
_TEACHERS: set[str] = set()
_builtins_loaded = False


def register_model(name: str, *, teacher: bool = False
                   ) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator registering a factory ``(**kwargs) -> nn.Module`` under ``name`` (``teacher``: a distillation
    teacher, see :func:`is_teacher`)."""

    def decorator(factory: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        previous = _FACTORIES.get(name)
        if previous is not None and previous.__qualname__ != factory.__qualname__:
            raise ValueError(f'model name {name!r} is already registered by {previous.__module__}.'
                             f'{previous.__qualname__}; pick another name')
        _FACTORIES[name] = factory
        if teacher:
            _TEACHERS.add(name)
        return factory

    return decorator


def _load_builtins() -> None:
    global _builtins_loaded
    if _builtins_loaded:
        return
    _builtins_loaded = True
    for module in BUILTIN_MODULES:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            # An optional package that does not exist (yet) is skipped; a broken import inside it is not.
            if exc.name != module:
                raise


def list_models() -> list[str]:
    """Sorted names of all registered models."""
    _load_builtins()
    return sorted(_FACTORIES)


def is_registered(name: str) -> bool:
    _load_builtins()
    return name in _FACTORIES


def is_teacher(name: str) -> bool:
    """Whether ``name`` is a registered teacher (the ``depth_anything_*`` models): large, a ViT that needs sides
    that are multiples of 14, tens of times slower than a student. False for unknown names."""
    _load_builtins()
    return name in _TEACHERS


def create_model(name: str, **kwargs: Any) -> nn.Module:
    """Build the model registered as ``name`` with ``kwargs``.

    Raises:
        ValueError: unknown name (the message lists the known ones) or a keyword the factory does not take.
    """
    _load_builtins()
    factory = _FACTORIES.get(name)
    if factory is None:
        raise ValueError(f'unknown model {name!r}; known models: {", ".join(sorted(_FACTORIES))}')
    params = inspect.signature(factory).parameters
    if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        unknown = sorted(set(kwargs) - set(params))
        if unknown:
            raise ValueError(f'model {name!r} does not take {unknown}; it takes {sorted(params)}')
    return factory(**kwargs)
