"""The registry of similarity methods: names to classes, and the checks on names and settings.

Adding a method is one file in `lookalike/methods/` with a `@register`-decorated subclass of
`lookalike.features.contract.Method`.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import pkgutil
from collections.abc import Mapping
from typing import Any

from lookalike.errors import InputError
from lookalike.features.contract import Method

__all__ = ["UnknownMethodError", "UnknownSettingError", "get_method", "method_classes", "method_names",
           "parse_methods", "register"]

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


# Where the methods are defined. Each of these modules registers its classes with `@register`
# when imported, and the registry imports them by name when first asked, so that this module,
# at the bottom of the layers, imports no method (a package stands for all its modules).
# `fused` composes the other methods and so sits above them, in `lookalike.retrieval`.
METHOD_MODULES = ("lookalike.methods", "lookalike.retrieval.fused")


def _method_modules() -> list[str]:
    names = []
    for name in METHOD_MODULES:
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.submodule_search_locations:
            names += sorted(f"{name}.{info.name}" for info in
                            pkgutil.iter_modules(spec.submodule_search_locations))
        else:
            names.append(name)
    return names


def _load_all() -> None:
    global _LOADED
    if _LOADED:
        return
    _LOADED = True
    for module in _method_modules():
        try:
            importlib.import_module(module)
        except ImportError as error:  # a method whose dependency is missing must not break others
            _UNAVAILABLE[module.rpartition(".")[2]] = f"{type(error).__name__}: {error}"


def method_classes() -> dict[str, type[Method]]:
    """Registered methods in a stable order: by `order`, then name."""
    _load_all()
    return dict(sorted(_REGISTRY.items(), key=lambda item: (item[1].order, item[0])))


def method_names(role: str | None = None) -> list[str]:
    """Registered method names, optionally only those of one role (GLOBAL, LOCAL_MATCHER)."""
    return [name for name, cls in method_classes().items() if role is None or cls.role == role]


class UnknownSettingError(InputError, ValueError):
    """A setting that the named method does not have."""


def get_method(name: str, shared: Mapping[str, Any] | None = None, **settings: Any) -> Method:
    """Build a method by name. `settings` are the method's own: a name it lacks fails with
    the list of those it has. `shared` are options given to many methods at once (the CLI's
    `--device`, a preset's common settings): each applies where the method has it. A None
    value keeps the method's default."""
    classes = method_classes()
    if name not in classes:
        raise UnknownMethodError(_unknown(name, classes))
    cls = classes[name]
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(settings) - fields)
    if unknown:
        raise UnknownSettingError(f"method {name!r} has no setting {', '.join(unknown)}; "
                                  f"its settings: {', '.join(sorted(fields))}")
    chosen = {key: value for key, value in (shared or {}).items() if key in fields}
    chosen.update(settings)
    return cls(**{key: value for key, value in chosen.items() if value is not None})


def parse_methods(spec: str | list[str]) -> list[str]:
    """'all', 'phash,akaze' or a list -> validated method names, in the given order."""
    names = spec.split(",") if isinstance(spec, str) else list(spec)
    names = [name.strip() for name in names if name.strip()]
    known = method_classes()
    if names == ["all"]:
        return [name for name, cls in known.items() if cls.in_all]
    for name in names:
        if name not in known:
            raise UnknownMethodError(_unknown(name, known))
    return names


def _unknown(name: str, known: dict) -> str:
    message = f"unknown method {name!r}; choose from: {', '.join(known)} (or 'all')"
    if name in _UNAVAILABLE:
        message = f"method module {name!r} could not be loaded ({_UNAVAILABLE[name]})"
    return message
