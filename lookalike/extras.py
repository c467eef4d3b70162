"""Imports of the optional parts (`pip install 'lookalike[serve]'`, `[ocr]`, `[ray]`).

Why one helper: the core (compare, evaluate, index, identify, group) installs with
`pip install lookalike`; the web service, OCR and Ray come as extras declared in
pyproject.toml. A command that needs a missing one must say which extra to install, not end
in a bare `ModuleNotFoundError` traceback, and every place says it the same way.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from lookalike.errors import InputError

# What each extra brings, for the message; keep in step with pyproject.toml.
EXTRAS = {
    "serve": "the web service (lookalike serve)",
    "ocr": "signboard OCR (lookalike ocr, the text method, --use-text)",
    "ray": "the Ray engine (--engine ray)",
}


class MissingExtra(InputError, ImportError):
    """An optional dependency is not installed; the message names the extra to install."""


def install_hint(extra: str) -> str:
    return f"install the {extra} extra: pip install 'lookalike[{extra}]'"


def optional_import(module: str, extra: str,
                    error: type[Exception] = MissingExtra) -> ModuleType:
    """`module`, imported; if it is missing, `error` (MissingExtra unless a caller has its own
    kind, as OCR's OcrUnavailable) saying which extra provides it."""
    if extra not in EXTRAS:
        raise ValueError(f"unknown extra {extra!r}; choose from: {', '.join(EXTRAS)}")
    try:
        return importlib.import_module(module)
    except ImportError as missing:
        name = missing.name or module
        raise error(f"{EXTRAS[extra]} needs {name}, which is not installed; "
                    f"{install_hint(extra)}") from None
