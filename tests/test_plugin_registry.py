"""The one registry mechanism every kind of registered thing uses (ganarch.plugin.registry).

A throwaway "widget" registry rides on the datasets hook, so these tests exercise the
generic class alone: staging, all-or-nothing per plugin, clashes, the cached view and the
message for a name nobody registered.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import pytest

import ganarch
from ganarch.errors import PluginError
from ganarch.plugin import Registrar, Registry, manager


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
