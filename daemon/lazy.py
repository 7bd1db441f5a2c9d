"""Package attributes that import their module on first use (PEP 562).

A package whose ``__init__`` re-exports names from heavy submodules makes every importer of any
of its submodules pay for all of them (importing ``pkg.keys`` runs ``pkg/__init__`` first).
With :func:`lazy_exports`, ``from pkg import Name`` and ``pkg.Name`` still work and return the
same object, but the submodule holding ``Name`` loads only when a caller asks for it.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(package: str, names: Mapping[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` for `package`: ``names`` maps an exported name to
    ``"module:attribute"``. The first access imports the module and caches the value in the
    package's namespace, so later accesses are plain attribute lookups."""
    table = dict(names)

    def __getattr__(name: str) -> Any:
        try:
            module, _, attribute = table[name].partition(":")
        except KeyError:
            raise AttributeError(f"module {package!r} has no attribute {name!r}") from None
        value = getattr(importlib.import_module(module), attribute)
        setattr(importlib.import_module(package), name, value)
        return value

    return __getattr__
