"""Lazy package exports (PEP 562), the one way this project's packages export names.

A package's public names resolve on first use, so light entry points (``--help``, the checkpoint
reader, the query examples) do not pay for torch, transformers or LlamaIndex they never touch.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from typing import Any


def lazy_exports(package: str, exports: dict[str, str | tuple[str, str]]) -> tuple[Callable, Callable]:
    """``(__getattr__, __dir__)`` for ``package``. ``exports`` maps a public name to the relative
    module that defines it (``".pipeline"``) or to ``(module, attribute)`` when the names differ."""
    namespace = sys.modules[package].__dict__

    def __getattr__(name: str) -> Any:
        target = exports.get(name)
        if target is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        module, attribute = (target, name) if isinstance(target, str) else target
        value = getattr(importlib.import_module(module, package), attribute)
        namespace[name] = value  # resolved once
        return value

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(exports))

    return __getattr__, __dir__
