"""One registry mechanism for everything plugins register (blocks, datasets, metrics,
templates, samplers, pruners).

A :class:`Registry` calls one hook on every plugin, each with a fresh registrar bound to the
plugin's name. The registrar checks each entry (each kind keeps only its own checks in its
``add``), *stages* it, and adds what it staged only once the plugin's hook returned: a plugin
that fails half-way adds nothing. A name another plugin already took is a clash, reported
naming both plugins and the way out. The table is cached until the set of plugins changes.

Example (what each kind of registry does)::

    class WidgetRegistrar(Registrar[WidgetInfo]):
        noun = "widget"

        def add(self, name, *, make):
            self.claim(name)
            if not callable(make):
                raise PluginError(f"{self.who}: make of widget {name!r} is not callable")
            self.stage(name, WidgetInfo(name, make, plugin=self.plugin))

    WIDGETS = Registry("ganarch_register_widgets", WidgetRegistrar)
    WIDGETS.entries()          # {name: WidgetInfo}, in name order
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterable
from typing import Any, Generic, Protocol, TypeVar

from ganarch.errors import PluginError, closest
from ganarch.plugin import manager


class HasPlugin(Protocol):
    plugin: str


T = TypeVar("T", bound=HasPlugin)


class Registrar(Generic[T]):
    """What a hook receives: a subclass's ``add`` checks an entry and calls :meth:`stage`."""

    #: What one entry is called in messages ("block", "dataset", ...).
    noun = "entry"
    #: True: a clash is reported at :meth:`commit`, naming every clash of the plugin at once
    #: (and the hook still learns every name, for the error of a spec that names one).
    #: False: :meth:`stage` raises at the first clash.
    clashes_at_commit = False

    def __init__(self, table: dict[str, T], plugin: str) -> None:
        self._table = table
        self.plugin = plugin
        self._staged: dict[str, T] = {}
        self._clashes: list[tuple[str, str]] = []  # (name, the plugin that has it)
        #: Every name this plugin tried to register, clashes included.
        self.names: list[str] = []
        self.committed = False

    @property
    def who(self) -> str:
        """``"plugin 'mine'"``, for messages."""
        return f"plugin {self.plugin!r}"

    def claim(self, name: Any, pattern: re.Pattern[str] | None = None, what: str = "") -> None:
        """Check ``name`` is an identifier (or matches ``pattern``, described as ``what``) and
        record that this plugin tried to register it: if the plugin then fails, a lookup of
        the name says which plugin would have added it. Call first in ``add``."""
        ok = isinstance(name, str) and (
            bool(pattern.match(name)) if pattern is not None else name.isidentifier()
        )
        if not ok:
            rule = what or "an identifier-like string"
            raise PluginError(f"{self.who}: {self.noun} name must be {rule}, got {name!r}")
        self.names.append(name)

    def stage(self, name: str, info: T) -> None:
        """Hold ``info`` until :meth:`commit`; a name already taken is a clash."""
        other = self._table.get(name) or self._staged.get(name)
        if other is None:
            self._staged[name] = info
            return
        if not self.clashes_at_commit:
            raise PluginError(duplicate_message(self.noun, self.plugin, [(name, other.plugin)]))
        self._clashes.append((name, other.plugin))

    def commit(self) -> None:
        """Add what this plugin staged (called once its hook returned without error);
        ``PluginError`` naming every clash, and nothing added, if a name was taken."""
        if self._clashes:
            raise PluginError(duplicate_message(self.noun, self.plugin, self._clashes))
        self._table.update(self._staged)
        self.committed = True


def duplicate_message(noun: str, plugin: str, clashes: list[tuple[str, str]]) -> str:
    """Every name ``plugin`` took twice, with both plugins, and the way out."""
    said = "; ".join(
        f"{noun} {name!r} is registered twice: by plugin {other!r} and plugin {plugin!r}"
        for name, other in clashes
    )
    prefix = re.sub(r"\W+", "_", plugin).strip("_") or "my"
    example = f"{prefix}_{clashes[0][0]}"
    listing = "`ganarch blocks` lists" if noun == "block" else "`ganarch plugins` shows"
    return (
        f"{said}. Plugin {plugin!r} is not loaded until it renames "
        + ("it" if len(clashes) == 1 else "them")
        + f" (a prefix keeps names unique, e.g. {example!r}; {listing} the names"
        " taken) or one of the two plugins is uninstalled"
    )


class Registry(Generic[T]):
    """The entries every plugin registered through ``hook``, cached per plugin generation."""

    def __init__(self, hook: str, registrar: Callable[[dict[str, T], str], Registrar[T]]) -> None:
        self.hook = hook
        self._make_registrar = registrar
        self._noun = getattr(registrar, "noun", "entry")
        self._lock = threading.RLock()
        #: (plugin generation, the entries, names a failed plugin would have added -> plugin)
        self._cache: tuple[int, dict[str, T], dict[str, str]] | None = None

    def _view(self) -> tuple[dict[str, T], dict[str, str]]:
        with self._lock:
            gen = manager.generation()
            if self._cache is None or self._cache[0] != gen:
                found: dict[str, T] = {}
                made: list[Registrar[T]] = []

                def registrar(plugin: str) -> Registrar[T]:
                    made.append(self._make_registrar(found, plugin))
                    return made[-1]

                manager.collect(self.hook, registrar)
                dropped = {
                    n: r.plugin for r in made if not r.committed for n in r.names if n not in found
                }
                self._cache = (gen, dict(sorted(found.items())), dropped)
            return self._cache[1], self._cache[2]

    def entries(self) -> dict[str, T]:
        """Every registered entry by name, in name order (a copy)."""
        return dict(self._view()[0])

    def get(self, name: Any) -> T | None:
        """The entry called ``name``, or ``None``."""
        table = self._view()[0]
        return table.get(name) if isinstance(name, str) else None

    def unknown(self, name: Any, pool: Iterable[str] | None = None) -> str:
        """Why ``name`` is not registered: the plugin that would add it failed (and how), or
        the closest names in ``pool`` (default: every name), plus any plugin that failed to
        load and whether third-party plugins are off."""
        table, dropped = self._view()
        plugin = dropped.get(name) if isinstance(name, str) else None
        if plugin is not None:
            error = next((i.error for i in manager.plugins() if i.name == plugin), None)
            return (
                f"{name!r} is not available: plugin {plugin!r}, which registers it, failed to load"
                + (f" ({error})" if error else "")
                + "; see `ganarch plugins`"
            )
        names = list(table) if pool is None else list(pool)
        return (
            f"{name!r} is not a registered {self._noun}; {closest(str(name), names)}"
            + manager.why_missing()
        )
