"""Registry of similarity methods; every module in this package registers its methods.

Adding a method is one file here with a `@register`-decorated `Method` subclass.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Any

from lookalike.errors import InputError
from lookalike.methods.base import (
    BITS,
    GLOBAL,
    LOCAL,
    LOCAL_MATCHER,
    PAIRWISE,
    SEGMENTS,
    VECTOR,
    Method,
)

__all__ = [
    "BITS",
    "GLOBAL",
    "LOCAL",
    "LOCAL_MATCHER",
    "PAIRWISE",
    "SEGMENTS",
    "VECTOR",
    "Method",
    "UnknownMethodError",
    "get_method",
    "method_names",
    "parse_methods",
    "register",
]

_REGISTRY: dict[str, type[Method]] = {}
_UNAVAILABLE: dict[str, str] = {}  # module name -> why it could not be imported
_LOADED = False


class UnknownMethodError(InputError, ValueError):
    """A method name that is not registered (or whose module could not be imported)."""


def register(cls: type[Method]) -> type[Method]:
    if not cls.name:
        raise ValueError(f"{cls.__name__} has no name")
    _REGISTRY[cls.name] = cls
    return cls


def _load_all() -> None:
    global _LOADED
    if _LOADED:
        return
    _LOADED = True
    for module in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if module.name == "base":
            continue
        try:
            importlib.import_module(f"{__name__}.{module.name}")
        except ImportError as error:  # a method whose dependency is missing must not break others
            _UNAVAILABLE[module.name] = f"{type(error).__name__}: {error}"


def method_classes() -> dict[str, type[Method]]:
    """Registered methods in a stable order: by `order`, then name."""
    _load_all()
    return dict(sorted(_REGISTRY.items(), key=lambda item: (getattr(item[1], "order", 50), item[0])))


def method_names(role: str | None = None) -> list[str]:
    """Registered method names, optionally only those of one role (GLOBAL, LOCAL_MATCHER)."""
    return [name for name, cls in method_classes().items() if role is None or cls.role == role]


def get_method(name: str, **settings: Any) -> Method:
    """Build a method by name; unknown names and settings fail with a clear message."""
    classes = method_classes()
    if name not in classes:
        raise UnknownMethodError(_unknown(name, classes))
    cls = classes[name]
    fields = {f.name for f in cls.__dataclass_fields__.values()}
    usable = {key: value for key, value in settings.items() if key in fields and value is not None}
    return cls(**usable)


def parse_methods(spec: str | list[str]) -> list[str]:
    """'all', 'phash,akaze' or a list -> validated method names, in the given order."""
    names = spec.split(",") if isinstance(spec, str) else list(spec)
    names = [name.strip() for name in names if name.strip()]
    known = method_classes()
    if names == ["all"]:
        return [name for name, cls in known.items() if getattr(cls, "in_all", True)]
    for name in names:
        if name not in known:
            raise UnknownMethodError(_unknown(name, known))
    return names


def _unknown(name: str, known: dict) -> str:
    message = f"unknown method {name!r}; choose from: {', '.join(known)} (or 'all')"
    if name in _UNAVAILABLE:
        message = f"method module {name!r} could not be loaded ({_UNAVAILABLE[name]})"
    return message
