"""Module attributes that import their module on first use (PEP 562), so that importing a
package stays quick: ``import ganarch`` never imports Optuna, ``ganarch --help`` no torch."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["lazy_getattr"]


def lazy_getattr(
    package: str, namespace: dict[str, Any], table: Mapping[str, str]
) -> Callable[[str], Any]:
    """A module ``__getattr__`` that loads ``name`` from ``table[name]`` (a module path) and
    keeps it in ``namespace``, so later look-ups skip the hook."""

    def __getattr__(name: str) -> Any:
        if name in table:
            value = getattr(importlib.import_module(table[name]), name)
            namespace[name] = value
            return value
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__
