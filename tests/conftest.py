"""Shared fixtures. Keep this small: test modules keep their own helpers."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

import ganarch.plugin.manager


@pytest.fixture(autouse=True)
def _no_outside_storage(monkeypatch) -> None:
    """A developer's GANARCH_STORAGE must never be read or written by a test."""
    monkeypatch.delenv("GANARCH_STORAGE", raising=False)


@pytest.fixture
def plugin_state() -> Iterator[Callable[..., str]]:
    """Register plugins in code for one test; all plugin state is reloaded afterwards.

    Usage: ``plugin_state(MyPlugin(), name="mine")``. Tests that monkeypatch entry points
    also use this fixture, so the next test loads the real plugins again.
    """
    ganarch.plugin.manager.reset()
    try:
        yield ganarch.plugin.manager.register
    finally:
        ganarch.plugin.manager.reset()  # drops code-registered plugins; the next use reloads
