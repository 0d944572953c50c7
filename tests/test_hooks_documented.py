"""Keep the hooks honest: each is typed, documented in docs/plugins.md, and tested."""

from __future__ import annotations

import importlib
import inspect
import re
from pathlib import Path

import pytest

from ganarch.plugin import hookspecs

ROOT = Path(__file__).resolve().parents[1]
GUIDE = ROOT / "docs" / "plugins.md"
HOOKS = sorted(
    name
    for name, fn in vars(hookspecs).items()
    if name.startswith("ganarch_") and callable(fn) and hasattr(fn, "ganarch_spec")
)


def test_hooks_are_found() -> None:
    assert {"ganarch_register_blocks", "ganarch_register_datasets"} <= set(HOOKS)


@pytest.mark.parametrize("hook", HOOKS)
def test_hook_has_a_docstring_with_params(hook: str) -> None:
    fn = getattr(hookspecs, hook)
    doc = inspect.getdoc(fn) or ""
    assert doc.splitlines() and doc.splitlines()[0].strip(), f"{hook} has no summary line"
    for param in inspect.signature(fn).parameters:
        assert f":param {param}:" in doc, f"{hook}'s docstring does not describe {param!r}"
        assert param in fn.__annotations__, f"{hook}'s {param!r} has no type annotation"


@pytest.mark.parametrize("hook", HOOKS)
def test_hook_is_documented_with_its_signature(hook: str) -> None:
    guide = GUIDE.read_text()
    params = ", ".join(inspect.signature(getattr(hookspecs, hook)).parameters)
    heading = re.compile(rf"^#+ `{re.escape(hook)}\({re.escape(params)}\)`$", re.MULTILINE)
    assert heading.search(guide), f"docs/plugins.md has no section `{hook}({params})`"
    assert f"def {hook}({params}" in guide, f"docs/plugins.md does not show `def {hook}(...)`"


def _registrar(hook: str) -> tuple[str, str]:
    """The hook's registrar annotation and the module it is imported from, e.g.
    ``("BlockRegistrar", "ganarch.registry")``."""
    annotation = str(getattr(hookspecs, hook).__annotations__["registrar"])
    source = inspect.getsource(hookspecs)
    found = re.search(rf"from (\S+) import [^\n]*\b{re.escape(annotation)}\b", source)
    return annotation, found.group(1) if found else ""


@pytest.mark.parametrize("hook", HOOKS)
def test_hook_names_a_registrar_that_exists(hook: str) -> None:
    """The registrar class a hook's annotation names is importable where hookspecs says."""
    name, module = _registrar(hook)
    assert module, f"hookspecs does not say where {hook}'s registrar {name!r} comes from"
    assert isinstance(getattr(importlib.import_module(module), name, None), type), (
        f"{hook}: {module} has no registrar class {name!r}"
    )


@pytest.mark.parametrize("hook", HOOKS)
def test_hook_has_a_test(hook: str) -> None:
    this = Path(__file__).resolve()
    users = [
        p.name
        for p in sorted(this.parent.glob("test_*.py"))
        if p.resolve() != this and hook in p.read_text()
    ]
    assert users, f"no test under tests/ implements or calls {hook}"
