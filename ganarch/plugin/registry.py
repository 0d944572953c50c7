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

import contextlib
import functools
import re
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Generic, Protocol, TypeVar

from ganarch.errors import GanarchError, HostError, PluginError, closest
from ganarch.plugin import manager


class HasPlugin(Protocol):
    plugin: str


T = TypeVar("T", bound=HasPlugin)


class Registrar(Generic[T]):
    """What a hook receives: a subclass's ``add`` checks an entry and calls :meth:`stage`."""

    #: What one entry is called in messages ("block", "dataset", ...).
    noun = "entry"
    #: The command that lists the names taken, for the message about a clash.
    listed_by = "ganarch plugins"
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

    def count(self) -> int:
        """Entries registered so far: every earlier plugin's and this plugin's staged ones
        (so the next entry's place in registration order)."""
        return len(self._table) + len(self._staged)

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
            clash = [(name, other.plugin)]
            raise PluginError(duplicate_message(self.noun, self.plugin, clash, self.listed_by))
        self._clashes.append((name, other.plugin))

    def commit(self) -> None:
        """Add what this plugin staged (called once its hook returned without error);
        ``PluginError`` naming every clash, and nothing added, if a name was taken."""
        if self._clashes:
            raise PluginError(
                duplicate_message(self.noun, self.plugin, self._clashes, self.listed_by)
            )
        self._table.update(self._staged)
        self.committed = True


def duplicate_message(
    noun: str,
    plugin: str,
    clashes: list[tuple[str, str]],
    listed_by: str = Registrar.listed_by,
) -> str:
    """Every name ``plugin`` took twice, with both plugins, and the way out (``listed_by``:
    the command that lists the names taken)."""
    said = "; ".join(
        f"{noun} {name!r} is registered twice: by plugin {other!r} and plugin {plugin!r}"
        for name, other in clashes
    )
    prefix = re.sub(r"\W+", "_", plugin).strip("_") or "my"
    example = f"{prefix}_{clashes[0][0]}"
    return (
        f"{said}. Plugin {plugin!r} is not loaded until it renames "
        + ("it" if len(clashes) == 1 else "them")
        + f" (a prefix keeps names unique, e.g. {example!r}; `{listed_by}` lists the names"
        " taken) or one of the two plugins is uninstalled"
    )


class Registry(Generic[T]):
    """The entries every plugin registered through ``hook``, cached per plugin generation."""

    def __init__(self, hook: str, registrar: Callable[[dict[str, T], str], Registrar[T]]) -> None:
        self.hook = hook
        self._make_registrar = registrar
        self._noun = getattr(registrar, "noun", "entry")
        #: (plugin generation, the entries, names a failed plugin would have added -> plugin)
        self._cache: tuple[int, dict[str, T], dict[str, str]] | None = None

    def _view(self) -> tuple[dict[str, T], dict[str, str]]:
        # One lock for every registry, the plugin manager's (re-entrant): a hook that reads
        # another registry (a template hook calling ``blocks()``) runs under the lock its
        # thread already holds, so two threads cannot each hold one registry's lock and wait
        # for the other's.
        with manager.lock:
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


# -- running what a plugin registered ----------------------------------------------------------


def plugin_failure(plugin: str, where: str, what: str, exc: BaseException) -> PluginError:
    """One line for an exception ``what`` of ``plugin`` raised at ``where``, e.g.
    ``--sampler cmaes: the factory of plugin 'mine' failed: ModuleNotFoundError: No module
    named 'cmaes'``."""
    detail = " ".join(str(exc).split())  # one line, whatever the plugin wrote
    said = f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__
    return PluginError(f"{where}: the {what} of plugin {plugin!r} failed: {said}")


@contextlib.contextmanager
def plugin_code(plugin: str, where: str, what: str) -> Iterator[None]:
    """Run code a plugin registered (a factory, a template's build) so that its failure is
    reported as the plugin's, not as a bug in ganarch: a ``GanarchError`` (bad input, said on
    purpose) or ``HostError`` passes as it is; any other exception of a third-party plugin
    becomes a one-line ``PluginError`` (exit 2 on the command line) naming ``where``, the
    plugin and the exception. A built-in's failure stays a bug in ganarch (exit 1).

    Example::

        with plugin_code(info.plugin, f"template {info.name!r}", "build"):
            spec = info.build(**choices)
    """
    try:
        yield
    except (GanarchError, HostError):
        raise
    except Exception as exc:
        if plugin == manager.BUILTIN:
            raise
        raise plugin_failure(plugin, where, what, exc) from exc


def guarded(fn: Callable[..., Any], plugin: str, where: str, what: str) -> Callable[..., Any]:
    """``fn`` (a plugin's callable) run under :func:`plugin_code` at every call; a built-in's
    ``fn`` as it is."""
    if plugin == manager.BUILTIN:
        return fn

    @functools.wraps(fn)
    def call(*args: Any, **kwargs: Any) -> Any:
        with plugin_code(plugin, where, what):
            return fn(*args, **kwargs)

    return call
