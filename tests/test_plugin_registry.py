"""The one registry mechanism every kind of registered thing uses (ganarch.plugin.registry).

A throwaway "widget" registry rides on the datasets hook, so these tests exercise the
generic class alone: staging, all-or-nothing per plugin, clashes, the cached view and the
message for a name nobody registered.
"""

from __future__ import annotations

import contextlib
import re
import threading
from dataclasses import dataclass
from typing import Any

import pytest

import ganarch
import ganarch.registry
from ganarch.errors import PluginError, SpecError
from ganarch.plugin import Registrar, Registry, manager, plugin_code


@dataclass(frozen=True)
class Widget:
    name: str
    plugin: str


class WidgetRegistrar(Registrar[Widget]):
    noun = "widget"

    def add(self, name: str, **_: Any) -> None:
        self.claim(name, re.compile(r"^[a-z0-9_.-]+$"), "lower-case letters or digits")
        self.stage(name, Widget(name, self.plugin))


class AllClashes(WidgetRegistrar):
    clashes_at_commit = True


def _registry(registrar=WidgetRegistrar) -> Registry[Widget]:
    return Registry("ganarch_register_datasets", registrar)


class Widgets:
    """A code plugin adding widgets (through the datasets hook); ``fail_after`` raises."""

    def __init__(self, *names: str, fail_after: int | None = None) -> None:
        self.names, self.fail_after = names, fail_after

    @ganarch.hookimpl
    def ganarch_register_datasets(self, registrar) -> None:
        for i, name in enumerate(self.names):
            if i == self.fail_after:
                raise RuntimeError("the plugin broke half-way")
            registrar.add(name, loader=print)


def test_entries_come_from_every_plugin_in_name_order(plugin_state) -> None:
    widgets = _registry()
    builtin = set(widgets.entries())  # the built-in datasets' names
    assert {"digits", "shapes"} <= builtin
    plugin_state(Widgets("zeta", "alpha"), name="mine")
    found = widgets.entries()
    assert list(found) == sorted(found) and found["alpha"].plugin == "mine"
    assert widgets.get("zeta") == Widget("zeta", "mine") and widgets.get(3) is None


def test_a_plugin_that_fails_half_way_adds_nothing_and_is_named(plugin_state) -> None:
    widgets = _registry()
    plugin_state(Widgets("first_one", "second_one", fail_after=1), name="flaky")
    with pytest.warns(UserWarning, match="the plugin broke half-way"):
        found = widgets.entries()
    assert "first_one" not in found  # staged, never committed
    message = widgets.unknown("first_one")
    assert "plugin 'flaky', which registers it, failed to load" in message
    assert "the plugin broke half-way" in message


def test_an_unknown_name_gets_the_closest_and_the_failed_plugins(plugin_state) -> None:
    widgets = _registry()
    assert "did you mean 'digits'" in widgets.unknown("digit")
    assert widgets.unknown("digit").startswith("'digit' is not a registered widget")
    plugin_state(Widgets("BAD NAME"), name="broken")
    with pytest.warns(UserWarning):
        widgets.entries()
    assert "plugin 'broken' failed to load" in widgets.unknown("nothing")


def test_a_clash_names_both_plugins_at_the_first_or_all_at_commit(plugin_state) -> None:
    plugin_state(Widgets("twin", "solo"), name="one")
    plugin_state(Widgets("twin", "digits", "fine"), name="two")
    with pytest.warns(UserWarning, match="registered twice"):
        found = _registry().entries()
    error = next(i.error for i in manager.plugins() if i.name == "two") or ""
    assert "widget 'twin' is registered twice: by plugin 'one' and plugin 'two'" in error
    assert "digits" not in error  # raised at the first clash
    assert found["twin"].plugin == "one" and "fine" not in found  # all or nothing

    manager.reset()
    plugin_state(Widgets("twin"), name="one")
    plugin_state(Widgets("twin", "digits", "fine"), name="two")
    with pytest.warns(UserWarning, match="registered twice"):
        _registry(AllClashes).entries()
    error = next(i.error for i in manager.plugins() if i.name == "two") or ""
    assert "'twin' is registered twice" in error and "'digits' is registered twice" in error
    assert "renames them" in error and "'two_twin'" in error


def test_the_view_is_cached_until_the_plugins_change(plugin_state) -> None:
    calls = []

    class Counting(WidgetRegistrar):
        def __init__(self, table, plugin):
            calls.append(plugin)
            super().__init__(table, plugin)

    widgets = _registry(Counting)
    widgets.entries()
    widgets.entries()
    assert calls.count("builtin") == 1
    name = plugin_state(Widgets("late"), name="late")
    assert "late" in widgets.entries() and calls.count("builtin") == 2
    ganarch.unregister_plugin(name)
    assert "late" not in widgets.entries()


def test_claim_rejects_a_bad_name_naming_the_plugin() -> None:
    with pytest.raises(
        PluginError, match=r"plugin 'me': widget name must be lower-case letters or digits"
    ):
        WidgetRegistrar({}, "me").add("Nope!")


def test_count_is_the_next_entrys_place_in_registration_order() -> None:
    table = {"earlier": Widget("earlier", "builtin")}
    registrar = WidgetRegistrar(table, "me")
    assert registrar.count() == 1
    registrar.add("mine")
    assert registrar.count() == 2  # staged entries count too


def test_a_clash_names_the_command_that_lists_the_names_taken(plugin_state) -> None:
    class Listed(WidgetRegistrar):
        listed_by = "ganarch widgets"

    plugin_state(Widgets("digits"), name="late")
    with pytest.warns(UserWarning, match="registered twice"):
        _registry(Listed).entries()
    error = next(i.error for i in manager.plugins() if i.name == "late") or ""
    assert "`ganarch widgets` lists the names taken" in error
    blocks = ganarch.registry.BlockRegistrar({}, "x")  # the block registrar names its command
    assert blocks.listed_by == "ganarch blocks"


def test_hooks_reading_each_others_registries_from_two_threads_do_not_deadlock(
    plugin_state,
) -> None:
    """Each registry once held its own lock while it ran the hooks: a hook of registry A that
    reads registry B, run while another thread's hook of B reads A, waited forever. Both hooks
    wait (briefly) for each other to be inside, which forced that interleaving. (A hook reads
    the other registry only when it is not already inside such a read: otherwise one thread
    alone would recurse, each view rebuilding the other.)"""
    inside = threading.Barrier(2)
    reading = threading.local()
    first = _registry()  # through the datasets hook
    second = Registry("ganarch_register_metrics", WidgetRegistrar)

    def add_after_reading(registrar, other: Registry[Widget], name: str) -> None:
        if not isinstance(registrar, WidgetRegistrar):
            return  # the real datasets or metrics registry
        if not getattr(reading, "busy", False):
            with contextlib.suppress(threading.BrokenBarrierError):
                inside.wait(timeout=1)  # one lock for all: the other thread waits outside
            reading.busy = True
            try:
                other.entries()
            finally:
                reading.busy = False
        registrar.add(name)

    class ReadsTheOther:
        @ganarch.hookimpl
        def ganarch_register_datasets(self, registrar) -> None:
            add_after_reading(registrar, second, "from_first")

        @ganarch.hookimpl
        def ganarch_register_metrics(self, registrar) -> None:
            add_after_reading(registrar, first, "from_second")

    plugin_state(ReadsTheOther(), name="readers")
    found: dict[str, dict[str, Widget]] = {}
    threads = [
        threading.Thread(target=lambda: found.update(a=first.entries()), daemon=True),
        threading.Thread(target=lambda: found.update(b=second.entries()), daemon=True),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=20)
    assert not any(t.is_alive() for t in threads), "the two registries deadlocked"
    assert "from_first" in found["a"] and "from_second" in found["b"]


def test_plugin_code_names_a_third_party_plugins_failure_in_one_line() -> None:
    with pytest.raises(PluginError) as failed, plugin_code("mine", "--sampler x", "factory"):
        raise OSError("first line\n  second line")
    assert str(failed.value) == (
        "--sampler x: the factory of plugin 'mine' failed: OSError: first line second line"
    )
    with pytest.raises(SpecError, match=r"^on purpose$"), plugin_code("mine", "w", "build"):
        raise SpecError("", "on purpose")  # bad input said by the plugin passes as it is
    with pytest.raises(KeyError), plugin_code("builtin", "w", "build"):
        raise KeyError("a bug in ganarch")  # the built-ins' code is ours: not a plugin error


def test_the_old_module_names_still_work_and_warn() -> None:
    """Plugins written against ``ganarch.hookspecs`` / ``ganarch.plugins`` keep loading."""
    import subprocess
    import sys

    code = (
        "import warnings\n"
        "warnings.simplefilter('error', DeprecationWarning)\n"
        "try:\n"
        "    import ganarch.plugins\n"
        "except DeprecationWarning as w:\n"
        "    assert 'ganarch.plugin.manager' in str(w), w\n"
        "else:\n"
        "    raise SystemExit('no warning')\n"
        "warnings.simplefilter('ignore', DeprecationWarning)\n"
        "import ganarch.plugins, ganarch.hookspecs, ganarch.plugin.manager as m\n"
        "import ganarch.plugin.hookspecs as h\n"
        "from ganarch.hookspecs import hookimpl\n"
        "assert ganarch.plugins is m and ganarch.hookspecs is h and hookimpl is h.hookimpl\n"
        "ganarch.plugins.reset()\n"
        "from ganarch.data import datasets; assert 'digits' in datasets()\n"
        "print('ok')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr
