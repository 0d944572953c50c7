"""Loading plugins: built-ins and third-party packages through the ``ganarch`` entry points.

Plugins are loaded once, on first use. The built-in plugins (``BUILTIN_MODULE``, the
``plugins/`` folder) come through the same ``ganarch`` entry-point group as third-party ones. A plugin that fails to import is recorded with its
error and skipped, so the rest keep working. Set ``GANARCH_DISABLE_PLUGINS=1`` to load only
the built-in plugins.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import threading
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import pluggy

from ganarch.plugin import hookspecs

ENTRY_POINT_GROUP = "ganarch"
DISABLE_ENV = "GANARCH_DISABLE_PLUGINS"
BUILTIN_MODULE = "ganarch_plugins"
#: The plugin name the built-ins are registered under (their failures are bugs in ganarch).
BUILTIN = "builtin"


@dataclass(frozen=True)
class PluginInfo:
    """One plugin as ``ganarch plugins`` reports it."""

    name: str
    source: str  # "builtin", "entry point", or "code"
    module: str
    version: str | None = None
    error: str | None = None


#: Guards the plugin set and every registry's cache (``ganarch.plugin.registry``): one
#: re-entrant lock, so hooks that read other registries cannot deadlock across threads.
lock = threading.RLock()
_manager: pluggy.PluginManager | None = None
_infos: list[PluginInfo] = []
_generation = 0  # bumped whenever the set of plugins changes, so caches know to rebuild


def _builtin_disabled_env() -> bool:
    return os.environ.get(DISABLE_ENV, "").strip().lower() in {"1", "true", "yes", "on"}


def _load() -> pluggy.PluginManager:
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    infos: list[PluginInfo] = []
    builtin_seen = False
    # Built-ins first, so a third-party duplicate is the one reported (and dropped).
    for ep in sorted(
        importlib.metadata.entry_points(group=ENTRY_POINT_GROUP),
        key=lambda e: (e.value.split(":")[0] != BUILTIN_MODULE, e.name),
    ):
        is_builtin = ep.value.split(":")[0] == BUILTIN_MODULE
        if is_builtin and builtin_seen:
            continue  # the same distribution visible twice (editable + wheel)
        if not is_builtin and _builtin_disabled_env():
            continue
        dist = getattr(ep, "dist", None)
        version = dist.version if dist is not None else None
        try:
            plugin = ep.load()
            pm.register(plugin, name=ep.name if not is_builtin else BUILTIN)
        except Exception as exc:  # a broken plugin must not take the others down
            msg = f"{type(exc).__name__}: {exc}"
            infos.append(PluginInfo(ep.name, "entry point", ep.value, version, msg))
            warnings.warn(f"ganarch plugin {ep.name!r} failed to load: {msg}", stacklevel=3)
            continue
        builtin_seen = builtin_seen or is_builtin
        source = "builtin" if is_builtin else "entry point"
        infos.append(PluginInfo(BUILTIN if is_builtin else ep.name, source, ep.value, version))
    if not builtin_seen:
        # Running from a source tree without an install: register the built-ins directly.
        module = importlib.import_module(BUILTIN_MODULE)
        pm.register(module, name=BUILTIN)
        infos.append(PluginInfo(BUILTIN, "builtin", BUILTIN_MODULE))
    pm.check_pending()
    _infos[:] = infos
    return pm


def manager() -> pluggy.PluginManager:
    """The process-wide plugin manager, loading plugins on first call."""
    global _manager
    with lock:
        if _manager is None:
            _manager = _load()
        return _manager


def generation() -> int:
    """A number that changes whenever plugins are added or removed."""
    manager()
    return _generation


def disabled() -> bool:
    """True when ``GANARCH_DISABLE_PLUGINS`` turns third-party plugins off."""
    return _builtin_disabled_env()


def why_missing() -> str:
    """A clause for an error about a name nothing registered: the plugins that failed to
    load (which may be the ones that provide it) and whether third-party plugins are off;
    ``""`` when neither. Example: ``"; plugin 'mine' failed to load (see `ganarch plugins`)"``.
    """
    failed = [i.name for i in plugins() if i.error]
    text = ""
    if failed:
        names = ", ".join(repr(n) for n in failed)
        text += f"; plugin{'s' if len(failed) > 1 else ''} {names} failed to load (see `ganarch plugins`)"
    if disabled():
        text += f"; third-party plugins are off ({DISABLE_ENV}={os.environ[DISABLE_ENV]})"
    return text


def plugins() -> list[PluginInfo]:
    """Every plugin found, including those that failed to load (with their error)."""
    manager()
    return list(_infos)


def register(plugin: ModuleType | object, name: str | None = None) -> str:
    """Register a plugin object or module in code, e.g. from a notebook or a test.

    Example::

        class MyBlocks:
            @ganarch.hookimpl
            def ganarch_register_blocks(self, registrar): ...

        ganarch.register_plugin(MyBlocks(), name="my-blocks")
    """
    global _generation
    with lock:
        pm = manager()
        registered = pm.register(plugin, name=name)
        if registered is None:
            raise ValueError(f"plugin {name or plugin!r} is already registered")
        pm.check_pending()
        label = pm.get_name(plugin) or str(name)
        module = getattr(plugin, "__name__", type(plugin).__module__)
        _infos.append(PluginInfo(label, "code", module))
        _generation += 1
        return label


def unregister(name: str) -> None:
    """Remove a plugin registered in code (or any plugin) by its name."""
    global _generation
    with lock:
        pm = manager()
        pm.unregister(name=name)
        _infos[:] = [i for i in _infos if i.name != name]
        _generation += 1


def reset() -> None:
    """Forget all plugins; the next use loads them again (tests use this)."""
    global _manager, _generation
    with lock:
        _manager = None
        _infos.clear()
        _generation += 1


def collect(hook_name: str, make_registrar: Callable[[str], Any]) -> None:
    """Call ``hook_name`` on every plugin, each with a registrar bound to its plugin name.

    Binding the name lets a registrar say which two plugins clash on a duplicate.
    A plugin whose hook raises is recorded (``ganarch plugins`` shows the error) and what
    it registered is dropped; the other plugins keep working. The registrar's ``commit()``
    (if it has one) is called only after the plugin's hook returned.
    """
    pm = manager()
    caller = getattr(pm.hook, hook_name)
    # get_hookimpls() is already in registration order (pluggy *calls* them in reverse),
    # so built-ins come first and a later plugin's duplicate is the one reported.
    for impl in caller.get_hookimpls():
        plugin_name = impl.plugin_name
        registrar = make_registrar(plugin_name)
        try:
            impl.function(registrar=registrar)
            commit = getattr(registrar, "commit", None)
            if commit is not None:
                commit()  # may refuse the whole plugin, e.g. for a name another one took
        except Exception as exc:
            _record_error(plugin_name, f"{hook_name}: {type(exc).__name__}: {exc}")


def _record_error(plugin_name: str, message: str) -> None:
    with lock:
        for i, info in enumerate(_infos):
            if info.name == plugin_name:
                if info.error != message:
                    _infos[i] = PluginInfo(
                        info.name, info.source, info.module, info.version, message
                    )
                    warnings.warn(f"ganarch plugin {plugin_name!r} failed: {message}", stacklevel=4)
                return
        _infos.append(PluginInfo(plugin_name, "code", "?", None, message))
        warnings.warn(f"ganarch plugin {plugin_name!r} failed: {message}", stacklevel=4)
