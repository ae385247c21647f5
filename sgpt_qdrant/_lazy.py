"""Lazy package exports (PEP 562), the one way this project's packages export names; lazy modules.

A package's public names resolve on first use, so light entry points (``--help``, the checkpoint
reader, the query examples) do not pay for torch, transformers or LlamaIndex they never touch.
:func:`lazy_module` does the same for a module another one uses in many places but only on some
paths (``qdrant_client.models``, a second of start-up, in the embedded store's conversions).
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


class _LazyModule:
    """A stand-in for a module, imported at the first read of one of its names."""

    def __init__(self, name: str) -> None:
        self.__dict__["_lazy_name"] = name

    def __getattr__(self, attribute: str) -> Any:
        if attribute.startswith("__"):  # copy / pickle / inspect probes: no import for them
            raise AttributeError(attribute)
        value = getattr(importlib.import_module(self.__dict__["_lazy_name"]), attribute)
        self.__dict__[attribute] = value  # resolved once: later reads are a plain attribute read
        return value

    def __repr__(self) -> str:
        return f"<lazy module {self.__dict__['_lazy_name']!r}>"


def lazy_module(name: str) -> Any:
    """``name`` (absolute), imported when one of its attributes is first read, e.g.
    ``models = lazy_module("qdrant_client.models")``; ``models.Filter`` then imports it. Type
    checkers should see the real import: put it under ``if TYPE_CHECKING:``, this in the ``else``."""
    return _LazyModule(name)
